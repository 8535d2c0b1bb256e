"""A question's independent calls run side by side on a concurrent model, in order on a serial one,
with the same answers, seeds and accounting either way."""
from __future__ import annotations

import hashlib
import threading
import time

import pytest

from medcompile import Predict, Program, Question, Refine, SelfCoT, Shuffle, Vote
from medcompile.evaluate.runner import evaluate
from medcompile.lm.base import LMRequest
from medcompile.lm.registry import wrap_lm
from medcompile.lm.scripted import ScriptedLM, request_text
from medcompile.modules.fanout import fan_out, parallel_capacity


def answer(req: LMRequest) -> str:
    """Depends on the prompt and the seed only (a sampled path differs per seed)."""
    letter = "ABCD"[int(hashlib.sha256(f"{request_text(req)}|{req.seed}".encode()).hexdigest()[:8], 16) % 4]
    return f" Because.\nAnswer: {letter}" if req.max_tokens > 16 else f" {letter}"


def questions(n: int) -> list[Question]:
    return [Question(id=f"q{i}", question=f"Question number {i} about the kidney?",
                     options={"A": "one", "B": "two", "C": "three", "D": "four"}, answer="B") for i in range(n)]


def programs() -> list[Program]:
    return [Program(Vote(Shuffle(Predict(tune=False), n=5, tune=False)), name="shuffle5"),
            Program(Vote(Predict(tune=False), SelfCoT(tune=False), Shuffle(Predict(tune=False), n=3, tune=False)),
                    name="vote3"),
            Program(Refine(SelfCoT(tune=False), m=3, r=2, tune=False), name="refine")]


class InFlight(ScriptedLM):
    """A scripted model that records the peak number of calls in flight."""

    def __init__(self, latency: float) -> None:
        super().__init__(answer, latency=latency)
        self.now = self.peak = 0
        self.guard = threading.Lock()

    def complete(self, request: LMRequest):  # type: ignore[no-untyped-def]
        with self.guard:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            return super().complete(request)
        finally:
            with self.guard:
                self.now -= 1


def run(prog: Program, max_concurrency: int, latency: float = 0.0) -> tuple[list, InFlight, float]:
    backend = InFlight(latency)
    lm = wrap_lm(backend, cache=False, max_concurrency=max_concurrency)
    t0 = time.perf_counter()
    res = prog.run_many(questions(6), lm)
    return res, backend, time.perf_counter() - t0


@pytest.mark.parametrize("prog", programs(), ids=lambda p: p.name)
def test_parallel_answers_and_usage_equal_sequential(prog: Program) -> None:
    seq, seq_lm, _ = run(prog, max_concurrency=1, latency=0.005)
    par, par_lm, _ = run(prog, max_concurrency=8, latency=0.005)
    assert [r.prediction.to_dict() for r in seq] == [r.prediction.to_dict() for r in par]
    def counts(rs: list) -> list:  # latency aside, which is measured
        return [(r.usage.calls, r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.cost) for r in rs]

    assert counts(seq) == counts(par)
    # the same requests (prompts and seeds), possibly in another order
    assert sorted(r.cache_key() for r in seq_lm.requests) == sorted(r.cache_key() for r in par_lm.requests)
    assert seq_lm.peak == 1 and par_lm.peak > 1


def test_serial_model_keeps_the_written_call_order() -> None:
    """max_concurrency 1 (the in-process model): shuffles 0..n-1 of a question in order, so
    prompts sharing a prefix follow each other and llama.cpp reuses its KV cache."""
    from medcompile.modules.shuffle import permutation_for, permute

    prog = programs()[0]
    seed = next(m for _, m in prog.root.walk() if isinstance(m, Shuffle)).seed or 0
    _, lm, _ = run(prog, max_concurrency=1)
    for qi, q in enumerate(questions(6)):
        for i, req in enumerate(lm.requests[5 * qi:5 * qi + 5]):
            shown = permute(q, permutation_for(q, seed, i))[0].options
            assert q.question in (req.prompt or "")
            assert all(f"{k}. {v}" in (req.prompt or "") for k, v in shown.items())


def test_five_call_ensemble_latency_approaches_one_call() -> None:
    prog = programs()[0]
    _, _, t_seq = run(prog, max_concurrency=1, latency=0.05)
    _, _, t_par = run(prog, max_concurrency=8, latency=0.05)
    # 6 questions x 5 calls x 50 ms: 1.5 s in order, ~6 x 50 ms side by side
    assert t_seq > 1.4 and t_par < t_seq / 2.5


def test_limiter_bounds_calls_in_flight_across_questions() -> None:
    backend = InFlight(0.02)
    lm = wrap_lm(backend, cache=False, max_concurrency=3)
    programs()[1].run_many(questions(8), lm, concurrency=4)
    assert backend.peak == 3


def test_eval_live_usage_is_exact_per_question_with_parallel_calls(tmp_path) -> None:  # type: ignore[no-untyped-def]
    prog = programs()[0]

    def live(max_concurrency: int, concurrency: int, cache: str) -> tuple[list, int]:
        backend = ScriptedLM(answer, latency=0.005)
        lm = wrap_lm(backend, cache_dir=tmp_path / cache, max_concurrency=max_concurrency)
        res = evaluate(prog, questions(6), lm, concurrency=concurrency, quiet=True)
        return [(r.live_calls, r.live_prompt_tokens) for r in res.records], backend.calls

    seq, seq_calls = live(1, 1, "a")  # one call at a time: attribution is trivially exact
    par, par_calls = live(8, 3, "b")  # questions and their shuffles side by side
    assert par == seq and sum(c for c, _ in par) == par_calls == seq_calls
    warm, warm_calls = live(8, 3, "b")
    assert warm_calls == 0 and all(c == 0 for c, _ in warm)


def test_fan_out_raises_the_first_failure_after_all_tasks_finished() -> None:
    class Ctx:
        parallel_calls = 4

    done: list[int] = []

    def task(i: int):  # type: ignore[no-untyped-def]
        def f() -> int:
            time.sleep(0.01 * (4 - i))
            done.append(i)
            if i in (1, 2):
                raise ValueError(f"task {i}")
            return i
        return f

    with pytest.raises(ValueError, match="task 1"):
        fan_out(Ctx(), [task(i) for i in range(4)])
    assert sorted(done) == [0, 1, 2, 3]
    assert fan_out(Ctx(), [task(0), task(3)]) == [0, 3]


def test_parallel_capacity_reads_the_stack() -> None:
    assert parallel_capacity(ScriptedLM(answer)) == 1
    assert parallel_capacity(wrap_lm(ScriptedLM(answer), cache=False, max_concurrency=6)) == 6
    assert parallel_capacity(wrap_lm(ScriptedLM(answer), cache=False, max_concurrency=1)) == 1
    from medcompile.lm.meter import BudgetedLM

    # a call budget (compiles): in order, so running out mid-question always refuses the same call
    assert parallel_capacity(BudgetedLM(wrap_lm(ScriptedLM(answer), cache=False, max_concurrency=6), 100)) == 1
