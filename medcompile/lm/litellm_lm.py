"""Every remote provider (OpenAI, Anthropic, Ollama, vLLM, ...) through litellm.

Except one case: an OpenAI-compatible endpoint with a known base URL (`openai/...`,
`text-completion-openai/...`, `hosted_vllm/...` with an api_base, or OPENAI_API_BASE set)
is called directly on one shared HTTP client (`medcompile.lm.openai_http`, which says why:
litellm builds a client per call and its per-call CPU kept runs far below a fast server's
capacity). `transport="litellm"` forces litellm for those too.

litellm is imported lazily (it is slow to import and only needed for remote models),
with its bundled cost map so that importing it never reaches the network. Its own
retries are switched off: `RetryingLM` owns the retry policy. Provider errors are
mapped to `LMError` with `retryable` set, so the stack above can decide. API keys are
read from the environment at call time and never stored on the object, in
`settings()`, in error messages or in the cache.
"""
from __future__ import annotations

import os
import re
import threading
import time
from typing import Any

from medcompile.lm.base import LMConfigError, LMRequest, LMResponse, Mode
from medcompile.offline import keep_litellm_offline
from medcompile.lm.errors import map_exception, retry_after, scrub  # noqa: F401 - re-exported
from medcompile.lm.openai_http import (BODY_PARAMS, OpenAIHTTP, choice_logprobs, endpoint_for,
                                       logprob_params)

_SECRET_KWARG = re.compile(r"(api_?key|secret|password|credential|authorization|^token$|_token$)", re.I)
_TEXT_PREFIXES = ("text-completion-openai/", "text-completion-codestral/")
_import_lock = threading.Lock()
_litellm: Any = None


def _lazy_litellm() -> Any:
    """Import litellm once, offline and quiet."""
    global _litellm
    with _import_lock:
        if _litellm is None:
            keep_litellm_offline()
            import litellm

            litellm.suppress_debug_info = True  # no "Give Feedback" banners on stdout
            litellm.telemetry = False
            _litellm = litellm
    return _litellm


def guess_mode(model: str) -> Mode:
    """'text' for completion-only models, else 'chat' (what almost every provider serves)."""
    if model.startswith(_TEXT_PREFIXES):
        return "text"
    try:
        info = _lazy_litellm().get_model_info(model)
    except Exception:  # noqa: BLE001 - unknown to litellm's map: assume a chat model
        return "chat"
    return "text" if info.get("mode") == "completion" else "chat"


