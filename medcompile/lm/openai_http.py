"""Direct HTTP to OpenAI-compatible servers (vLLM, llama.cpp, TGI, proxies), one shared client.

Why not litellm here: `litellm.text_completion` builds a new OpenAI + httpx client (SSL
context included) on every call, and even with a shared `client=` it spends ~5 ms of CPU
per call translating parameters and responses. Measured in benchmarks/bench_concurrency.py,
that capped a run at 17-19% (per-call clients) or 64% (shared client) of what a fast
server can serve on a 2-core machine. For the text- and chat-completion endpoints of an
OpenAI-compatible server (`openai/...`, `text-completion-openai/...`, `hosted_vllm/...`
with an api_base) there is nothing to translate, so this module posts the JSON itself on
one pooled `httpx.Client` per (endpoint, credentials) and process, shared by every call
and thread. litellm stays in charge of every other provider (and of api.openai.com itself,
where it knows each model's parameter quirks and prices): see `LiteLLMLM`.

Error handling is the same as litellm's path: a non-2xx reply becomes `HTTPStatusFailure`
(status, headers incl. Retry-After, the server's message) and transport errors stay httpx
errors; both go through the shared `map_exception`, so retries, Retry-After, config errors
and key scrubbing behave identically on either path. No retries happen here (`RetryingLM`
owns them). Keys are read per call and sent per request, never stored on an object.

Constrained answers (`LMRequest.choices`): the request asks for the top log-probabilities
of the generated tokens (`logprobs`); the first generated token that is one of the choices
gives `choice_logprobs`, normalised over the choices. With `guided_choice=True` (a vLLM
server) the reply is also forced to be one of the choices. Token-id `logit_bias` is not
used: the server's tokenizer is unknown here.
"""
from __future__ import annotations

import hashlib
import math
import os
import threading
import time
from typing import Any, Mapping

import httpx

from medcompile.lm.base import LMError, LMRequest, LMResponse
from medcompile.lm.errors import map_exception

#: Providers whose completion endpoints speak the OpenAI wire format as-is.
OPENAI_COMPATIBLE = ("openai", "text-completion-openai", "hosted_vllm")
#: `extra` keys this transport sends in the request body; anything else needs litellm.
BODY_PARAMS = frozenset({"top_k", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty",
                         "logit_bias", "user", "n_probs", "typical_p", "min_tokens", "ignore_eos"})
TOP_LOGPROBS = 20  # chat `top_logprobs`: OpenAI's maximum; vLLM and llama.cpp accept it too
TEXT_LOGPROBS = 5  # completions `logprobs`: 5 is the most every OpenAI-compatible server accepts
_clients: dict[tuple[int, str, str], httpx.Client] = {}
_clients_lock = threading.Lock()


class HTTPStatusFailure(Exception):
    """A non-2xx reply: `status_code`, `response` (headers: Retry-After) and the server's message."""

    def __init__(self, message: str, status_code: int, response: httpx.Response) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.response = response


def provider_of(model: str) -> str:
    return model.split("/", 1)[0] if "/" in model else ""


def endpoint_for(model: str, api_base: str | None) -> str | None:
    """The base URL this transport should use for `model`, or None (litellm's job).

    An explicit api_base wins; `openai/...` also honours OPENAI_API_BASE / OPENAI_BASE_URL
    and `hosted_vllm/...` HOSTED_VLLM_API_BASE, as litellm does. Without any of these the
    model is on api.openai.com (or unknown), and litellm handles it.
    """
    provider = provider_of(model)
    if provider not in OPENAI_COMPATIBLE:
        return None
    if api_base:
        return api_base.rstrip("/")
    names = ("HOSTED_VLLM_API_BASE",) if provider == "hosted_vllm" else ("OPENAI_API_BASE", "OPENAI_BASE_URL")
    for name in names:
        value = os.environ.get(name)
        if value:
            return value.rstrip("/")
    return None


def shared_client(base_url: str, api_key: str | None) -> httpx.Client:
    """One pooled client per (process, endpoint, credentials); thread-safe, kept for the process.

    The key is not put into the client (it is sent per request); its fingerprint only keeps
    callers with different credentials on different connection pools.
    """
    fp = hashlib.sha256((api_key or "").encode()).hexdigest()[:16]
    key = (os.getpid(), base_url, fp)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            limits = httpx.Limits(max_connections=256, max_keepalive_connections=128, keepalive_expiry=30)
            client = _clients[key] = httpx.Client(limits=limits, follow_redirects=False)
        return client


def close_clients() -> None:
    """Close every shared client of this process (tests, shutdown)."""
    with _clients_lock:
        clients = [c for (pid, _, _), c in _clients.items() if pid == os.getpid()]
        _clients.clear()
    for c in clients:
        c.close()


def _error_message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:500] or resp.reason_phrase
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])
    if isinstance(err, str):
        return err
    return str(body)[:500]


