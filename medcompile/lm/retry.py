"""Retries and concurrency limits around a model backend.

Remote providers fail transiently (timeouts, 429, 5xx, dropped connections); a
compile makes thousands of calls, so it must ride those out, yet stop cleanly with
`LMUnavailable` when a backend is down for good. Delays are jitter-free so that a
test (or a rerun) sees exactly the same schedule.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from medcompile.lm.base import LM, LMConfigError, LMError, LMRequest, LMResponse, LMUnavailable
from medcompile.lm.wrapper import LMWrapper


def _as_lm_error(exc: BaseException) -> LMError | None:
    """LMErrors as they are; a bare refused connection is configuration (nothing listens
    there), bare socket timeouts and resets count as retryable."""
    if isinstance(exc, LMError):
        return exc
    if isinstance(exc, ConnectionRefusedError):
        return LMConfigError(f"connection refused: {exc}; is the model server running?")
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return LMError(f"{type(exc).__name__}: {exc}", retryable=True)
    return None


class RetryingLM(LMWrapper):
    """Retry retryable errors with exponential backoff: base_delay * 2**attempt, capped.

    Configuration errors (`LMConfigError`: unknown model, missing key, nothing listening)
    are never retried: they are raised at once.
    A server's Retry-After (`LMError.retry_after`) replaces the computed delay, capped at
    `max_retry_after` so a hostile header cannot park the run for hours.
    """

    def __init__(self, inner: LM, max_retries: int = 5, base_delay: float = 0.5,
                 max_delay: float = 30.0, sleep: Callable[[float], None] = time.sleep,
                 max_retry_after: float = 300.0) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        super().__init__(inner)
        self.max_retries = max_retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_retry_after = max_retry_after
        self._sleep = sleep
        self.retries = 0  # total retries made, for reports
        self._lock = threading.Lock()

    def delay_for(self, attempt: int, error: LMError) -> float:
        """Seconds to wait after failed attempt number `attempt` (0-based)."""
        if error.retry_after is not None and error.retry_after >= 0:
            return min(float(error.retry_after), self.max_retry_after)
        return min(self.max_delay, self.base_delay * (2 ** attempt))

    def complete(self, request: LMRequest) -> LMResponse:
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            try:
                return self.inner.complete(request)
            except Exception as exc:  # noqa: BLE001 - filtered just below
                err = _as_lm_error(exc)
                if isinstance(err, LMConfigError) and err is not exc:
                    raise err from exc
                if err is None or not err.retryable or isinstance(exc, (LMUnavailable, LMConfigError)):
                    raise
                if attempt == attempts - 1:
                    raise LMUnavailable(
                        f"model {self.model!r} unavailable after {attempts} attempt(s); "
                        f"last error: {err}", retryable=False, status=err.status) from exc
                with self._lock:
                    self.retries += 1
                self._sleep(self.delay_for(attempt, err))
        raise AssertionError("unreachable")  # pragma: no cover

    def settings(self) -> dict:
        return {"max_retries": self.max_retries, "base_delay": self.base_delay,
                "max_delay": self.max_delay}

    def describe(self) -> dict:
        return {"retry": self.settings()}


class LimitedLM(LMWrapper):
    """At most `max_concurrency` calls in flight: stays under provider rate limits."""

    def __init__(self, inner: LM, max_concurrency: int) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        super().__init__(inner)
        self.max_concurrency = max_concurrency
        self._sem = threading.BoundedSemaphore(max_concurrency)

    def complete(self, request: LMRequest) -> LMResponse:
        with self._sem:
            return self.inner.complete(request)

    def settings(self) -> dict:
        return {"max_concurrency": self.max_concurrency}

    def describe(self) -> dict:
        return self.settings()
