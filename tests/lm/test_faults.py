from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from medcompile.lm.base import LMError, LMRequest, LMUnavailable
from medcompile.lm.cache import CachedLM, DiskCache
from medcompile.lm.faults import FAULTS, NON_UTF8_TEXT, FaultyLM
from medcompile.lm.meter import MeteredLM
from medcompile.lm.retry import LimitedLM, RetryingLM
from medcompile.lm.scripted import ConstantLM, EchoLM

LETTER = re.compile(r"Answer:\s*([A-E])")


def req(i: int = 0) -> LMRequest:
    return LMRequest(model="m", mode="text", prompt=f"q{i}")


@pytest.mark.parametrize("name,status,retry_after", [
    ("timeout", 408, None), ("rate_limit", 429, 0.01), ("server_error", 503, None),
    ("connection_reset", None, None), ("down", 503, None)])
def test_error_faults_raise_retryable_errors(name: str, status: int | None,
                                             retry_after: float | None) -> None:
    inner = ConstantLM("Answer: A")
    lm = FaultyLM(inner, [name])
    with pytest.raises(LMError) as ei:
        lm.complete(req())
    assert ei.value.retryable and ei.value.status == status and ei.value.retry_after == retry_after
    assert inner.calls == 0 and lm.injected == [(0, name)]


def test_text_faults() -> None:
    lm = FaultyLM(ConstantLM("Answer: A"), ["empty", "unparsable", "two_answers", "non_utf8"])
    texts = [lm.complete(req(i)).text for i in range(4)]
    assert texts[0] == ""
    assert LETTER.findall(texts[1]) == []
    assert LETTER.findall(texts[2]) == ["A", "C"]
    assert texts[3] == NON_UTF8_TEXT
    with pytest.raises(UnicodeEncodeError):
        texts[3].encode("utf-8")  # really not valid UTF-8
    assert json.loads(json.dumps(texts[3])) == texts[3]
    assert lm.counts == {"empty": 1, "unparsable": 1, "two_answers": 1, "non_utf8": 1}


def test_script_passes_through_on_none_ok_and_when_exhausted() -> None:
    inner = ConstantLM("Answer: A")
    lm = FaultyLM(inner, [None, "ok", "empty"])
    assert [lm.complete(req(i)).text for i in range(5)] == ["Answer: A", "Answer: A", "", "Answer: A",
                                                            "Answer: A"]
    assert inner.calls == 4 and lm.injected == [(2, "empty")]


def test_down_is_sticky() -> None:
    lm = FaultyLM(ConstantLM("x"), [None, "down", None, None])
    lm.complete(req())
    for _ in range(4):
        with pytest.raises(LMError, match="down"):
            lm.complete(req())
    assert [f for _, f in lm.injected] == ["down"] * 4


def test_unknown_fault_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        FaultyLM(ConstantLM("x"), ["melt"]).complete(req())
    with pytest.raises(ValueError, match="unknown faults"):
        FaultyLM(ConstantLM("x"), {"melt": 0.1})
    with pytest.raises(ValueError):
        FaultyLM(ConstantLM("x"), {"timeout": 0.7, "empty": 0.6})


def test_probabilistic_plan_is_seeded_per_request_not_per_order() -> None:
    plan = {"timeout": 0.2, "empty": 0.1}
    reqs = [req(i) for i in range(300)]

    def faults(order: list[LMRequest], seed: int) -> dict[str, str]:
        lm = FaultyLM(ConstantLM("x"), plan, seed=seed)
        out = {}
        for r in order:
            try:
                out[r.prompt] = "ok" if lm.complete(r).text == "x" else "empty"
            except LMError:
                out[r.prompt] = "timeout"
        return out  # type: ignore[return-value]

    a = faults(reqs, 1)
    shuffled = reqs[:]
    random.Random(5).shuffle(shuffled)
    assert faults(shuffled, 1) == a
    assert faults(reqs, 2) != a
    n = len(reqs)
    counts = {k: list(a.values()).count(k) for k in ("timeout", "empty")}
    assert 0.12 * n < counts["timeout"] < 0.28 * n and 0.04 * n < counts["empty"] < 0.16 * n


def test_retry_rides_out_transient_faults_and_gives_up_when_down() -> None:
    sleeps: list[float] = []
    lm = RetryingLM(FaultyLM(EchoLM(), ["timeout", "rate_limit", "server_error", "connection_reset"]),
                    max_retries=5, base_delay=1, sleep=sleeps.append)
    assert lm.complete(req(7)).text == "q7"
    assert sleeps == [1, 0.01, 4, 8]  # the 429's Retry-After replaced the 2 s backoff
    with pytest.raises(LMUnavailable):
        RetryingLM(FaultyLM(EchoLM(), ["down"]), max_retries=3, sleep=sleeps.append).complete(req())


def test_full_stack_under_faults(tmp_path: Path) -> None:
    plan = ["timeout", None, "two_answers", "rate_limit", "rate_limit", None] + ["down"] * 1
    faulty = FaultyLM(EchoLM(), plan)
    lm = MeteredLM(CachedLM(LimitedLM(RetryingLM(faulty, max_retries=2, sleep=lambda s: None), 2),
                            DiskCache(tmp_path)))
    assert lm.complete(req(1)).text == "q1"          # timeout, then ok
    assert lm.complete(req(2)).text == "Answer: A\nAnswer: C"  # bad text is still a response
    assert lm.complete(req(3)).text == "q3"          # two 429s, then ok
    assert lm.complete(req(1)).cached                # served from cache, no fault drawn
    with pytest.raises(LMUnavailable):
        lm.complete(req(4))                          # backend down for good
    u = lm.snapshot()
    assert (u.calls, u.cached_calls, u.failures) == (4, 1, 1)
    assert faulty.counts == {"timeout": 1, "two_answers": 1, "rate_limit": 2, "down": 3}
    assert sorted(FAULTS) == sorted(["timeout", "rate_limit", "server_error", "connection_reset",
                                     "empty", "unparsable", "two_answers", "non_utf8", "down"])
