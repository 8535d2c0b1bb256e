from __future__ import annotations

import threading
from collections.abc import Iterable

import pytest

from medcompile.lm.base import LMError, LMRequest, LMUnavailable
from medcompile.lm.faults import FaultyLM
from medcompile.lm.retry import LimitedLM, RetryingLM
from medcompile.lm.scripted import ConstantLM, ScriptedLM

REQ = LMRequest(model="scripted", mode="text", prompt="Q?")


def failing(outcomes: Iterable[BaseException | str]) -> ScriptedLM:
    it = iter(outcomes)

    def fn(_r: LMRequest) -> str:
        o = next(it)
        if isinstance(o, BaseException):
            raise o
        return o

    return ScriptedLM(fn, model="m-under-test")


def test_retries_retryable_errors_with_exponential_backoff() -> None:
    inner = failing([LMError("t", retryable=True)] * 3 + ["Answer: A"])
    sleeps: list[float] = []
    lm = RetryingLM(inner, max_retries=5, base_delay=0.5, max_delay=30, sleep=sleeps.append)
    assert lm.complete(REQ).text == "Answer: A"
    assert sleeps == [0.5, 1.0, 2.0]
    assert inner.calls == 4 and lm.retries == 3


def test_backoff_is_capped_at_max_delay() -> None:
    inner = failing([LMError("t", retryable=True)] * 6 + ["ok"])
    sleeps: list[float] = []
    RetryingLM(inner, max_retries=6, base_delay=1, max_delay=4, sleep=sleeps.append).complete(REQ)
    assert sleeps == [1, 2, 4, 4, 4, 4]


def test_honours_retry_after() -> None:
    inner = failing([LMError("429", retryable=True, retry_after=7.0, status=429), "ok"])
    sleeps: list[float] = []
    RetryingLM(inner, base_delay=0.5, sleep=sleeps.append).complete(REQ)
    assert sleeps == [7.0]


def test_retry_after_is_capped() -> None:
    inner = failing([LMError("429", retryable=True, retry_after=10_000, status=429), "ok"])
    sleeps: list[float] = []
    RetryingLM(inner, sleep=sleeps.append, max_retry_after=60).complete(REQ)
    assert sleeps == [60]


def test_non_retryable_error_is_raised_at_once() -> None:
    inner = failing([LMError("bad request", retryable=False, status=400), "never"])
    sleeps: list[float] = []
    with pytest.raises(LMError, match="bad request") as ei:
        RetryingLM(inner, sleep=sleeps.append).complete(REQ)
    assert not isinstance(ei.value, LMUnavailable)
    assert sleeps == [] and inner.calls == 1


def test_programming_errors_are_not_retried() -> None:
    inner = failing([KeyError("bug"), "never"])
    with pytest.raises(KeyError):
        RetryingLM(inner, sleep=lambda s: None).complete(REQ)
    assert inner.calls == 1


def test_builtin_timeouts_and_resets_are_retried() -> None:
    inner = failing([TimeoutError("read timed out"), ConnectionResetError("reset"), "ok"])
    assert RetryingLM(inner, sleep=lambda s: None).complete(REQ).text == "ok"
    assert inner.calls == 3


def test_gives_up_with_lm_unavailable_naming_model_and_last_error() -> None:
    errors = [LMError(f"503 number {i}", retryable=True, status=503) for i in range(4)]
    inner = failing(errors)
    sleeps: list[float] = []
    with pytest.raises(LMUnavailable) as ei:
        RetryingLM(inner, max_retries=3, base_delay=0.1, sleep=sleeps.append).complete(REQ)
    msg = str(ei.value)
    assert "m-under-test" in msg and "503 number 3" in msg and "4 attempt" in msg
    assert ei.value.__cause__ is errors[3] and ei.value.status == 503
    assert not ei.value.retryable  # outer layers must not retry it again
    assert inner.calls == 4 and len(sleeps) == 3


def test_down_backend_stops_after_max_retries() -> None:
    inner = FaultyLM(ConstantLM("x"), ["down"])
    with pytest.raises(LMUnavailable, match="down"):
        RetryingLM(inner, max_retries=2, sleep=lambda s: None).complete(REQ)
    assert inner.calls == 3


def test_zero_retries_means_one_try() -> None:
    inner = failing([LMError("t", retryable=True), "ok"])
    with pytest.raises(LMUnavailable):
        RetryingLM(inner, max_retries=0, sleep=lambda s: None).complete(REQ)
    assert inner.calls == 1


def test_limited_lm_caps_calls_in_flight() -> None:
    in_flight = 0
    peak = 0
    lock = threading.Lock()
    gate = threading.Event()

    def fn(_r: LMRequest) -> str:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        gate.wait(0.05)
        with lock:
            in_flight -= 1
        return "ok"

    lm = LimitedLM(ScriptedLM(fn), max_concurrency=3)
    ts = [threading.Thread(target=lm.complete, args=(REQ,)) for _ in range(12)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert peak == 3


def test_wrappers_expose_model_and_mode() -> None:
    inner = ConstantLM("x", model="abc", mode="chat")
    lm = LimitedLM(RetryingLM(inner), 2)
    assert (lm.model, lm.mode) == ("abc", "chat")
    with pytest.raises(ValueError):
        LimitedLM(inner, 0)
