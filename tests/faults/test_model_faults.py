"""A misbehaving model never loses work and never crashes a run.

Every fault `FaultyLM` knows is injected under the standard stack (`wrap_lm`: meter,
disk cache, concurrency limit, retries with tiny delays) into `Program.run_many`,
`optimize` and `evaluate`:

* transient errors (timeout, 429 with Retry-After, 5xx, connection reset) are retried
  and leave no trace in the answers (a compile gives the very same program);
* unusable answers (empty, unparsable, two answers, undecodable bytes) become recorded
  abstentions or a parsed answer, counted in the results, never an exception;
* a backend that is down for good stops the compile with a clear `CompileError` (the
  eval with `EvalStopped`), keeping the finished trials and every cached answer, and
  the rerun on a healthy model repeats no call and gives the uninterrupted result.
"""
from __future__ import annotations

import dataclasses

import json
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from medcompile import Predict, Program
from medcompile.compile import CompileError, optimize
from medcompile.lm.base import LMRequest, LMUnavailable
from medcompile.lm.cache import DiskCache
from medcompile.lm.faults import ERROR_FAULTS, RATE_LIMIT_RETRY_AFTER, TEXT_FAULTS, FaultyLM
from medcompile.lm.registry import layers, wrap_lm
from medcompile.lm.retry import RetryingLM
from medcompile.lm.scripted import ScriptedLM, request_text
from tests.faults.faultkit import (COMPILE_KW, all_questions, declared_program, dev_set, eval_set, fixed_program,
                                   oracle, oracle_reply, reference_compile, train_set, work)

__all__ = ["work"]  # the fixture

RETRYABLE = ("timeout", "rate_limit", "server_error", "connection_reset")
BASE_DELAY = 0.002
assert set(RETRYABLE) | {"down"} == set(ERROR_FAULTS)


def stack(inner, cache_dir: Path | None, *, max_retries: int = 4):  # type: ignore[no-untyped-def]
    """The standard stack around `inner`; returns (lm, retry layer, list of sleeps made)."""
    lm = wrap_lm(inner, cache=cache_dir is not None, cache_dir=cache_dir, max_retries=max_retries,
                 base_delay=BASE_DELAY, max_delay=0.05)
    retry = next(x for x in layers(lm) if isinstance(x, RetryingLM))
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        time.sleep(min(s, 0.02))

    retry._sleep = sleep  # noqa: SLF001 - record the schedule, keep the test fast
    return lm, retry, sleeps


def program() -> Program:
    return Program(Predict(tune=False), name="zs")


def healthy_answers(qs) -> list[str | None]:  # type: ignore[no-untyped-def]
    return [r.prediction.answer for r in program().run_many(qs, oracle())]


# ---- Program.run_many ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", RETRYABLE)
def test_transient_errors_are_retried_and_invisible_in_answers(fault: str, work: Path) -> None:
    qs = eval_set()
    backend = oracle()
    faulty = FaultyLM(backend, [fault, fault, None] * len(qs))  # every question fails twice first
    lm, retry, sleeps = stack(faulty, work / "cache")
    results = program().run_many(qs, lm)
    assert [r.prediction.answer for r in results] == healthy_answers(qs)
    assert all(r.error is None and r.prediction.answer is not None for r in results)
    assert faulty.counts == {fault: 2 * len(qs)}
    assert retry.retries == 2 * len(qs) and backend.calls == len(qs)  # each question reached the model once
    if fault == "rate_limit":  # the server's Retry-After replaces the backoff
        assert sleeps == [RATE_LIMIT_RETRY_AFTER] * (2 * len(qs))
        assert RATE_LIMIT_RETRY_AFTER != BASE_DELAY
    else:  # exponential backoff, jitter-free
        assert sleeps == [BASE_DELAY, 2 * BASE_DELAY] * len(qs)
    assert len(DiskCache(work / "cache")) == len(qs)  # failures are never cached
    u = lm.snapshot()
    assert (u.calls, u.failures) == (len(qs), 0)


