"""evaluate(): exact accuracy and CIs on scripted models, per-subject numbers, logical vs
live usage, checkpoint resume (no repeated calls), fatal errors keep finished work,
and the `medcompile eval` command end to end on a scripted model."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from medcompile import Predict, Program, Question, Shuffle, Vote
from medcompile.data import load_dataset
from medcompile.evaluate.runner import EvalError, EvalResult, EvalStopped, evaluate, load_eval
from medcompile.lm.base import LMRequest, LMResponse, LMUnavailable
from medcompile.lm.registry import wrap_lm
from medcompile.lm.scripted import ScriptedLM, request_text

FIXTURE = Path(__file__).parents[1] / "fixtures" / "data_medqa_us4_head10.jsonl"


def questions() -> list[Question]:
    return list(load_dataset(str(FIXTURE)).questions)


def oracle(qs: list[Question], right: set[str], *, cost: float = 0.0, model: str = "scripted") -> ScriptedLM:
    """Answers the gold key for ids in `right` and a wrong key for the others."""
    by_text = {q.question: (q.answer if q.id in right else next(k for k in q.options if k != q.answer)) for q in qs}

    def fn(req: LMRequest) -> LMResponse:
        text = request_text(req)
        reply = next(a for t, a in by_text.items() if t in text)
        return LMResponse(reply, prompt_tokens=10, completion_tokens=1, cost=cost)

    return ScriptedLM(fn, model=model)


def zero_shot(instruction: str | None = None) -> Program:
    p = Predict(tune=False)
    if instruction:
        p = p.configure({"instruction": instruction})
    return Program(p, name="zs")


def test_seven_of_ten_gives_exactly_point_seven() -> None:
    qs = questions()
    lm = oracle(qs, {q.id for q in qs[:7]})
    r = evaluate(zero_shot(), qs, lm, quiet=True)
    acc = r.accuracy
    assert (r.n, acc.mean, acc.n) == (10, 0.7, 10)
    assert acc.low <= 0.7 <= acc.high and acc.high - acc.low > 0.3  # n=10 gives a wide interval
    assert [x.correct for x in r.records] == [True] * 7 + [False] * 3
    assert r.abstention_rate == 0.0
    assert r.chance == 0.25  # four options each
    # MedQA subjects: ids 0,1,3,6,9 are step1 (4 of 5 right), the rest step2&3 (3 of 5 right).
    subj = r.by_subject()
    assert set(subj) == {"step1", "step2&3"}
    assert (subj["step1"].n, subj["step1"].mean) == (5, 0.8)
    assert (subj["step2&3"].n, subj["step2&3"].mean) == (5, 0.6)
    u = r.usage_per_question()
    assert u["logical"]["calls"] == 1.0 and u["live"]["calls"] == 1.0
    assert u["logical"]["prompt_tokens"] == 10.0 and u["logical"]["completion_tokens"] == 1.0
    assert set(r.latency()) == {"p50", "p90", "p99"}
    assert lm.calls == 10


def test_abstentions_count_as_wrong_and_are_reported() -> None:
    qs = questions()
    gold = {q.question: q.answer for q in qs}
    mute = {qs[0].question, qs[1].question}
    lm = ScriptedLM(lambda req: "" if any(t in request_text(req) for t in mute)
                    else next(a for t, a in gold.items() if t in request_text(req)))
    r = evaluate(zero_shot(), qs, lm, quiet=True)
    assert r.accuracy.mean == 0.8
    assert r.abstention_rate == pytest.approx(0.2)
    assert r.records[0].answer is None and r.records[0].abstain_reason
    d = r.to_dict()
    assert d["abstention_rate"] == 0.2 and d["accuracy"]["mean"] == 0.8


def test_logical_vs_live_usage_with_the_disk_cache(tmp_path: Path) -> None:
    qs = questions()
    backend = oracle(qs, {q.id for q in qs[:5]}, cost=0.002)
    first = evaluate(zero_shot(), qs, wrap_lm(backend, cache_dir=tmp_path), quiet=True)
    second = evaluate(zero_shot(), qs, wrap_lm(backend, cache_dir=tmp_path), quiet=True)
    assert backend.calls == 10  # the second run was served from the cache
    for r in (first, second):
        logical = r.usage_per_question()["logical"]
        assert (logical["calls"], logical["prompt_tokens"], logical["completion_tokens"]) == (1.0, 10.0, 1.0)
        assert r.accuracy.mean == 0.5
        assert all(x.cached_calls == (1 if r is second else 0) for x in r.records)
    assert first.usage_per_question()["live"] == pytest.approx(
        {"calls": 1.0, "prompt_tokens": 10.0, "completion_tokens": 1.0, "cost": 0.002})
    # A cache hit keeps the cost the call had: the logical cost is the same cold or warm.
    assert second.usage_per_question()["logical"]["cost"] == pytest.approx(0.002)
    assert second.usage_per_question()["live"] == {"calls": 0.0, "prompt_tokens": 0.0, "completion_tokens": 0.0,
                                                   "cost": 0.0}


def test_resume_makes_no_new_calls_for_finished_questions(tmp_path: Path) -> None:
    qs = questions()
    ckpt = tmp_path / "ck.jsonl"
    lm1 = oracle(qs, {q.id for q in qs[:7]})
    full = evaluate(zero_shot(), qs, lm1, quiet=True, checkpoint=ckpt)
    lm2 = oracle(qs, set())  # would score 0: proves the records come from the checkpoint
    again = evaluate(zero_shot(), qs, lm2, quiet=True, checkpoint=ckpt)
    assert lm2.calls == 0 and again.resumed == 10
    assert again.accuracy.mean == full.accuracy.mean == 0.7
    assert [r.to_dict() for r in again.records] == [r.to_dict() for r in full.records]


def test_fatal_error_stops_keeps_checkpoint_and_resume_finishes(tmp_path: Path) -> None:
    qs = questions()
    ckpt = tmp_path / "ck.jsonl"
    inner = oracle(qs, {q.id for q in qs[:7]})

    def flaky(req: LMRequest) -> LMResponse:
        if inner.calls >= 4:
            raise LMUnavailable("backend is gone")
        return inner.complete(req)

    with pytest.raises(EvalStopped, match=r"backend is gone.*ck\.jsonl.*resume"):
        evaluate(zero_shot(), qs, ScriptedLM(flaky), quiet=True, checkpoint=ckpt)
    assert len(ckpt.read_text().splitlines()) == 4
    lm = oracle(qs, {q.id for q in qs[:7]})
    r = evaluate(zero_shot(), qs, lm, quiet=True, checkpoint=ckpt)
    assert lm.calls == 6 and r.resumed == 4 and r.accuracy.mean == 0.7
    assert r.ids == [q.id for q in qs]


def test_checkpoint_is_keyed_by_program_model_and_question(tmp_path: Path) -> None:
    qs = questions()
    ckpt = tmp_path / "ck.jsonl"
    evaluate(zero_shot(), qs, oracle(qs, set()), quiet=True, checkpoint=ckpt)
    other_prog = oracle(qs, set())
    evaluate(zero_shot("Pick the single best answer."), qs, other_prog, quiet=True, checkpoint=ckpt)
    assert other_prog.calls == 10
    other_model = oracle(qs, set(), model="other")
    evaluate(zero_shot(), qs, other_model, quiet=True, checkpoint=ckpt)
    assert other_model.calls == 10
    edited = [replace(qs[0], question=qs[0].question + " (edited)")] + qs[1:]
    lm = oracle(edited, set())
    evaluate(zero_shot(), edited, lm, quiet=True, checkpoint=ckpt)
    assert lm.calls == 1  # only the edited question is re-run


def test_torn_checkpoint_line_is_ignored(tmp_path: Path) -> None:
    qs = questions()
    ckpt = tmp_path / "ck.jsonl"
    evaluate(zero_shot(), qs[:3], oracle(qs, set()), quiet=True, checkpoint=ckpt)
    with ckpt.open("a") as f:
        f.write('{"program": "abc", "id": "3", "rec')  # a crash mid-write
    lm = oracle(qs, set())
    r = evaluate(zero_shot(), qs[:5], lm, quiet=True, checkpoint=ckpt)
    assert lm.calls == 2 and r.resumed == 3


def test_a_second_evaluation_into_a_busy_checkpoint_stops_before_any_call(tmp_path: Path) -> None:
    import subprocess
    import sys
    import textwrap

    qs = questions()
    ckpt = tmp_path / "ck.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from medcompile.evaluate.records import Checkpoint
        held = Checkpoint(Path({str(ckpt)!r}), "p", "m", "text")
        held.claim()
        print("held", flush=True)
        sys.stdin.read()  # hold until the test closes stdin
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        lm = oracle(qs, set())
        with pytest.raises(EvalError, match=rf"ck\.jsonl is being written by pid {holder.pid}.*another --out"):
            evaluate(zero_shot(), qs, lm, quiet=True, checkpoint=ckpt)
        assert lm.calls == 0 and not ckpt.exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    lm = oracle(qs, set())  # the holder is gone (its lock with it): the same call now runs
    assert evaluate(zero_shot(), qs, lm, quiet=True, checkpoint=ckpt).n == 10 and lm.calls == 10
    again = oracle(qs, set())
    assert evaluate(zero_shot(), qs, again, quiet=True, checkpoint=ckpt).resumed == 10  # released on close
    assert again.calls == 0


def test_concurrency_keeps_input_order_and_numbers() -> None:
    qs = questions()
    serial = evaluate(zero_shot(), qs, oracle(qs, {"0", "2", "4"}), quiet=True)
    lm = oracle(qs, {"0", "2", "4"})
    lm.latency = 0.02
    par = evaluate(zero_shot(), qs, lm, quiet=True, concurrency=4)
    assert par.ids == serial.ids == [q.id for q in qs]
    assert par.accuracy.mean == serial.accuracy.mean == 0.3
    assert min(r.latency_s for r in par.records) >= 0.02


def test_ensemble_records_count_every_call() -> None:
    qs = questions()
    lm = ScriptedLM(lambda req: "A")
    prog = Program(Vote(Shuffle(Predict(tune=False), n=3, tune=False)), name="shuf")
    r = evaluate(prog, qs, lm, quiet=True)
    assert lm.calls == 30
    assert all(x.calls == 3 for x in r.records)
    assert r.usage_per_question()["logical"]["calls"] == 3.0 and r.calls_per_question_declared == 3.0


def test_refuses_unlabelled_duplicate_and_empty_inputs() -> None:
    qs = questions()
    with pytest.raises(EvalError, match="no gold answer"):
        evaluate(zero_shot(), [qs[0].with_options(qs[0].options, None)], ScriptedLM(lambda r: "A"), quiet=True)
    with pytest.raises(EvalError, match="twice"):
        evaluate(zero_shot(), [qs[0], qs[0]], ScriptedLM(lambda r: "A"), quiet=True)
    with pytest.raises(EvalError, match="no questions"):
        evaluate(zero_shot(), [], ScriptedLM(lambda r: "A"), quiet=True)


def test_round_trip_markdown_and_plot(tmp_path: Path) -> None:
    from medcompile.evaluate.plots import plot_eval

    qs = questions()
    r = evaluate(zero_shot(), qs, oracle(qs, {q.id for q in qs[:7]}), quiet=True)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(r.to_dict()))
    back = load_eval(path)
    assert back.to_dict() == r.to_dict()
    md = r.to_markdown()
    assert "Accuracy 70.0 (95% CI" in md and "n=10" in md and "| step1 | 5 | 80.0 |" in md
    assert "uniform guessing would score 25.0" in md
    png = plot_eval(r, tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(EvalError):
        EvalResult.from_dict({k: v for k, v in r.to_dict().items() if k != "records"})


def test_eval_command_writes_outputs_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from medcompile.cli.main import main
    import medcompile.lm.registry as registry

    qs = questions()
    backend = oracle(qs, {q.id for q in qs[:7]})
    monkeypatch.setattr(registry, "make_lm", lambda spec, **kw: wrap_lm(backend, cache_dir=tmp_path / "cache"))
    prog = tmp_path / "zs.json"
    zero_shot().save(str(prog))
    argv = ["eval", str(prog), "--data", str(FIXTURE), "--out", str(tmp_path / "out"), "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "accuracy 70.0 (95% CI" in out and "n=10" in out
    d = json.loads((tmp_path / "out" / "zs.eval.json").read_text())
    assert d["accuracy"]["mean"] == 0.7 and d["n"] == 10 and len(d["records"]) == 10
    assert d["meta"]["data"] == str(FIXTURE)
    assert (tmp_path / "out" / "zs.eval.md").read_text().startswith("# Evaluation: zs")
    assert (tmp_path / "out" / "zs.eval.png").stat().st_size > 1000
    assert main(argv) == 0 and backend.calls == 10  # resumed from the checkpoint
    assert json.loads((tmp_path / "out" / "zs.eval.json").read_text())["resumed"] == 10


def test_eval_command_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medcompile.cli.main import main

    prog = tmp_path / "zs.json"
    zero_shot().save(str(prog))
    assert main(["eval", str(prog), "--data", str(FIXTURE), "--limit", "50", "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot take 50 questions: only 10" in err and "Traceback" not in err
    assert main(["eval", str(tmp_path / "missing.json"), "--data", str(FIXTURE), "--quiet"]) == 2


def test_non_fatal_model_errors_become_counted_abstentions() -> None:
    from medcompile.lm.base import LMError

    qs = questions()
    gold = {q.question: q.answer for q in qs}

    def fn(req: LMRequest) -> str:
        text = request_text(req)
        if qs[0].question in text:
            raise LMError("prompt is over the context window")
        return next(a for t, a in gold.items() if t in text)

    r = evaluate(zero_shot(), qs, ScriptedLM(fn), quiet=True)
    assert r.accuracy.mean == 0.9 and r.abstention_rate == pytest.approx(0.1)
    assert r.failed_calls == 1 and r.records[0].failures == 1 and r.records[0].calls == 0
    assert "context window" in (r.records[0].abstain_reason or "")
    assert "1 model call(s) failed" in r.to_markdown() and r.to_dict()["failed_calls"] == 1
