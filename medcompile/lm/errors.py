"""What a failed provider call means: retry it, give up on this call, or stop the run.

Every HTTP backend (litellm, the direct OpenAI-compatible client) maps its exceptions
here, so they agree on three outcomes:

- transient (`LMError(retryable=True)`): timeouts, 429, 5xx, a connection reset by a
  server that was reachable; `RetryingLM` retries these with backoff;
- this call only (`LMError(retryable=False)`): a request the provider refused (e.g. a
  prompt over the context window); the question abstains, the run goes on;
- configuration (`LMConfigError`, fatal): the call can never succeed as configured:
  an unknown model or provider, a missing or rejected API key, nothing listening at
  the server address (connection refused, host not found). Never retried; the run
  stops at once with a message that names the cause first.

Messages are scrubbed of anything that looks like a credential.
"""
from __future__ import annotations

import email.utils
import errno
import os
import re
import socket
import time
from typing import Any

from medcompile.lm.base import LMConfigError, LMError

_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL)", re.I)  # env var names
_SECRET_PATTERNS = [
    re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"),
    re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._\-]{6,}"),
    re.compile(r"(?i)((?:api[_-]?key|x-api-key|authorization|token)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{6,}"),
]
_RETRYABLE_STATUS = {408, 409, 425, 429}
#: How to name a model spec that works without any provider set-up.
OFFLINE_SPECS = "local, sim, echo"


def scrub(text: str, extra_secrets: tuple[str, ...] = ()) -> str:
    """Remove anything that looks like a credential from `text`.

    Values of env vars whose names look secret (…_API_KEY, …_TOKEN) are replaced
    wherever they appear, plus common key shapes (sk-…, Bearer …, api_key=…).
    """
    secrets = [v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 8]
    secrets += [s for s in extra_secrets if s and len(s) >= 4]
    for s in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(s, "***")
    text = _SECRET_PATTERNS[0].sub("sk-***", text)
    text = _SECRET_PATTERNS[1].sub(r"\1 ***", text)
    return _SECRET_PATTERNS[2].sub(r"\1***", text)


def retry_after(exc: BaseException) -> float | None:
    """Seconds from a Retry-After / retry-after-ms header, if the provider sent one."""
    headers: Any = None
    resp = getattr(exc, "response", None)
    if resp is not None:
        headers = getattr(resp, "headers", None)
    headers = headers or getattr(exc, "headers", None) or getattr(exc, "litellm_response_headers", None) or {}
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
    except (AttributeError, ValueError):
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


_retry_after = retry_after  # the name litellm_lm used


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and everything it was raised from or during (cycles cut)."""
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out and len(out) < 20:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def unreachable_reason(exc: BaseException) -> str | None:
    """'connection refused' / 'host not found' when nothing can be listening at the address.

    A refused connection means no server on that port (or a wrong port): retrying in a
    few seconds will not start one, so it is configuration. A reset, a timeout or a
    temporary DNS failure on a reachable host is transient and is not named here.
    """
    for e in _chain(exc):
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, socket.gaierror) and e.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
            return "host not found"
    text = " ".join(str(e) for e in _chain(exc))
    if "Connection refused" in text or f"[Errno {errno.ECONNREFUSED}]" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname provided" in text:
        return "host not found"
    return None


def unknown_model_message(model: str, detail: str = "") -> str:
    """The one line for a model name no provider claims."""
    hint = " (no provider prefix)" if "/" not in model else ""
    return (f"model {model!r} is not a model litellm knows{hint}: use --lm {OFFLINE_SPECS}, "
            f"or e.g. openai/gpt-4o-mini, ollama/llama3, openai/<name> with --api-base for a local server"
            + (f" [{detail}]" if detail else ""))


_MISSING_KEY_SIGNS = ("api_key client option must be set", "Missing credentials", "Missing API Key",
                      "Missing Anthropic API Key", "no api key", "API key not found")


def key_variable(model: str) -> str:
    """The environment variable a provider's key usually lives in (OPENAI_API_KEY, ...)."""
    provider = model.split("/", 1)[0] if "/" in model else "openai"
    provider = provider.removeprefix("text-completion-").removeprefix("hosted_")
    return re.sub(r"[^A-Za-z0-9]+", "_", provider).upper() + "_API_KEY"