@pytest.mark.parametrize("fault", TEXT_FAULTS)
def test_unusable_answers_become_counted_abstentions_or_answers(fault: str, work: Path) -> None:
    qs = eval_set()
    backend = oracle()
    faulty = FaultyLM(backend, [fault, None, None] * 4)  # questions 0, 3, 6, 9
    lm, retry, _ = stack(faulty, work / "cache")
    got: list = []
    results = program().run_many(qs, lm, on_result=got.append)
    assert len(results) == len(got) == len(qs) and retry.retries == 0
    bad = [r for i, r in enumerate(results) if i % 3 == 0]
    good = [r for i, r in enumerate(results) if i % 3 != 0]
    assert [r.prediction.answer for r in good] == [a for i, a in enumerate(healthy_answers(qs)) if i % 3]
    abstained = [r for r in results if r.prediction.abstained]
    if fault in ("empty", "unparsable"):
        assert abstained == bad  # exactly the four bad answers, each with its reason
        for r in bad:
            d = r.to_dict()
            assert d["answer"] is None and d["abstain_reason"] and "correct" in d and d["correct"] is False
        assert {r.prediction.reason for r in bad} == {"empty output" if fault == "empty"
                                                      else "no option key at the start"}
    elif fault == "two_answers":  # "Answer: A\nAnswer: C": the first statement wins, as documented
        assert not abstained and {r.prediction.answer for r in bad} == {"A"}
    else:  # non_utf8 still holds "Answer: B"; the broken bytes must not break anything downstream
        assert not abstained and {r.prediction.answer for r in bad} == {"B"}
    for r in results:  # every record can be written as UTF-8 JSON (checkpoints, run output)
        json.dumps(r.to_dict(rationales=True), ensure_ascii=False).encode("utf-8")
    assert len(DiskCache(work / "cache")) == len(qs)


def test_down_for_good_stops_run_many_keeping_finished_results(work: Path) -> None:
    qs = eval_set()
    faulty = FaultyLM(oracle(), [None] * 5 + ["down"])
    lm, retry, _ = stack(faulty, work / "cache", max_retries=2)
    got: list = []
    with pytest.raises(LMUnavailable, match=r"unavailable after 3 attempt\(s\).*down"):
        program().run_many(qs, lm, on_result=got.append)
    assert [r.question.id for r in got] == [q.id for q in qs[:5]]
    assert len(DiskCache(work / "cache")) == 5
    # concurrent: the run still stops (no hang), and what finished was handed over first
    faulty = FaultyLM(oracle(), [None] * 5 + ["down"])
    lm, _, _ = stack(faulty, None, max_retries=1)
    got = []
    with pytest.raises(LMUnavailable):
        program().run_many(qs, lm, concurrency=4, on_result=got.append)
    assert 1 <= len(got) <= 5 and all(r.prediction.answer for r in got)


def test_random_mix_of_every_fault_never_crashes_and_is_reproducible() -> None:
    # Distinct questions: the fault draw for a request depends on how often that very
    # request was seen, which for duplicates run on 4 threads would depend on timing.
    qs = eval_set() + [dataclasses.replace(q, id=q.id + "-2", question=q.question + " (again)") for q in eval_set()]
    probs = {f: 0.07 for f in RETRYABLE + TEXT_FAULTS}

    def run() -> tuple[list, FaultyLM]:
        faulty = FaultyLM(oracle(), probs, seed=7)
        lm, _, _ = stack(faulty, None, max_retries=6)
        return program().run_many(qs, lm, concurrency=4), faulty

    (r1, f1), (r2, _) = run(), run()
    assert len(r1) == len(qs)
    assert sum(f1.counts.values()) >= 3 and set(f1.counts) - set(probs) == set()
    assert [r.prediction.answer for r in r1] == [r.prediction.answer for r in r2]  # seeded per request
    n_abstained = sum(r.prediction.abstained for r in r1)
    assert n_abstained == sum(1 for r in r1 if r.to_dict()["answer"] is None)
    assert all(r.error is None for r in r1)  # retries absorbed every transient error


