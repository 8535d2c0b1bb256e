"""compare_evals: pairs by question id, exact win/tie/loss and McNemar on scripted runs,
refuses different question sets, and `medcompile compare` for two programs and for two
models on one program."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from medcompile import Predict, Program, Question
from medcompile.data import load_dataset
from medcompile.evaluate.compare import compare_evals
from medcompile.evaluate.runner import EvalError, EvalResult, evaluate
from medcompile.evaluate.stats import mcnemar_exact, paired_bootstrap
from medcompile.lm.base import LMRequest
from medcompile.lm.registry import wrap_lm
from medcompile.lm.scripted import ScriptedLM, request_text

FIXTURE = Path(__file__).parents[1] / "fixtures" / "data_medqa_us4_head10.jsonl"


def questions() -> list[Question]:
    return list(load_dataset(str(FIXTURE)).questions)


def oracle(qs: list[Question], right: set[str], model: str = "scripted") -> ScriptedLM:
    by_text = {q.question: (q.answer if q.id in right else next(k for k in q.options if k != q.answer)) for q in qs}

    def fn(req: LMRequest) -> str:
        return next(a for t, a in by_text.items() if t in request_text(req))

    return ScriptedLM(fn, model=model)


def run(qs: list[Question], right: set[str], name: str = "p", model: str = "scripted") -> EvalResult:
    return evaluate(Program(Predict(tune=False), name=name), qs, oracle(qs, right, model), quiet=True)


def test_paired_numbers_are_exact() -> None:
    qs = questions()
    a = run(qs, {"0", "1", "2", "3", "4"}, "a")              # 5/10
    b = run(qs, {"0", "1", "2", "5", "6", "7", "8"}, "b")    # 7/10: wins 5,6,7,8; losses 3,4
    c = compare_evals(a, b)
    w = c.stats.wtl
    assert (w.wins, w.losses, w.both_correct, w.both_wrong, w.ties) == (4, 2, 3, 1, 4)
    assert c.stats.diff.mean == pytest.approx(0.2)
    assert c.stats.mcnemar_p == mcnemar_exact(2, 4) == pytest.approx(0.6875)
    assert c.stats.acc_a.mean == 0.5 and c.stats.acc_b.mean == 0.7
    ref = paired_bootstrap(a.correct(), b.correct(), seed=0)
    assert (c.stats.diff.low, c.stats.diff.high) == (ref.low, ref.high)
    assert c.verdict.startswith("no significant difference between a and b")
    d = c.to_dict()
    assert d["n"] == 10 and d["win_tie_loss"]["wins"] == 4 and d["mcnemar_p"] == 0.6875
    assert [p["id"] for p in d["per_question"]] == a.ids
    md = c.to_markdown()
    assert "B wins 4" in md and "losses 2" in md and "McNemar p = 0.6875" in md


def test_pairs_by_id_not_by_position() -> None:
    qs = questions()
    a = run(qs, {"0", "1"}, "a")
    b = run(list(reversed(qs)), {"0", "1"}, "b")
    c = compare_evals(a, b)
    assert c.stats.wtl.wins == 0 and c.stats.wtl.losses == 0 and c.stats.diff.mean == 0.0


def test_refuses_different_question_sets() -> None:
    qs = questions()
    a = run(qs[:8], set(), "a")
    b = run(qs[2:], set(), "b")
    with pytest.raises(EvalError, match=r"different questions \(2 id\(s\) only in A, e.g. '0'; 2 only in B, e.g. '8'\)"):
        compare_evals(a, b)


def test_labels_for_one_program_on_two_models() -> None:
    qs = questions()
    a = run(qs, {"0"}, "zs", model="m1")
    b = run(qs, {"0", "1", "2", "3", "4", "5", "6", "7"}, "zs", model="m2")
    c = compare_evals(a, b)
    assert (c.name_a, c.name_b) == ("zs (m1)", "zs (m2)")
    assert c.verdict.startswith("zs (m2) better than zs (m1) by 70.0 points")  # 7 wins, 0 losses: p=1/64


def test_compare_plot(tmp_path: Path) -> None:
    from medcompile.evaluate.plots import plot_compare

    qs = questions()
    c = compare_evals(run(qs, {"0"}, "a"), run(qs, {"1", "2"}, "b"))
    png = plot_compare(c, tmp_path / "c.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_compare_command_two_models_one_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from medcompile.cli.main import main
    import medcompile.lm.registry as registry

    qs = questions()
    backends = {"m1": oracle(qs, {"0", "1", "2"}, "m1"), "m2": oracle(qs, {"0", "1", "2", "3", "4", "5"}, "m2")}
    monkeypatch.setattr(registry, "make_lm", lambda spec, **kw: wrap_lm(backends[spec], cache_dir=tmp_path / "c"))
    prog = tmp_path / "zs.json"
    Program(Predict(tune=False), name="zs").save(str(prog))
    out = tmp_path / "out"
    assert main(["compare", str(prog), str(prog), "--lm", "m1", "--lm-b", "m2", "--data", str(FIXTURE),
                 "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "A zs (m1): 30.0" in printed and "B zs (m2): 60.0" in printed and "n=10" in printed
    d = json.loads((out / "zs_m1_vs_zs_m2.compare.json").read_text())
    assert d["win_tie_loss"] == {"wins": 3, "ties": 7, "losses": 0, "both_correct": 3, "both_wrong": 4}
    assert d["a"]["model"] == "m1" and d["b"]["model"] == "m2" and d["data"]["n_questions"] == 10
    assert (out / "zs_m1_vs_zs_m2.compare.md").read_text().startswith("# Comparison: zs (m2) vs zs (m1)")
    assert (out / "zs_m1_vs_zs_m2.compare.png").stat().st_size > 1000
    assert backends["m1"].calls == 10 and backends["m2"].calls == 10
