"""Hosted embedding models through litellm (OpenAI, Azure, Cohere, any OpenAI-compatible server).

litellm is imported lazily (it is slow to import) and told to use its bundled cost
map, so building this embedder never touches the network. API keys are read from
an environment variable at call time and never appear in `settings()` or `id`.
"""
from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from medcompile.embed.base import EmbedderError, check_texts, empty_matrix, l2_normalize
from medcompile.offline import keep_litellm_offline

# Dims of well-known models, so that `dim` needs no probe call for them.
KNOWN_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
_RETRYABLE = {"RateLimitError", "Timeout", "APITimeoutError", "APIConnectionError",
              "ServiceUnavailableError", "InternalServerError", "BadGatewayError"}


def _litellm() -> Any:
    keep_litellm_offline()
    try:
        import litellm
    except ImportError as e:  # pragma: no cover - dependency is pinned
        raise EmbedderError("the 'litellm' package is not installed") from e
    litellm.suppress_debug_info = True  # else every failure prints help banners to stdout
    return litellm


def _map_error(e: Exception, model: str, api_base: str | None, key_env: str | None) -> EmbedderError:
    """Turn litellm's exception zoo into one short, actionable message (with the key redacted)."""
    names = {c.__name__ for c in type(e).__mro__}
    where = f" at {api_base}" if api_base else ""
    detail = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
    key = os.environ.get(key_env) if key_env else None
    if key:
        detail = detail.replace(key, "***")
    if names & {"AuthenticationError", "PermissionDeniedError"}:
        hint = f"${key_env}" if key_env else "the provider's API key variable"
        msg = f"authentication failed (check {hint})"
    elif "NotFoundError" in names:
        msg = "model not found"
    elif "ContextWindowExceededError" in names:
        msg = "a text is longer than the model accepts"
    elif "RateLimitError" in names:
        msg = "rate limited"
    elif names & {"Timeout", "APITimeoutError"}:
        msg = "timed out"
    elif "APIConnectionError" in names or "connection error" in detail.lower():
        msg = "cannot connect"  # litellm reports refused connections as InternalServerError
    elif names & {"InternalServerError", "ServiceUnavailableError", "BadGatewayError"}:
        msg = "server error"
    elif "BadRequestError" in names:
        msg = "bad request"
    else:
        msg = "failed"
    return EmbedderError(f"litellm embedding {model!r}{where}: {msg}: {detail}",
                         retryable=bool(names & _RETRYABLE))


class LiteLLMEmbedder:
    """Embeddings from `litellm.embedding`, batched, L2-normalised.

    Retries are left to litellm (for OpenAI-compatible providers, the OpenAI SDK's
    backoff, which honours Retry-After). Retrying here as well would multiply the
    attempts. Quirk: litellm treats `max_retries=0` as "use its default (2)".
    """

    kind = "litellm"

    def __init__(self, model: str, *, dim: int | None = None, dimensions: int | None = None,
                 api_base: str | None = None, api_key_env: str | None = None, batch_size: int = 128,
                 timeout: float = 60.0, max_retries: int = 2) -> None:
        if not isinstance(model, str) or not model.strip():
            raise EmbedderError("litellm: model must be a non-empty string like 'openai/text-embedding-3-small'")
        if api_base and (urlsplit(api_base).password or urlsplit(api_base).username):
            raise EmbedderError("litellm: api_base must not contain credentials; use api_key_env")
        if api_key_env is not None and not api_key_env.isidentifier():
            raise EmbedderError(f"litellm: api_key_env must name an environment variable, got {api_key_env!r}")
        if batch_size < 1 or max_retries < 0:
            raise EmbedderError("litellm: batch_size must be >= 1 and max_retries >= 0")
        self.model, self.dimensions, self.api_base, self.api_key_env = model, dimensions, api_base, api_key_env
        self.batch_size, self.timeout, self.max_retries = batch_size, timeout, max_retries
        self._dim = dim or dimensions or KNOWN_DIMS.get(model.rsplit("/", 1)[-1])

    @property
    def dim(self) -> int:
        """Known dim, or found by embedding one probe text (one API call, once)."""
        if self._dim is None:
            self._dim = int(self._call(["dimension probe"]).shape[1])
        return self._dim

    @property
    def id(self) -> str:
        return f"litellm/{self.model}/{self.dim}"

    def settings(self) -> dict[str, Any]:
        """JSON-safe description: the env var *name* of the key is kept, never the key."""
        s: dict[str, Any] = {"kind": self.kind, "model": self.model, "dim": self.dim, "normalize": True}
        for k in ("dimensions", "api_base", "api_key_env"):
            if getattr(self, k) is not None:
                s[k] = getattr(self, k)
        return s

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed in batches of `batch_size`; the order of rows follows `texts`."""
        items = check_texts(texts, f"litellm/{self.model}")
        if not items:
            return empty_matrix(self.dim)
        parts = [self._call(items[i:i + self.batch_size]) for i in range(0, len(items), self.batch_size)]
        out = l2_normalize(np.concatenate(parts, axis=0), f"litellm/{self.model}")
        if self._dim is None:
            self._dim = int(out.shape[1])  # learnt for free, no probe call needed
        if out.shape[1] != self._dim:
            raise EmbedderError(f"litellm/{self.model}: got {out.shape[1]}-dim vectors, expected {self._dim}")
        return out

    def _call(self, batch: list[str]) -> np.ndarray:
        litellm = _litellm()
        kwargs: dict[str, Any] = {"model": self.model, "input": batch, "timeout": self.timeout,
                                  "max_retries": self.max_retries}
        if self.dimensions is not None:
            kwargs["dimensions"] = self.dimensions
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise EmbedderError(f"litellm/{self.model}: environment variable {self.api_key_env} is not set")
            kwargs["api_key"] = key
        try:
            response = litellm.embedding(**kwargs)
        except Exception as e:  # litellm raises a zoo of types; map them all
            raise _map_error(e, self.model, self.api_base, self.api_key_env) from None
        return self._parse(response, len(batch))

    def _parse(self, response: Any, n: int) -> np.ndarray:
        data = response["data"] if isinstance(response, dict) else response.data
        rows = [(d["index"], d["embedding"]) if isinstance(d, dict) else (d.index, d.embedding) for d in data]
        if len(rows) != n:
            raise EmbedderError(f"litellm/{self.model}: asked for {n} embeddings, got {len(rows)}")
        rows.sort(key=lambda r: r[0])
        try:
            return np.asarray([r[1] for r in rows], dtype=np.float64)
        except ValueError as e:
            raise EmbedderError(f"litellm/{self.model}: embeddings of unequal length or non-numeric") from e

    def __repr__(self) -> str:
        return f"LiteLLMEmbedder({self.model!r})"
