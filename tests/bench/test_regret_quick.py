"""The regret benchmark's harness on a tiny grid: row schema, regret = oracle - test,
budgets enforced, resume skips finished rows, and the MD/PNG are written."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

pytest.importorskip("medcompile.sim")
pytest.importorskip("dspy")

FIELDS = {"profile", "seed", "budget", "optimizer", "comparison", "test_accuracy", "oracle_accuracy", "regret",
          "calls_per_question", "compile_calls"}


def _run(tmp_path: Path, *extra: str) -> dict:
    import bench_optimizer_regret as bench

    argv = ["--profiles", "nothing_helps", "--seeds", "1", "--budgets", "150", "--test-n", "16", "--bank-n", "40",
            "--replicates", "1", "--mc", "medcompile,medprompt_fixed", "--dspy", "labeled",
            "--results-dir", str(tmp_path), "--out", "tiny", *extra]
    assert bench.main(argv) == 0
    return json.loads((tmp_path / "tiny.json").read_text())


def test_tiny_grid_rows_and_resume(tmp_path: Path) -> None:
    data = _run(tmp_path)
    rows = data["rows"]
    # medcompile in both comparisons, fixed recipe in end_to_end, one DSPy compile scored in both
    assert {(r["optimizer"], r["comparison"]) for r in rows} == {
        ("medcompile", "end_to_end"), ("medcompile", "same_space"), ("medprompt_fixed", "end_to_end"),
        ("dspy_labeled", "end_to_end"), ("dspy_labeled", "same_space")}
    for r in rows:
        assert FIELDS <= set(r), r
        assert r["budget"] == 150 and r["profile"] == "nothing_helps" and r["seed"] == 0
        assert r["compile_calls"] <= r["budget"], r  # enforced at the simulator
        if r["status"] == "ok":
            assert 0.0 <= r["test_accuracy"] <= 1.0 and 0.0 < r["oracle_accuracy"] <= 1.0
            assert r["regret"] == pytest.approx(r["oracle_accuracy"] - r["test_accuracy"], abs=1e-9)
            assert r["calls_per_question"] >= 1.0
    # the oracle is per comparison and cell, shared by every optimizer
    for comp in ("end_to_end", "same_space"):
        assert len({r["oracle_accuracy"] for r in rows if r["comparison"] == comp}) == 1
    assert next(r for r in rows if r["optimizer"] == "dspy_labeled")["compile_calls"] == 0
    assert next(r for r in rows if r["optimizer"] == "medprompt_fixed")["calls_per_question"] == 5.0
    md = (tmp_path / "tiny.md").read_text()
    assert "end_to_end" in md and "paired difference" in md and (tmp_path / "tiny.png").stat().st_size > 1000

    # resume: a second invocation finds every row done and computes nothing new
    partial = (tmp_path / "tiny.partial.jsonl").read_text().splitlines()
    again = _run(tmp_path)
    assert (tmp_path / "tiny.partial.jsonl").read_text().splitlines() == partial
    assert [r["regret"] for r in again["rows"]] == [r["regret"] for r in rows]
