"""Every remote provider (OpenAI, Anthropic, Ollama, vLLM, ...) through litellm.

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
from medcompile.lm.errors import map_exception, retry_after, scrub  # noqa: F401 - re-exported

_SECRET_KWARG = re.compile(r"(api_?key|secret|password|credential|authorization|^token$|_token$)", re.I)
_TEXT_PREFIXES = ("text-completion-openai/", "text-completion-codestral/")
_import_lock = threading.Lock()
_litellm: Any = None


def _lazy_litellm() -> Any:
    """Import litellm once, offline and quiet."""
    global _litellm
    with _import_lock:
        if _litellm is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
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
                 extra: dict[str, Any] | None = None) -> None:
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

    def complete(self, request: LMRequest) -> LMResponse:
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
        return LMResponse(text=text, prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                          completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                          cost=self._cost(resp), latency_s=latency)

    def _openai_compatible(self) -> bool:
        return self.model.split("/", 1)[0] in ("openai", "text-completion-openai")

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
                "extra": {k: v for k, v in self.extra.items()
                          if isinstance(v, (str, int, float, bool, type(None)))}}

    def __repr__(self) -> str:
        return f"LiteLLMLM(model={self.model!r}, mode={self.mode!r})"
