from __future__ import annotations

import threading
from pathlib import Path

import pytest

from medcompile.lm.base import LMError, LMRequest, Usage
from medcompile.lm.cache import CachedLM, DiskCache
from medcompile.lm.meter import BudgetedLM, BudgetExceeded, MeteredLM, usage_diff
from medcompile.lm.scripted import ConstantLM, ScriptedLM


def req(i: int = 0) -> LMRequest:
    return LMRequest(model="scripted", mode="text", prompt=f"question number {i}")


def test_counts_calls_tokens_and_cache_hits(tmp_path: Path) -> None:
    inner = ConstantLM("Answer: B")
    lm = MeteredLM(CachedLM(inner, DiskCache(tmp_path)))
    for i in (0, 1, 0, 0):
        lm.complete(req(i))
    u = lm.snapshot()
    assert (u.calls, u.cached_calls, u.live_calls) == (4, 2, 2)
    assert u.prompt_tokens == 4 * 3 and u.completion_tokens == 4 * 2
    assert inner.calls == 2
    assert len(lm.latencies()) == 4 and len(lm.latencies(live_only=True)) == 2


def test_failures_are_counted_and_reraised() -> None:
    def fn(r: LMRequest) -> str:
        if "1" in (r.prompt or ""):
            raise LMError("nope")
        return "ok"

    lm = MeteredLM(ScriptedLM(fn))
    lm.complete(req(0))
    with pytest.raises(LMError):
        lm.complete(req(1))
    assert (lm.usage.calls, lm.usage.failures) == (1, 1)


def test_thread_safe_counting() -> None:
    lm = MeteredLM(ConstantLM("a b c"))

    def work() -> None:
        for i in range(200):
            lm.complete(req(i))

    ts = [threading.Thread(target=work) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    u = lm.snapshot()
    assert u.calls == 1600 and u.completion_tokens == 1600 * 3 and u.prompt_tokens == 1600 * 3
    assert len(lm.latencies()) == 1600


def test_snapshot_is_a_copy_and_diff_measures_a_phase() -> None:
    lm = MeteredLM(ConstantLM("x"))
    lm.complete(req())
    before = lm.snapshot()
    lm.complete(req())
    lm.complete(req())
    assert before.calls == 1 and lm.usage.calls == 3
    d = usage_diff(lm.snapshot(), before)
    assert isinstance(d, Usage) and d.calls == 2 and d.completion_tokens == 2


def test_latency_percentiles() -> None:
    lm = MeteredLM(ScriptedLM(lambda r: "x", latency=0.0))
    assert lm.percentile(50) is None
    lm.meter._latencies = [(float(i), False) for i in range(1, 101)]
    assert lm.percentile(50) == 50.0 and lm.percentile(95) == 95.0 and lm.percentile(100) == 100.0
    lm.meter._latencies.append((1000.0, True))  # cached calls excluded by default
    assert lm.percentile(100) == 100.0 and lm.percentile(100, live_only=False) == 1000.0


def test_budget_refuses_call_after_the_last_and_never_reaches_inner() -> None:
    inner = ConstantLM("x")
    lm = BudgetedLM(inner, max_calls=3)
    for i in range(3):
        lm.complete(req(i))
    with pytest.raises(BudgetExceeded) as ei:
        lm.complete(req(9))
    assert isinstance(ei.value, LMError) and not ei.value.retryable
    assert inner.calls == 3 and lm.remaining == 0 and lm.calls == 3


@pytest.mark.parametrize("warm", [False, True])
def test_budget_stops_at_same_point_cold_or_warm(tmp_path: Path, warm: bool) -> None:
    inner = ConstantLM("x")
    cached = CachedLM(inner, DiskCache(tmp_path))
    if warm:
        for i in range(10):
            cached.complete(req(i))
    lm = BudgetedLM(cached, max_calls=5)
    done = 0
    with pytest.raises(BudgetExceeded):
        for i in range(10):
            lm.complete(req(i))
            done += 1
    assert done == 5
    assert inner.calls == (10 if warm else 5)


def test_failed_calls_use_budget() -> None:
    lm = BudgetedLM(ScriptedLM(lambda r: (_ for _ in ()).throw(LMError("x"))), max_calls=2)
    for _ in range(2):
        with pytest.raises(LMError) as ei:
            lm.complete(req())
        assert not isinstance(ei.value, BudgetExceeded)
    with pytest.raises(BudgetExceeded):
        lm.complete(req())


def test_budget_exact_under_threads() -> None:
    inner = ConstantLM("x")
    lm = BudgetedLM(inner, max_calls=37)
    refused = []

    def work() -> None:
        for i in range(10):
            try:
                lm.complete(req(i))
            except BudgetExceeded:
                refused.append(1)

    ts = [threading.Thread(target=work) for _ in range(10)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert inner.calls == 37 and len(refused) == 63
