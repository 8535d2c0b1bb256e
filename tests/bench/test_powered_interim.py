"""Interim rows of an evaluation under way: last record per question wins, torn lines are
skipped, pairing is on the questions both have, and finished pairs get no interim row."""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from powered_interim import interim_markdown, interim_rows  # noqa: E402


def write(path: Path, results: list[tuple[str, bool, str | None]], torn: bool = False) -> None:
    lines = [json.dumps({"id": i, "record": {"correct": ok, "answer": ans, "calls": 5}}) for i, ok, ans in results]
    path.write_text("\n".join(lines) + ("\n{\"id\": \"q9\", \"rec" if torn else "\n"), encoding="utf-8")


def test_interim_row_pairs_with_zero_shot_on_the_finished_questions(tmp_path: Path) -> None:
    zero = [(f"q{i}", i % 2 == 0, "A") for i in range(20)]  # right on even questions
    write(tmp_path / "medmcqa.zero_shot.aaa.checkpoint.jsonl", zero)
    er = [(f"q{i}", True, "B") for i in range(8)] + [("q0", False, None)]  # q0 rewritten: the last line wins
    write(tmp_path / "medmcqa.ensemble_refinement.bbb.checkpoint.jsonl", er, torn=True)
    write(tmp_path / "medmcqa.few_shot.ccc.checkpoint.jsonl", zero)
    write(tmp_path / "medmcqa.zero_shot_parse.checkpoint.jsonl", zero)
    (row,) = interim_rows(tmp_path, done={("medmcqa", "few_shot")})
    assert (row["dataset"], row["program"], row["n_so_far"], row["random_subset"]) == (
        "medmcqa", "ensemble_refinement", 8, True)
    assert row["accuracy"] == 7 / 8 and row["abstention"] == 1 / 8 and row["zero_shot_accuracy"] == 4 / 8
    p = row["paired_vs_zero_shot"]
    assert (p["wins"], p["losses"]) == (4, 1) and abs(p["diff"] - 3 / 8) < 1e-9
    table = "\n".join(interim_markdown([row]))
    assert "| medmcqa | ensemble_refinement | 8 | random subset | 87.5" in table and "+37.5" in table


def test_no_zero_shot_checkpoint_means_no_row_and_no_table(tmp_path: Path) -> None:
    write(tmp_path / "pubmedqa.ensemble_refinement.bbb.checkpoint.jsonl", [("q1", True, "yes")])
    assert interim_rows(tmp_path, done=set()) == [] and interim_markdown([]) == []
