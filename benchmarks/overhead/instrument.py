"""Timing instrumentation: seconds per named section, and temporary attribute patches."""
from __future__ import annotations

import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from typing import Any, Callable


class Acc:
    """Accumulates seconds per named section (single-threaded runs)."""

    def __init__(self) -> None:
        self.t: dict[str, float] = defaultdict(float)
        self.n: Counter = Counter()

    def wrap(self, name: str, fn: Callable) -> Callable:
        def inner(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.t[name] += time.perf_counter() - t0
                self.n[name] += 1
        return inner


@contextmanager
def patched(obj: Any, attr: str, new: Any):  # noqa: ANN201
    old = getattr(obj, attr)
    setattr(obj, attr, new)
    try:
        yield
    finally:
        setattr(obj, attr, old)
