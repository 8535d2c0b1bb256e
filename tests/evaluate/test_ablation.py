"""The ablation ladder on a scripted model: the five rows, exact calls per question,
exact accuracies, rationale bookkeeping, paired diffs between rows, and the command."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from medcompile import Question
from medcompile.evaluate.ablation import run_ablation
from medcompile.evaluate.runner import EvalError
from medcompile.lm.base import LMRequest
from medcompile.lm.scripted import ScriptedLM

KEYS = "ABCD"
TOPICS = ["heart failure", "renal tubular acidosis", "migraine prophylaxis", "asthma exacerbation",
          "iron deficiency anaemia", "hypothyroidism", "septic arthritis", "acute pancreatitis"]


def make(n: int, prefix: str, offset: int = 0) -> list[Question]:
    """Synthetic questions whose gold answers cycle A, B, C, D."""
    return [Question(f"{prefix}{i}", f"A patient presents with {TOPICS[(i + offset) % len(TOPICS)]} (case {prefix}{i}). "
                                     "What is the best next step?",
                     {k: f"option {k.lower()} for {prefix}{i}" for k in KEYS}, answer=KEYS[(i + offset) % 4],
                     subject="step1" if i % 2 else "step2&3")
            for i in range(n)]


def always_a(req: LMRequest) -> str:
    """Direct prompts get 'A'; chain-of-thought prompts (larger token limit) reason first."""
    return "A" if req.max_tokens <= 16 else "The findings point to the first option. Answer: A"


def test_ladder_rows_calls_and_accuracies(tmp_path: Path) -> None:
    bank, qs = make(12, "b"), make(8, "q")
    lm = ScriptedLM(always_a)
    res = run_ablation(bank, qs, lm, k=2, shuffles=3, max_rationales=12, quiet=True,
                       checkpoint=tmp_path / "ck.jsonl")
    assert [r.label for r in res.rows] == ["zero-shot", "random few-shot (k=2)", "+ self-generated CoT",
                                           "kNN few-shot (k=2) + CoT", "+ choice-shuffle ensemble (3, vote)"]
    assert [r.calls_per_question for r in res.rows] == [1.0, 1.0, 1.0, 1.0, 3.0]
    assert [r.result.calls_per_question_declared for r in res.rows] == [1.0, 1.0, 1.0, 1.0, 3.0]
    assert all(r.result.n == 8 and r.result.ids == [q.id for q in qs] for r in res.rows)
    # Always "A": rows 1-4 are right exactly on the 2 questions whose gold is A.
    assert [r.result.accuracy.mean for r in res.rows[:4]] == [0.25] * 4
    # Rationales: blind zero-shot CoT on all 12 bank questions, kept where gold is A (3 of 12).
    assert (res.rationales["attempted"], res.rationales["kept"], res.rationales["usage"]["calls"]) == (12, 3, 12)
    assert res.options["exemplars"] == 3
    # 12 rationale calls + 8 * (1 + 1 + 1 + 1 + 3) eval calls.
    assert lm.calls == 12 + 8 * 7
    assert res.rows[0].vs_previous is None
    assert all(r.vs_previous is not None and r.vs_previous.stats.diff.n == 8 for r in res.rows[1:])
    assert res.rows[1].vs_previous.stats.diff.mean == 0.0  # type: ignore[union-attr]
    d = res.to_dict()
    assert d["n"] == 8 and [r["calls_per_question"] for r in d["rows"]] == [1.0, 1.0, 1.0, 1.0, 3.0]
    assert "vs_previous" not in d["rows"][0] and d["rows"][4]["vs_previous"]["diff"]["level"] == 0.95
    md = res.to_markdown()
    assert "| 1 | zero-shot | 25.0 (" in md and "kept 3 of 12" in md and "| 3.00 |" in md
    assert res.plot(tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    # The shuffle row's prompts really permute the options: not every call shows the same option order.
    assert len({r.prompt for r in lm.requests[-24:]}) > 8


def test_resume_reuses_every_row(tmp_path: Path) -> None:
    bank, qs = make(8, "b"), make(4, "q")
    run_ablation(bank, qs, ScriptedLM(always_a), k=1, shuffles=2, max_rationales=8, quiet=True,
                 checkpoint=tmp_path / "ck.jsonl")
    lm = ScriptedLM(always_a)
    res = run_ablation(bank, qs, lm, k=1, shuffles=2, max_rationales=8, quiet=True, checkpoint=tmp_path / "ck.jsonl")
    assert lm.calls == 8  # only the rationales (no LM cache here); every eval row came from the checkpoint
    assert all(r.result.resumed == 4 for r in res.rows)


def test_rationale_cap_and_errors() -> None:
    bank, qs = make(12, "b"), make(4, "q")
    lm = ScriptedLM(always_a)
    res = run_ablation(bank, qs, lm, k=1, shuffles=1, max_rationales=5, quiet=True)
    assert res.rationales["attempted"] == 5
    with pytest.raises(EvalError, match="also in the exemplar bank"):
        run_ablation(bank, bank[:3], lm, quiet=True)
    with pytest.raises(EvalError, match="at least 1"):
        run_ablation(bank, qs, lm, k=0, quiet=True)


def test_ablate_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from medcompile.cli.main import main
    import medcompile.lm.registry as registry
    from medcompile.lm.registry import wrap_lm

    bank, qs = make(10, "b"), make(6, "q")
    for name, rows in (("bank.jsonl", bank), ("eval.jsonl", qs)):
        (tmp_path / name).write_text("".join(json.dumps(q.to_dict()) + "\n" for q in rows))
    backend = ScriptedLM(always_a)
    monkeypatch.setattr(registry, "make_lm", lambda spec, **kw: wrap_lm(backend, cache_dir=tmp_path / "cache"))
    out = tmp_path / "out"
    assert main(["ablate", "--train", str(tmp_path / "bank.jsonl"), "--data", str(tmp_path / "eval.jsonl"),
                 "--k", "2", "--shuffles", "2", "--rationales", "10", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "1. zero-shot: 33.3" in printed and "2.00 calls/q" in printed and "n=6 questions per row" in printed
    d = json.loads((out / "ablation.json").read_text())
    assert len(d["rows"]) == 5 and d["rationales"]["kept"] == 3 and d["meta"]["n_questions"] == 6
    assert (out / "ablation.md").read_text().startswith("# Medprompt ablation ladder on `scripted`")
    assert (out / "ablation.png").stat().st_size > 1000


def test_too_few_rationales_fall_back_to_the_attempted_pool() -> None:
    bank = make(4, "b", offset=1)[:3] + make(1, "z", offset=1)  # golds B, C, D, B: "always A" keeps none
    qs = make(4, "q")
    lm = ScriptedLM(always_a)
    res = run_ablation(bank, qs, lm, k=2, shuffles=2, max_rationales=4, quiet=True)
    assert res.rationales["kept"] == 0 and res.options["exemplars"] == 4
    assert res.rows[2].label == "+ CoT prompting"
    assert "only 0 self-generated rationale(s)" in res.rationales["note"] and "**Note:**" in res.to_markdown()
    # The CoT rows still show 2 exemplars each (answer only, no rationale).
    cot_prompts = [r.prompt or "" for r in lm.requests[4:] if r.max_tokens > 16]
    assert len(cot_prompts) == 4 * 4 and all(p.count("(case b") + p.count("(case z") == 2 for p in cot_prompts)
    assert not any("The findings point" in p for p in cot_prompts)  # no rationale was kept, none is shown
    assert [r.calls_per_question for r in res.rows] == [1.0, 1.0, 1.0, 1.0, 2.0]
