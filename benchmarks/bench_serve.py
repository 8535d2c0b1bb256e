"""Benchmark: `medcompile serve` under load on loopback.

Two runs against a real server subprocess (uvicorn, real HTTP, httpx async clients):

1. the HTTP/queueing overhead: 1,000 requests at concurrency 16 with the scripted test
   model (`--lm scripted:latency=0.005`: 5 ms per model call, no weights);
2. the real embedded model (Gemma 3 270M on CPU): 20 distinct MedQA questions at
   concurrency 2, with a cold response cache so every call reaches the model.

Checks there are no errors and no lost requests (every id answered exactly once, and
the server's completed count matches), reports latency p50/p90/p99 and throughput,
prints a table and writes benchmarks/results/serve.json.

    python benchmarks/bench_serve.py [--requests 1000] [--concurrency 16] [--real-requests 20]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medcompile import Predict, Program, __version__  # noqa: E402
from medcompile.lm.cache import default_cache_dir  # noqa: E402

LOCAL_LM = {"model": "local/gemma3-270m-q4_k_m", "mode": "text", "spec": "local"}


class Server:
    """`medcompile serve ... --port 0` as a subprocess; the URL comes from its start-up line."""

    def __init__(self, program: Path, *extra: str, env: dict[str, str], log: Path) -> None:
        self.log = open(log, "wb")
        cmd = [sys.executable, "-m", "medcompile.cli.main", "serve", str(program), "--port", "0", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, env={**os.environ, **env})
        found: list[str] = []

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                m = re.search(rb"on (http://127\.0\.0\.1:\d+)", line)
                if m:
                    found.append(m.group(1).decode())
                    return

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(120)
        if not found:
            self.stop()
            raise SystemExit(f"server did not start, see {log}")
        self.url = found[0]
        for _ in range(600):
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise SystemExit("server never became healthy")

    def health(self) -> dict[str, Any]:
        return httpx.get(self.url + "/health", timeout=10).json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def percentile(xs: list[float], p: float) -> float:
    """Nearest-rank percentile (no interpolation: every figure is a measured request)."""
    s = sorted(xs)
    return s[max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))]


async def load(url: str, bodies: list[dict[str, Any]], concurrency: int, timeout: float) -> dict[str, Any]:
    """Send every body once, at most `concurrency` in flight; count what came back."""
    sem = asyncio.Semaphore(concurrency)
    lat: list[float] = []
    statuses: dict[str, int] = {}
    answered: list[str] = []
    errors: list[str] = []
    queue: list[float] = []
    first: list[float] = []
    tally = {"abstained": 0, "model_calls": 0, "cached_calls": 0}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as c:
        async def one(body: dict[str, Any]) -> None:
            async with sem:
                t0 = time.perf_counter()
                try:
                    r = await c.post("/v1/programs/bench/predict", json=body)
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    return
                lat.append(time.perf_counter() - t0)
                if not first:
                    first.append(lat[-1])
                statuses[str(r.status_code)] = statuses.get(str(r.status_code), 0) + 1
                if r.status_code == 200:
                    d = r.json()
                    answered.append(d["id"])
                    queue.append(d["queue_s"])
                    tally["abstained"] += d["answer"] is None
                    tally["model_calls"] += d["usage"]["calls"]
                    tally["cached_calls"] += d["usage"]["cached_calls"]
                else:
                    errors.append(r.text[:200])

        t0 = time.perf_counter()
        await asyncio.gather(*[one(b) for b in bodies])
        wall = time.perf_counter() - t0
    sent = [b["id"] for b in bodies]
    lost = sorted(set(sent) - set(answered))
    return {
        "requests": len(bodies), "concurrency": concurrency, "ok": statuses.get("200", 0),
        "statuses": statuses, "errors": len(errors), "error_samples": errors[:3],
        "lost": len(lost), "duplicates": len(answered) - len(set(answered)),
        "wall_s": round(wall, 3), "throughput_rps": round(len(lat) / wall, 2),
        "latency_ms": {f"p{p}": round(percentile(lat, p) * 1000, 2) for p in (50, 90, 99)}
        | {"max": round(max(lat) * 1000, 2), "mean": round(sum(lat) / len(lat) * 1000, 2)} if lat else {},
        "first_response_ms": round(first[0] * 1000, 2) if first else None,
        "server_queue_ms_p50": round(percentile(queue, 50) * 1000, 2) if queue else None,
        **tally,
    }


def run_phase(program: Path, extra: list[str], env: dict[str, str], bodies: list[dict[str, Any]],
              concurrency: int, timeout: float, log: Path) -> dict[str, Any]:
    srv = Server(program, *extra, env=env, log=log)
    try:
        before = srv.health()["completed"]
        res = asyncio.run(load(srv.url, bodies, concurrency, timeout))
        res["server_completed"] = srv.health()["completed"] - before
        res["server_args"] = extra
        return res
    finally:
        srv.stop()


def synthetic_bodies(n: int) -> list[dict[str, Any]]:
    return [{"id": f"s{i}", "question": f"Benchmark question {i}: which drug treats condition {i % 97}?",
             "options": {k: f"option {k} for {i}" for k in "ABCDE"}} for i in range(n)]


def medqa_bodies(n: int) -> list[dict[str, Any]]:
    from medcompile.data import load_dataset, split_named

    qs = split_named(load_dataset("medqa_us4"), "dev").questions[:n]
    return [{"id": q.id, "question": q.question, "options": dict(q.options)} for q in qs]


def cold_cache_dir(tmp: Path) -> Path:
    """A fresh response cache that still reuses the assembled GGUF (no 250 MB copy)."""
    d = tmp / "cache"
    d.mkdir()
    models = default_cache_dir() / "models"
    if models.is_dir():
        (d / "models").symlink_to(models, target_is_directory=True)
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--server-concurrency", type=int, default=8, help="--max-concurrency of the scripted server")
    ap.add_argument("--latency", type=float, default=0.005, help="scripted model seconds per call")
    ap.add_argument("--real-requests", type=int, default=20)
    ap.add_argument("--real-concurrency", type=int, default=2)
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--out", default=None, help="default results/serve.json (--quick: serve_quick.json)")
    ap.add_argument("--quick", action="store_true", help="200 scripted requests, no real-model run (< 2 min)")
    args = ap.parse_args()
    if args.quick:
        args.requests, args.skip_real = 200, True
    if args.out is None:
        args.out = str(REPO / "benchmarks" / "results" / ("serve_quick.json" if args.quick else "serve.json"))

    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    try:
        program = tmp / "bench.json"
        Program(Predict(tune=False), name="bench", lm=LOCAL_LM).save(str(program))
        results: dict[str, Any] = {
            "benchmark": "serve", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {"python": platform.python_version(), "platform": platform.platform(),
                        "cpus": os.cpu_count(), "medcompile": __version__},
            "notes": "loopback HTTP, real uvicorn subprocess, httpx.AsyncClient; latency is client-side "
                     "(request sent -> response parsed); percentiles are nearest-rank",
        }
        print(f"[1/2] scripted model ({args.latency * 1000:g} ms/call): {args.requests} requests "
              f"at concurrency {args.concurrency}", flush=True)
        results["scripted"] = run_phase(
            program, ["--lm", f"scripted:latency={args.latency}", "--max-concurrency", str(args.server_concurrency)],
            {}, synthetic_bodies(args.requests), args.concurrency, 60, tmp / "scripted.log")
        if not args.skip_real:
            print(f"[2/2] local Gemma 3 270M: {args.real_requests} MedQA questions at concurrency "
                  f"{args.real_concurrency} (cold cache)", flush=True)
            env = {"MEDCOMPILE_CACHE_DIR": str(cold_cache_dir(tmp))}
            results["real_local_model"] = run_phase(
                program, ["--max-concurrency", str(args.real_concurrency), "--timeout", "600"], env,
                medqa_bodies(args.real_requests), args.real_concurrency, 900, tmp / "real.log")
        report(results)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
        bad = [k for k in ("scripted", "real_local_model") if k in results
               and (results[k]["errors"] or results[k]["lost"] or results[k]["duplicates"]
                    or results[k]["server_completed"] != results[k]["requests"])]
        if bad:
            raise SystemExit(f"FAILED: errors or lost requests in {bad}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(results: dict[str, Any]) -> None:
    print(f"\n{'run':<18}{'req':>6}{'ok':>6}{'err':>5}{'lost':>6}{'rps':>9}{'p50 ms':>10}{'p90 ms':>10}"
          f"{'p99 ms':>10}")
    for key in ("scripted", "real_local_model"):
        r = results.get(key)
        if not r:
            continue
        lat = r["latency_ms"]
        print(f"{key:<18}{r['requests']:>6}{r['ok']:>6}{r['errors']:>5}{r['lost']:>6}{r['throughput_rps']:>9}"
              f"{lat.get('p50', 0):>10}{lat.get('p90', 0):>10}{lat.get('p99', 0):>10}")


if __name__ == "__main__":
    main()
