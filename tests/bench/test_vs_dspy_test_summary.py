"""The head-to-head's test results when a stop lands between two programs' answers to one
question: only the questions every program finished count, so the comparison stays paired
(a SIGTERM there once wrote a report with n = 0)."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from vs_dspy.test_summary import add_answer, new_tally, record_test  # noqa: E402


class _Stats:
    def to_dict(self) -> dict[str, Any]:
        return {"calls": 0}


class _Adapter:
    parses, parse_failures = 3, 1


def _run() -> Any:
    return SimpleNamespace(results={"data": {}, "test": {}, "comparisons": []},
                           proxy=SimpleNamespace(stats=lambda _phase: _Stats()))


def test_a_question_not_every_program_finished_is_left_out() -> None:
    test = [SimpleNamespace(answer=a) for a in "ABCA"]
    per = {"mc_few_shot": new_tally(), "dspy_labeled": new_tally()}
    lenient: dict[str, list[str | None]] = {"dspy_labeled": []}
    for q in test[:3]:  # three questions answered by both
        add_answer(per["mc_few_shot"], q.answer, True, False, 1.0, 1)
        add_answer(per["dspy_labeled"], None, False, True, 2.0, 2)
        lenient["dspy_labeled"].append(q.answer)
    add_answer(per["mc_few_shot"], "D", False, True, 9.0, 5)  # the fourth: stopped before DSPy answered

    run = _run()
    record_test(run, test, per, lenient, {"dspy_labeled": _Adapter()}, done=3)

    mc, dspy = run.results["test"]["mc_few_shot"], run.results["test"]["dspy_labeled"]
    assert run.results["data"]["test_done"] == 3
    assert mc["n"] == dspy["n"] == 3
    assert mc["abstained_or_unparsed"] == 0 and mc["calls_per_question"] == 1.0 and mc["wall_s"] == 3.0
    assert dspy["abstained_or_unparsed"] == 3 and dspy["accuracy"]["mean"] == 0.0
    assert dspy["lenient"]["correct"] == [True, True, True] and dspy["lenient"]["no_answer"] == 0
    assert dspy["adapter_parse_failures"] == 1
    pairs = {(c["name_a"], c["name_b"]): c for c in run.results["comparisons"]}
    assert set(pairs) == {("dspy_labeled", "mc_few_shot"), ("dspy_labeled (lenient)", "mc_few_shot")}
    assert all(c["acc_a"]["n"] == c["acc_b"]["n"] == 3 for c in pairs.values())


def test_a_stop_before_any_question_records_empty_rows_and_no_comparison() -> None:
    per = {"mc_few_shot": new_tally(), "dspy_knn": new_tally()}
    add_answer(per["mc_few_shot"], "A", True, False, 1.0, 1)
    run = _run()
    record_test(run, [SimpleNamespace(answer="A")], per, {"dspy_knn": ["A"]}, {}, done=0)
    assert run.results["test"]["mc_few_shot"]["n"] == 0 and "accuracy" not in run.results["test"]["mc_few_shot"]
    assert run.results["comparisons"] == []
