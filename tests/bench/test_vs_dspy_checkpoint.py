"""The head-to-head's resume state: compiles and answers survive a stop, a cut last line is
answered again, and a changed setting starts a state of its own."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from vs_dspy.checkpoint import IDENTITY, Checkpoint  # noqa: E402


def _args(**kw):  # noqa: ANN003, ANN202
    base = {k: 1 for k in IDENTITY}
    base.update(kw)
    return argparse.Namespace(**base)


def test_compiles_and_answers_come_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ck = Checkpoint(_args(), root=tmp_path)
    assert ck.compiled("mc_few_shot", json.loads) is None
    ck.save_compiled("mc_few_shot", {"proxy": {"calls": 7}}, lambda p: p.write_text('{"k": 3}'))
    ck.save_compiled("dspy_knn", {"proxy": {"calls": 0}}, lambda p: p.write_text("{}"))  # recompiled each time
    ck.add_answer({"program": "mc_few_shot", "q": "q1", "answer": "B", "abstained": False, "wall_s": 0.5,
                   "calls": 1, "lenient": None})
    with open(ck.folder / "answers.jsonl", "a") as f:
        f.write('{"program": "mc_few_shot", "q": "q2", "ans')  # a kill mid-line

    again = Checkpoint(_args(), root=tmp_path)
    rec, prog = again.compiled("mc_few_shot", lambda p: json.loads(p.read_text()))
    assert rec == {"proxy": {"calls": 7}} and prog == {"k": 3}
    assert again.compiled("dspy_knn", json.loads) is None
    assert again.answer("mc_few_shot", "q1")["answer"] == "B"
    assert again.answer("mc_few_shot", "q2") is None  # cut line: answered again
    assert not list(again.folder.glob("**/*.tmp*"))
    again.add_answer({"program": "mc_few_shot", "q": "q3", "answer": "C", "abstained": False, "wall_s": 0.4,
                      "calls": 1, "lenient": None})
    assert Checkpoint(_args(), root=tmp_path).answer("mc_few_shot", "q3")["answer"] == "C"  # appended whole

    other = Checkpoint(_args(test=2), root=tmp_path)  # another setting: its own state
    assert other.folder != again.folder and other.compiled("mc_few_shot", json.loads) is None