def key_message(model: str, detail: str, status: int | None, missing: bool) -> str:
    """The one line for a key that is missing (never sent) or was refused (401/403)."""
    var = key_variable(model)
    if missing:
        cause = f"no API key: set {var} (or pass api_key_env)"
    elif status == 403:
        cause = f"the API key in {var} is not allowed to use this model"
    else:
        cause = f"the API key was rejected: check {var}"
    return f"{model}: {cause}, or use --lm {OFFLINE_SPECS} to try without one [{detail}]"


def map_exception(exc: BaseException, model: str, secrets: tuple[str, ...] = (), *,
                  api_base: str | None = None) -> LMError:
    """A litellm/openai/httpx exception as an LMError (LMConfigError when it can never
    succeed), with `retryable` set and keys scrubbed."""
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    detail = scrub(f"{type(exc).__name__}: {exc}", secrets)
    msg = f"{model}: {detail}"
    config = _config_error(exc, model, status, detail, api_base)
    if config is not None:
        return config
    litellm = _litellm_if_loaded()
    if litellm is not None:
        if isinstance(exc, litellm.RateLimitError):
            return LMError(msg, retryable=True, retry_after=retry_after(exc), status=429)
        if isinstance(exc, litellm.Timeout):
            return LMError(msg, retryable=True, status=status or 408)
        if isinstance(exc, litellm.APIConnectionError):
            return LMError(msg, retryable=True, status=status)
        if isinstance(exc, litellm.BadRequestError):
            return LMError(msg, retryable=False, status=status)
    if status is not None:
        retryable = status in _RETRYABLE_STATUS or status >= 500
        return LMError(msg, retryable=retryable, retry_after=retry_after(exc) if retryable else None,
                       status=status)
    if _is_transport_error(exc):
        return LMError(msg, retryable=True)
    return LMError(msg, retryable=False)


def _config_error(exc: BaseException, model: str, status: int | None, detail: str,
                  api_base: str | None) -> LMConfigError | None:
    """The LMConfigError for `exc`, or None when it is not a configuration problem."""
    name = type(exc).__name__
    text = str(exc)
    if "LLM Provider NOT provided" in text or name == "UnsupportedProviderError":
        return LMConfigError(unknown_model_message(model), status=status)
    missing = any(sign.lower() in text.lower() for sign in _MISSING_KEY_SIGNS)
    if name in ("AuthenticationError", "PermissionDeniedError") or status in (401, 403) or missing:
        return LMConfigError(key_message(model, detail, status, missing), status=status)
    if name == "NotFoundError" or status == 404:
        where = f" at {scrub(api_base)}" if api_base else ""
        return LMConfigError(f"{model}: model or endpoint not found{where}: check the model name"
                             + (" and that --api-base ends in /v1" if api_base else "") + f" [{detail}]",
                             status=status or 404)
    reason = unreachable_reason(exc)
    if reason is not None:
        where = scrub(api_base) if api_base else "the provider"
        return LMConfigError(f"cannot reach {where} ({reason}) for model {model}: is the server running, and "
                             f"are the host and port right? [{detail}]", status=status)
    return None


def _litellm_if_loaded() -> Any:
    """litellm's exception classes, only if litellm is already imported (mapping an
    error from another client must not pay litellm's import time)."""
    import sys

    return sys.modules.get("litellm")


def _is_transport_error(exc: BaseException) -> bool:
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx comes with litellm and fastapi
        return False
    return isinstance(exc, httpx.TransportError)
