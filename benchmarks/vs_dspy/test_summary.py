"""The test phase's results, from the per-question tallies: accuracy with CIs, both readings of
DSPy, and the paired comparisons. Separate from the loop so that a stop in the middle of the
test phase (SIGTERM, which can land between two programs' answers to one question) still
records every question all programs finished, and nothing of the one they did not."""
from __future__ import annotations

from typing import Any

from medcompile.evaluate.stats import accuracy_ci, compare

from .context import Run


Tally = dict[str, list[Any]]  # per question, in test order: answer, correct, abstained, wall_s, calls


def new_tally() -> Tally:
    return {"answers": [], "correct": [], "abstained": [], "wall_s": [], "calls": []}


def add_answer(tally: Tally, answer: str | None, correct: bool, abstained: bool, wall_s: float, calls: int) -> None:
    for key, value in (("answers", answer), ("correct", correct), ("abstained", abstained),
                       ("wall_s", wall_s), ("calls", calls)):
        tally[key].append(value)


def trim_to(per: dict[str, Tally], lenient: dict[str, list[str | None]], done: int) -> None:
    """Drop the answers to a question not every program finished, so that every program has
    the same n and the comparisons stay paired."""
    for tally in [*per.values(), lenient]:
        for values in tally.values():
            del values[done:]


def record_test(run: Run, test: list[Any], per: dict[str, Tally], lenient: dict[str, list[str | None]],
                adapters: dict[str, Any], done: int) -> None:
    """Write the first `done` questions' results into run.results (test rows and comparisons)."""
    trim_to(per, lenient, done)
    run.results["data"]["test_done"] = done
    for name, p in per.items():
        st = run.proxy.stats(f"test-{name}").to_dict()
        c = p["correct"]
        rec = run.results["test"].setdefault(name, {})
        rec.update({"n": len(c), "answers": p["answers"], "correct": c,
                    "abstained_or_unparsed": sum(p["abstained"]), "proxy_this_sitting": st,
                    "calls_per_question": round(sum(p["calls"]) / max(1, len(c)), 3),
                    "wall_s": round(sum(p["wall_s"]), 1)})
        if c:
            rec["accuracy"] = accuracy_ci(c, seed=0).to_dict()
        if name in adapters:
            rec["adapter_parses"] = adapters[name].parses
            rec["adapter_parse_failures"] = adapters[name].parse_failures
            gold = [q.answer for q in test[:len(c)]]
            lc = [a is not None and a == g for a, g in zip(lenient[name], gold)]
            rec["lenient"] = {"answers": lenient[name][:len(c)], "correct": lc,
                              "no_answer": sum(a is None for a in lenient[name][:len(c)]),
                              "reading": "raw completion, medcompile's parse_answer"}
            if lc:
                rec["lenient"]["accuracy"] = accuracy_ci(lc, seed=0).to_dict()
    if not done:
        return
    for a_name in [n for n in per if n.startswith("mc_")]:
        for b_name in [n for n in per if n.startswith("dspy_")]:
            cmp = compare(per[b_name]["correct"], per[a_name]["correct"], name_a=b_name, name_b=a_name, seed=0)
            run.results["comparisons"].append(cmp.to_dict())
            lc = run.results["test"][b_name].get("lenient", {}).get("correct")
            if lc:
                cmp = compare(lc, per[a_name]["correct"], name_a=f"{b_name} (lenient)", name_b=a_name, seed=0)
                run.results["comparisons"].append(cmp.to_dict())
