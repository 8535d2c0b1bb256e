"""Accounting for model work: every call counted, and a hard cap on calls.

Reports need to say what a compile cost (calls, tokens, money, latency); budgets
must cut a search off at the same point whether or not the cache is warm, so the
budget counts logical calls, not live ones.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import replace

from medcompile.lm.base import LM, LMError, LMRequest, LMResponse, Usage
from medcompile.lm.wrapper import LMWrapper


class UsageMeter:
    """A `Usage` plus per-call latencies, updated under a lock (threads share one LM)."""

    def __init__(self) -> None:
        self.usage = Usage()
        self._latencies: list[tuple[float, bool]] = []  # (seconds, cached)
        self._lock = threading.Lock()

    def record(self, resp: LMResponse, latency_s: float) -> None:
        with self._lock:
            self.usage.add_response(replace(resp, latency_s=latency_s))
            self._latencies.append((latency_s, resp.cached))

    def record_failure(self) -> None:
        with self._lock:
            self.usage.failures += 1

    def snapshot(self) -> Usage:
        """A consistent copy, safe to keep while calls go on."""
        with self._lock:
            return replace(self.usage)

    def latencies(self, *, live_only: bool = False) -> list[float]:
        with self._lock:
            return [s for s, cached in self._latencies if not (live_only and cached)]

    def percentile(self, p: float, *, live_only: bool = True) -> float | None:
        """Nearest-rank percentile (p in 0..100) of call latency; None if no calls."""
        xs = sorted(self.latencies(live_only=live_only))
        if not xs:
            return None
        rank = max(1, math.ceil(p / 100 * len(xs)))
        return xs[min(rank, len(xs)) - 1]


def usage_diff(after: Usage, before: Usage) -> Usage:
    """The work done between two snapshots (e.g. one phase of a compile)."""
    return Usage(**{k: getattr(after, k) - getattr(before, k)
                    for k in Usage.__dataclass_fields__})


class MeteredLM(LMWrapper):
    """Count every call through it: live or cached, tokens, cost, wall-clock latency.

    Latency is measured here, around the whole stack below (cache lookup, waiting for a
    concurrency slot, retries), because that is what the program experiences.
    """

    def __init__(self, inner: LM) -> None:
        super().__init__(inner)
        self.meter = UsageMeter()

    @property
    def usage(self) -> Usage:
        """The live counters (mutated under a lock); use `snapshot()` to keep a copy."""
        return self.meter.usage

    def snapshot(self) -> Usage:
        return self.meter.snapshot()

    def latencies(self, *, live_only: bool = False) -> list[float]:
        return self.meter.latencies(live_only=live_only)

    def percentile(self, p: float, *, live_only: bool = True) -> float | None:
        return self.meter.percentile(p, live_only=live_only)

    def complete(self, request: LMRequest) -> LMResponse:
        t0 = time.perf_counter()
        try:
            resp = self.inner.complete(request)
        except Exception:
            self.meter.record_failure()
            raise
        self.meter.record(resp, time.perf_counter() - t0)
        return resp


class BudgetExceeded(LMError):
    """The call budget is spent: the caller should stop searching and keep its best."""

    fatal = True  # a run must stop, not record an abstention

    def __init__(self, message: str, *, max_calls: int) -> None:
        super().__init__(message, retryable=False)
        self.max_calls = max_calls


class BudgetedLM(LMWrapper):
    """Allow at most `max_calls` logical calls; refuse call max_calls+1 before making it.

    Every call counts, cached or not, failed or not, so a budgeted search stops at the
    same point on a cold and on a warm cache.
    """

    def __init__(self, inner: LM, max_calls: int) -> None:
        if max_calls < 0:
            raise ValueError("max_calls must be >= 0")
        super().__init__(inner)
        self.max_calls = max_calls
        self._calls = 0
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        return self._calls

    @property
    def remaining(self) -> int:
        return max(0, self.max_calls - self._calls)

    def complete(self, request: LMRequest) -> LMResponse:
        with self._lock:
            if self._calls >= self.max_calls:
                raise BudgetExceeded(
                    f"call budget of {self.max_calls} for model {self.model!r} is spent",
                    max_calls=self.max_calls)
            self._calls += 1
        return self.inner.complete(request)