# ---- optimize ---------------------------------------------------------------------------------------------
def _study_trials(out: Path) -> list[optuna.trial.FrozenTrial]:
    url = f"sqlite:///{out.with_name(out.name + '.study.sqlite')}"
    (name,) = optuna.get_all_study_names(url)
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


def _confirmations(out: Path) -> list[dict]:
    url = f"sqlite:///{out.with_name(out.name + '.study.sqlite')}"
    (name,) = optuna.get_all_study_names(url)
    attrs = optuna.load_study(study_name=name, storage=url).user_attrs
    return [json.loads(v) for k, v in attrs.items() if k.startswith("confirm:")]


@pytest.mark.parametrize("fault", RETRYABLE + TEXT_FAULTS)
def test_compile_survives_every_fault(fault: str, work: Path) -> None:
    ref_bytes, _ = reference_compile()
    faulty = FaultyLM(oracle(), {fault: 0.2}, seed=3)
    lm, retry, _ = stack(faulty, work / "cache", max_retries=6)
    out = work / "out.json"
    prog = optimize(declared_program(), train_set(), dev_set(), lm=lm, out=out, **COMPILE_KW)
    assert prog.compile_info and out.exists()
    assert faulty.counts[fault] >= 3, faulty.counts
    if fault in RETRYABLE:  # retried away: byte for byte the program of a healthy model
        assert retry.retries == faulty.counts[fault]
        assert out.read_bytes() == ref_bytes
    else:
        trials = _study_trials(out)
        abstentions = sum(t.user_attrs.get("abstentions", 0) for t in trials)
        abstentions += prog.compile_info["rationales"]["abstained"]
        abstentions += sum(r.get("abstentions", 0) for r in _confirmations(out))  # finalists, held-out questions
        if fault in ("empty", "unparsable"):
            assert abstentions >= 1  # recorded in the study, not raised
    out.read_bytes().decode("utf-8")  # a valid UTF-8 file whatever the model sent


def test_undecodable_bytes_inside_reasoning_do_not_break_a_compile(work: Path) -> None:
    """A rationale the model wrote with broken bytes becomes an exemplar shown in later
    prompts and stored in the program: neither the cache key, the prompt nor the JSON
    file may choke on it."""
    gold = {q.question: q.answer for q in all_questions()}

    def fn(req: LMRequest) -> str:
        text = request_text(req)
        if text.rstrip().endswith("step by step."):
            stem = text.rsplit("Question: ", 1)[-1].split("\n", 1)[0]
            raw = b"The \xff\xfe findings \xc3( point here.\nAnswer: " + gold.get(stem, "A").encode()
            return raw.decode("utf-8", errors="surrogateescape")
        return oracle_reply(req)

    lm, _, _ = stack(ScriptedLM(fn), work / "cache")
    out = work / "out.json"
    prog = optimize(declared_program(), train_set(), dev_set(), lm=lm, out=out, **COMPILE_KW)
    assert prog.compile_info["rationales"]["kept"] >= 1
    text = out.read_bytes().decode("utf-8")
    assert "findings" in text and "point here" in text  # the rationales were kept, cleaned


@pytest.mark.parametrize("down_after", [3, 9, 26], ids=["during-rationales", "during-instructions",
                                                         "during-search"])
def test_backend_down_for_good_stops_compile_and_keeps_work(down_after: int, work: Path) -> None:
    ref_bytes, ref_live = reference_compile()
    assert down_after < ref_live
    backend = oracle()
    faulty = FaultyLM(backend, [None] * down_after + ["down"])
    lm, retry, _ = stack(faulty, work / "cache", max_retries=2)
    out = work / "out.json"
    with pytest.raises(CompileError) as ei:
        optimize(declared_program(), train_set(), dev_set(), lm=lm, out=out, **COMPILE_KW)
    msg = str(ei.value)
    assert "is down" in msg and "unavailable after 3 attempt(s)" in msg
    assert "rerun" in msg and ("kept" in msg or "keep" in msg)
    assert not out.exists()  # no half-made program
    # all work kept: every answer the model gave is cached, every finished trial is in the study
    assert backend.calls == down_after and retry.retries == 2
    assert len(DiskCache(work / "cache")) == down_after
    trials = _study_trials(out)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    if down_after == 26:
        assert len(finished) >= 1 and all("scores" in t.user_attrs for t in finished)
    # the rerun on a healthy model resumes: no call repeated, the uninterrupted program
    healthy = oracle()
    lm2, _, _ = stack(healthy, work / "cache")
    optimize(declared_program(), train_set(), dev_set(), lm=lm2, out=out, **COMPILE_KW)
    assert healthy.calls == ref_live - down_after
    assert out.read_bytes() == ref_bytes
    trials2 = _study_trials(out)
    assert [t.number for t in finished] == [t.number for t in trials2 if t.number in {f.number for f in finished}]