class OpenAIHTTP:
    """Completion calls to one OpenAI-compatible endpoint (see the module docstring)."""

    def __init__(self, model: str, base_url: str, *, timeout: float = 60,
                 extra: Mapping[str, Any] | None = None, guided_choice: bool = False) -> None:
        self.model = model
        self.served_name = model.split("/", 1)[1] if provider_of(model) in OPENAI_COMPATIBLE else model
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.extra = dict(extra or {})
        unknown = sorted(set(self.extra) - BODY_PARAMS)
        if unknown:
            raise ValueError(f"OpenAIHTTP cannot send {unknown}; use litellm for these")
        self.guided_choice = guided_choice
        self._price: tuple[float, float] | None = None

    def body(self, request: LMRequest) -> dict[str, Any]:
        b: dict[str, Any] = {"model": self.served_name, "max_tokens": request.max_tokens,
                             "temperature": request.temperature, "seed": request.seed, **self.extra}
        if request.top_p != 1.0:
            b["top_p"] = request.top_p
        if request.stop:
            b["stop"] = list(request.stop)
        if request.mode == "chat":
            b["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
        else:
            b["prompt"] = request.prompt or ""
        if request.choices:
            b.update(logprob_params(request.mode))
            if self.guided_choice:
                b["guided_choice"] = list(request.choices)
        return b

    def complete(self, request: LMRequest, api_key: str | None) -> LMResponse:
        path = "/chat/completions" if request.mode == "chat" else "/completions"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        secrets = (api_key,) if api_key else ()
        client = shared_client(self.base_url, api_key)
        t0 = time.perf_counter()
        try:
            resp = client.post(self.base_url + path, json=self.body(request), headers=headers,
                               timeout=httpx.Timeout(self.timeout))
            if resp.status_code >= 300:
                raise HTTPStatusFailure(_error_message(resp), resp.status_code, resp)
            data = resp.json()
        except (HTTPStatusFailure, httpx.HTTPError) as e:
            raise map_exception(e, self.model, secrets, api_base=self.base_url) from None
        except ValueError as e:  # a 2xx whose body is not JSON
            raise LMError(f"{self.model}: the server sent a reply that is not JSON ({e})", status=200) from None
        latency = time.perf_counter() - t0
        try:
            choice = data["choices"][0]
            text = (choice["message"].get("content") if request.mode == "chat" else choice.get("text")) or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise LMError(f"{self.model}: the server's reply has no completion in it: {str(data)[:300]}",
                          status=200) from None
        usage = data.get("usage") or {}
        pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        lps = choice_logprobs(choice, request.choices, request.mode) if request.choices else ()
        return LMResponse(text=str(text), prompt_tokens=pt, completion_tokens=ct, cost=self._cost(pt, ct),
                          latency_s=latency, choice_logprobs=lps)

    def _cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Priced from litellm's bundled map when it knows the model (self-hosted: 0)."""
        if self._price is None:
            price = (0.0, 0.0)
            try:
                from medcompile.lm.litellm_lm import _lazy_litellm

                info = _lazy_litellm().get_model_info(self.model)
                price = (float(info.get("input_cost_per_token") or 0.0),
                         float(info.get("output_cost_per_token") or 0.0))
            except Exception:  # noqa: BLE001 - not in the price map
                pass
            self._price = price
        return prompt_tokens * self._price[0] + completion_tokens * self._price[1]

    def settings(self) -> dict[str, Any]:
        return {"transport": "openai-http", "guided_choice": self.guided_choice}


def logprob_params(mode: str) -> dict[str, Any]:
    """What to ask an OpenAI-shaped API for so that a request's choices can be scored."""
    return {"logprobs": True, "top_logprobs": TOP_LOGPROBS} if mode == "chat" else {"logprobs": TEXT_LOGPROBS}


def _positions(choice: Mapping[str, Any], mode: str) -> list[tuple[str, dict[str, float]]]:
    """(sampled token, {candidate token: logprob}) per generated position, either API shape."""
    lp = choice.get("logprobs")
    if not isinstance(lp, Mapping):
        return []
    out: list[tuple[str, dict[str, float]]] = []
    if isinstance(lp.get("content"), list):  # chat: content[i] = {token, logprob, top_logprobs: [...]}
        for pos in lp["content"]:
            tops = {str(t["token"]): float(t["logprob"]) for t in pos.get("top_logprobs") or ()
                    if isinstance(t, Mapping) and "token" in t}
            tops.setdefault(str(pos.get("token", "")), float(pos.get("logprob", -math.inf)))
            out.append((str(pos.get("token", "")), tops))
    elif isinstance(lp.get("top_logprobs"), list):  # completions: tokens[i], top_logprobs[i] = {tok: lp}
        tokens = lp.get("tokens") or []
        for i, tops in enumerate(lp["top_logprobs"]):
            tops = {str(k): float(v) for k, v in (tops or {}).items()}
            out.append((str(tokens[i]) if i < len(tokens) else max(tops, key=tops.get, default=""), tops))
    return out


def choice_logprobs(choice: Mapping[str, Any], keys: tuple[str, ...], mode: str) -> tuple[tuple[str, float], ...]:
    """Per-key log-probabilities at the first generated token that is one of `keys`.

    Token variants of one key (" B", "B") are summed. A key missing from the top list gets
    the smallest listed log-probability (its upper bound). Normalised over the keys; empty
    when no position chose a key (the reply text is parsed as usual then).
    """
    wanted = set(keys)
    for sampled, tops in _positions(choice, mode):
        if sampled.strip() not in wanted:
            continue
        mass: dict[str, list[float]] = {}
        for tok, lp in tops.items():
            if tok.strip() in wanted and lp > -math.inf:
                mass.setdefault(tok.strip(), []).append(lp)
        floor = min(tops.values()) if tops else -math.inf
        raw = {k: _logsumexp(mass[k]) if k in mass else floor for k in keys}
        total = _logsumexp(list(raw.values()))
        if total == -math.inf:
            return ()
        return tuple((k, raw[k] - total) for k in keys)
    return ()


def _logsumexp(xs: list[float]) -> float:
    m = max(xs, default=-math.inf)
    if m == -math.inf:
        return -math.inf
    return m + math.log(sum(math.exp(x - m) for x in xs))
