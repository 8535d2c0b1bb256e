"""A counting reverse proxy in front of an OpenAI-compatible server (loopback only).

Both frameworks in bench_vs_dspy.py talk to the model through this proxy, so every
HTTP call to the model is counted the same way, whatever each framework thinks it
did (retries, adapter fallbacks, bootstrap calls at inference time, cache hits that
never leave the process). A phase is a path prefix:

    http://127.0.0.1:PORT/p/<phase>/v1/completions  ->  UPSTREAM/v1/completions

Each phase can have a call budget and a wall-clock limit: once either is spent the
proxy answers HTTP 400 ("budget exhausted") without touching the model, so an
optimizer that wants more than its budget is cut off at exactly the same point for
both frameworks, and the refusals are counted. A `max_tokens` cap protects the run
from a framework that asks for no limit, and `max_completion_tokens` (what DSPy sends)
is translated to `max_tokens`, which is all llama_cpp.server 0.3.36 reads: without
that, DSPy's chat calls generated ~2,300 tokens each. Both are counted per phase.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class Phase:
    name: str
    budget: int | None = None
    wall_s: float | None = None
    calls: int = 0            # calls forwarded to the model
    refused: int = 0          # calls refused (budget or time spent)
    errors: int = 0           # upstream errors / non-200
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_s: float = 0.0      # time the upstream took, summed
    started: float | None = None
    capped_max_tokens: int = 0
    translated_max_completion_tokens: int = 0
    endpoints: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("started")
        d["model_s"] = round(self.model_s, 2)
        return d


class CountingProxy:
    def __init__(self, upstream: str, *, port: int, max_tokens_cap: int = 256, timeout_s: float = 900.0):
        self.upstream = upstream.rstrip("/")
        self.port = port
        self.max_tokens_cap = max_tokens_cap
        self.timeout_s = timeout_s
        self.phases: dict[str, Phase] = {}
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        # The upstream (llama_cpp.server) runs one request at a time; serialise here
        # so that a client-side timeout never leaves a request running upstream.
        self._upstream_lock: asyncio.Lock | None = None

    # ---- phases --------------------------------------------------------------------
    def phase(self, name: str, *, budget: int | None = None, wall_s: float | None = None) -> str:
        """Register (or reset) a phase and return its api_base (ending in /v1)."""
        with self._lock:
            self.phases[name] = Phase(name, budget, wall_s)
        return f"http://127.0.0.1:{self.port}/p/{name}/v1"

    def stats(self, name: str) -> Phase:
        return self.phases[name]

    # ---- server --------------------------------------------------------------------
    async def _handle(self, request: Request) -> Response:
        name = request.path_params["phase"]
        rest = request.path_params["rest"]
        ph = self.phases.get(name)
        if ph is None:
            return JSONResponse({"error": {"message": f"unknown phase {name}"}}, status_code=404)
        if request.method == "GET":
            async with httpx.AsyncClient(timeout=30) as c:
                r = await c.get(f"{self.upstream}/v1/{rest}")
            return Response(r.content, status_code=r.status_code, media_type="application/json")
        body = await request.json()
        now = time.monotonic()
        with self._lock:
            if ph.started is None:
                ph.started = now
            over_budget = ph.budget is not None and ph.calls >= ph.budget
            over_time = ph.wall_s is not None and now - ph.started > ph.wall_s
            if over_budget or over_time:
                ph.refused += 1
                why = "call budget" if over_budget else "wall-clock limit"
                return JSONResponse({"error": {"message": f"benchmark proxy: {why} of phase {name} exhausted",
                                               "type": "invalid_request_error", "code": "budget_exhausted"}},
                                    status_code=400)
            ph.calls += 1
            ph.endpoints[rest] = ph.endpoints.get(rest, 0) + 1
        # DSPy sends the newer `max_completion_tokens`, which llama_cpp.server 0.3.36 ignores:
        # it then generates up to n_ctx (seen: ~2,300 tokens per chat call). Translate it.
        if "max_completion_tokens" in body:
            mct = body.pop("max_completion_tokens")
            body.setdefault("max_tokens", mct)
            with self._lock:
                ph.translated_max_completion_tokens += 1
        mt = body.get("max_tokens")
        if mt is None or int(mt) > self.max_tokens_cap:
            body["max_tokens"] = self.max_tokens_cap
            with self._lock:
                ph.capped_max_tokens += 1
        body.pop("stream", None)
        if self._upstream_lock is None:
            self._upstream_lock = asyncio.Lock()
        t0 = time.perf_counter()
        try:
            async with self._upstream_lock:
                async with httpx.AsyncClient(timeout=self.timeout_s) as c:
                    r = await c.post(f"{self.upstream}/v1/{rest}", json=body)
        except Exception as e:  # noqa: BLE001 - report to the client as a 502
            with self._lock:
                ph.errors += 1
                ph.model_s += time.perf_counter() - t0
            return JSONResponse({"error": {"message": f"upstream failed: {e}"}}, status_code=502)
        dt = time.perf_counter() - t0
        with self._lock:
            ph.model_s += dt
            if r.status_code != 200:
                ph.errors += 1
            else:
                try:
                    u = json.loads(r.content).get("usage") or {}
                    ph.prompt_tokens += int(u.get("prompt_tokens") or 0)
                    ph.completion_tokens += int(u.get("completion_tokens") or 0)
                except (ValueError, AttributeError):
                    pass
        return Response(r.content, status_code=r.status_code, media_type="application/json")

    def start(self) -> "CountingProxy":
        app = Starlette(routes=[Route("/p/{phase}/v1/{rest:path}", self._handle, methods=["GET", "POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="counting-proxy", daemon=True)
        self._thread.start()
        t_end = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > t_end:
                raise RuntimeError("proxy did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