# ---- evaluate (the eval runner) ----------------------------------------------------------------------------
def _runner():  # type: ignore[no-untyped-def]
    return pytest.importorskip("medcompile.evaluate.runner")


def test_eval_counts_abstentions_and_rides_out_transient_errors(work: Path) -> None:
    runner = _runner()
    qs = eval_set()  # 12 questions x 3 calls
    plan = ["empty", None, None, "timeout", None, None, "rate_limit", "unparsable", "server_error", None,
            "connection_reset", None] * 3
    # question 0: all three votes empty -> an abstention; the rest: one bad vote out of three at most
    plan = ["empty", "empty", "empty"] + plan
    faulty = FaultyLM(oracle(), plan)
    lm, retry, _ = stack(faulty, work / "cache")
    res = runner.evaluate(fixed_program(), qs, lm, quiet=True, checkpoint=work / "ckpt.jsonl")
    assert res.n == len(qs) and retry.retries == faulty.counts["timeout"] + faulty.counts["rate_limit"] + \
        faulty.counts["server_error"] + faulty.counts["connection_reset"]
    rec0 = res.records[0]
    assert rec0.answer is None and rec0.abstain_reason and not rec0.correct
    assert res.abstention_rate == pytest.approx(sum(r.answer is None for r in res.records) / len(qs))
    assert res.abstention_rate >= 1 / len(qs)
    d = res.to_dict()
    assert d["abstention_rate"] == round(res.abstention_rate, 6) and len(d["records"]) == len(qs)
    assert all(r.error is None for r in res.records)
    lines = (work / "ckpt.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(qs)


def test_eval_backend_down_stops_cleanly_and_resumes_without_repeats(work: Path) -> None:
    runner = _runner()
    qs = eval_set()
    ref_backend = oracle()
    ref_lm, _, _ = stack(ref_backend, work / "ref-cache")
    ref = runner.evaluate(fixed_program(), qs, ref_lm, quiet=True)
    ref_live = ref_backend.calls  # (identical shuffles of one question share a cached call)
    backend = oracle()
    faulty = FaultyLM(backend, [None] * 14 + ["down"])
    lm, _, _ = stack(faulty, work / "cache", max_retries=1)
    ckpt = work / "ckpt.jsonl"
    with pytest.raises(runner.EvalStopped, match="rerun the same command to resume") as ei:
        runner.evaluate(fixed_program(), qs, lm, quiet=True, checkpoint=ckpt)
    assert "is down" in str(ei.value)
    saved = [json.loads(line)["id"] for line in ckpt.read_text(encoding="utf-8").splitlines()]
    assert 1 <= len(saved) < len(qs) and saved == [q.id for q in qs[:len(saved)]]
    assert backend.calls == 14 and len(DiskCache(work / "cache")) == 14  # every answer kept
    healthy = oracle()
    lm2, _, _ = stack(healthy, work / "cache")
    res = runner.evaluate(fixed_program(), qs, lm2, quiet=True, checkpoint=ckpt)
    assert res.resumed == len(saved) and healthy.calls == ref_live - 14  # nothing asked twice
    keep = ("id", "answer", "correct", "votes", "calls", "prompt_tokens", "completion_tokens", "confidence")
    assert [{k: getattr(r, k) for k in keep} for r in res.records] == \
        [{k: getattr(r, k) for k in keep} for r in ref.records]
    assert res.accuracy.mean == ref.accuracy.mean