class LiteLLMLM:
    """A remote (or local-server) model via litellm. Keys come from the environment only."""

    def __init__(self, model: str, mode: Mode | None = None, api_base: str | None = None,
                 api_key_env: str | None = None, timeout: float = 60,
                 extra: dict[str, Any] | None = None, transport: str = "auto",
                 guided_choice: bool = False) -> None:
        if mode not in (None, "text", "chat"):
            raise ValueError(f"mode must be 'text', 'chat' or None, not {mode!r}")
        bad = sorted(k for k in (extra or {}) if _SECRET_KWARG.search(k))
        if bad:
            raise ValueError(f"do not pass credentials in `extra` ({bad}); use api_key_env")
        self.model = model
        self.mode: Mode = mode or guess_mode(model)
        self.api_base = api_base
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.extra: dict[str, Any] = dict(extra or {})
        if transport not in ("auto", "http", "litellm"):
            raise ValueError(f"transport must be 'auto', 'http' or 'litellm', not {transport!r}")
        self.transport = transport
        self.guided_choice = guided_choice
        self._direct: OpenAIHTTP | None = None
        self._direct_base: str | None = None

    def _http(self) -> OpenAIHTTP | None:
        """The direct transport when this model is an OpenAI-compatible endpoint (see above).

        Resolved per call (the base may come from the environment) and rebuilt only when it changes.
        """
        if self.transport == "litellm" or not set(self.extra) <= BODY_PARAMS:
            if self.transport == "http":
                raise ValueError(f"{self.model}: transport='http' cannot send extra {sorted(set(self.extra) - BODY_PARAMS)}")
            return None
        base = endpoint_for(self.model, self.api_base)
        if base is None:
            if self.transport == "http":
                raise LMConfigError(f"{self.model}: transport='http' needs an OpenAI-compatible model with an api_base")
            return None
        if self._direct is None or self._direct_base != base:
            self._direct = OpenAIHTTP(self.model, base, timeout=self.timeout, extra=self.extra,
                                      guided_choice=self.guided_choice)
            self._direct_base = base
        return self._direct

    def _api_key(self) -> str | None:
        if self.api_key_env is None:
            if self.api_base and self._openai_compatible() and not os.environ.get("OPENAI_API_KEY"):
                return "no-key"  # a local OpenAI-compatible server (vLLM, llama.cpp) wants none
            return None  # litellm finds the provider's usual variable (OPENAI_API_KEY, ...)
        key = os.environ.get(self.api_key_env)
        if not key:
            raise LMConfigError(f"{self.model}: environment variable {self.api_key_env} is not set "
                                "(it should hold the API key)")
        return key

    def _direct_key(self) -> str | None:
        """The key for a direct call: the named variable, else the provider's usual one."""
        if self.api_key_env is not None:
            return self._api_key()
        name = "HOSTED_VLLM_API_KEY" if self.model.startswith("hosted_vllm/") else "OPENAI_API_KEY"
        return os.environ.get(name) or None

    def complete(self, request: LMRequest) -> LMResponse:
        direct = self._http()
        if direct is not None:
            return direct.complete(request, self._direct_key())
        litellm = _lazy_litellm()
        key = self._api_key()
        kw: dict[str, Any] = dict(model=self.model, max_tokens=request.max_tokens,
                                  temperature=request.temperature, seed=request.seed,
                                  timeout=self.timeout, num_retries=0, max_retries=0,
                                  drop_params=True, **self.extra)
        if request.top_p != 1.0:
            kw["top_p"] = request.top_p
        if request.stop:
            kw["stop"] = list(request.stop)
        if request.choices:  # providers without logprobs drop these (drop_params): the reply is parsed
            kw.update(logprob_params(request.mode))
        if self.api_base:
            kw["api_base"] = self.api_base
        if key is not None:
            kw["api_key"] = key
        t0 = time.perf_counter()
        try:
            if request.mode == "chat":
                msgs = [{"role": m.role, "content": m.content} for m in request.messages]
                resp = litellm.completion(messages=msgs, **kw)
                text = resp.choices[0].message.content or ""
            else:
                resp = litellm.text_completion(prompt=request.prompt or "", **kw)
                text = resp.choices[0].text or ""
        except Exception as e:  # noqa: BLE001 - mapped, scrubbed, re-raised
            raise map_exception(e, self.model, (key,) if key else (), api_base=self.api_base) from None
        latency = time.perf_counter() - t0
        usage = getattr(resp, "usage", None)
        lps = _choice_logprobs(resp, request) if request.choices else ()
        return LMResponse(text=text, prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                          completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                          cost=self._cost(resp), latency_s=latency, choice_logprobs=lps)

    def _openai_compatible(self) -> bool:
        return self.model.split("/", 1)[0] in ("openai", "text-completion-openai", "hosted_vllm")

    def _cost(self, resp: Any) -> float:
        try:
            return float(_lazy_litellm().completion_cost(completion_response=resp) or 0.0)
        except Exception:  # noqa: BLE001 - model not in litellm's price map
            return 0.0

    def settings(self) -> dict:
        """JSON-safe description, never containing a key (only the env var's name)."""
        return {"backend": "litellm", "model": self.model, "mode": self.mode,
                "api_base": scrub(self.api_base) if self.api_base else None,
                "api_key_env": self.api_key_env, "timeout": self.timeout,
                "transport": "openai-http" if self._would_go_direct() else "litellm",
                "extra": {k: v for k, v in self.extra.items()
                          if isinstance(v, (str, int, float, bool, type(None)))}}

    def _would_go_direct(self) -> bool:
        try:
            return self._http() is not None
        except (ValueError, LMConfigError):
            return False

    def __repr__(self) -> str:
        return f"LiteLLMLM(model={self.model!r}, mode={self.mode!r})"


def _choice_logprobs(resp: Any, request: LMRequest) -> tuple[tuple[str, float], ...]:
    """The choices' normalised log-probabilities from litellm's response, read as the direct
    transport reads an OpenAI-shaped reply; empty when the provider sent no logprobs."""
    first = resp.choices[0]
    as_dict = first.model_dump() if hasattr(first, "model_dump") else dict(first)
    try:
        return choice_logprobs(as_dict, request.choices, request.mode)
    except (TypeError, ValueError, KeyError):  # a provider's unexpected logprobs shape: parse the text
        return ()
