"""Paired comparison of two evaluations on the same questions.

Two accuracies with overlapping CIs can still differ reliably, because both programs
saw the same questions: the right test pairs them. We report the paired-bootstrap CI
of the difference, the exact McNemar test on the discordant questions and the
win/tie/loss counts, and refuse to compare runs on different question sets (an
unpaired difference would be confounded by which questions each run drew).
"""
from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from typing import Any

from .runner import EvalError, EvalResult
from .stats import Comparison, compare as stats_compare


@dataclass
class CompareResult:
    """B against A: positive differences mean B is better."""

    a: EvalResult
    b: EvalResult
    name_a: str
    name_b: str
    stats: Comparison
    ids: list[str]

    @property
    def verdict(self) -> str:
        return self.stats.verdict

    def to_dict(self, *, records: bool = False) -> dict[str, Any]:
        s = self.stats
        by_id_b = {r.id: r for r in self.b.records}
        return {
            "a": {"label": self.name_a, **self.a.to_dict(records=records)},
            "b": {"label": self.name_b, **self.b.to_dict(records=records)},
            "n": len(self.ids),
            "diff": {"mean": round(s.diff.mean, 6), "low": round(s.diff.low, 6), "high": round(s.diff.high, 6),
                     "level": s.diff.level, "bootstrap_p": round(s.diff.p_value, 6)},
            "mcnemar_p": round(s.mcnemar_p, 6),
            "win_tie_loss": s.wtl.to_dict(),
            "verdict": s.verdict,
            "per_question": [{"id": r.id, "a": r.correct, "b": by_id_b[r.id].correct} for r in self.a.records],
        }

    def to_markdown(self) -> str:
        s, w = self.stats, self.stats.wtl
        ua, ub = self.a.usage_per_question()["logical"], self.b.usage_per_question()["logical"]
        lines = [f"# Comparison: {self.name_b} vs {self.name_a}", "", f"**{s.verdict}**", "",
                 "| | model | accuracy (95% CI) | abstained | calls/question |", "|---|---|---|---:|---:|",
                 f"| A: {self.name_a} | `{self.a.model}` | {s.acc_a.pts()} | {100 * self.a.abstention_rate:.1f}% "
                 f"| {ua['calls']:.2f} |",
                 f"| B: {self.name_b} | `{self.b.model}` | {s.acc_b.pts()} | {100 * self.b.abstention_rate:.1f}% "
                 f"| {ub['calls']:.2f} |", "",
                 f"- paired difference B - A: {s.diff.pts(signed=True)} points (paired bootstrap, "
                 f"bootstrap p={s.diff.p_value:.3g})",
                 f"- exact McNemar p = {s.mcnemar_p:.4g} on {w.wins + w.losses} discordant questions",
                 f"- B wins {w.wins}, ties {w.ties} (both right {w.both_correct}, both wrong {w.both_wrong}), "
                 f"losses {w.losses}; n={len(self.ids)} paired questions"]
        for k in dict.fromkeys([*self.a.meta, *self.b.meta]):
            va, vb = self.a.meta.get(k), self.b.meta.get(k)
            lines.append(f"- {k}: {va}" if va == vb else f"- {k}: A {va}; B {vb}")
        return "\n".join(lines) + "\n"


def labels(a: EvalResult, b: EvalResult) -> tuple[str, str]:
    """Distinct display names: program names, plus the model when the names clash."""
    if a.name != b.name:
        return a.name, b.name
    if a.mode != b.mode:
        return f"{a.name} ({a.model}, {a.mode})", f"{b.name} ({b.model}, {b.mode})"
    if a.model != b.model:
        return f"{a.name} ({a.model})", f"{b.name} ({b.model})"
    return f"A: {a.name}", f"B: {b.name}"


def compare_evals(a: EvalResult, b: EvalResult, *, name_a: str | None = None, name_b: str | None = None,
                  seed: int = 0, n_boot: int = 10000) -> CompareResult:
    """Pair `a` and `b` by question id (A's order) and compare; different id sets are refused."""
    ids_a, ids_b = set(a.ids), set(b.ids)
    if ids_a != ids_b:
        only_a, only_b = sorted(ids_a - ids_b), sorted(ids_b - ids_a)
        raise EvalError(f"cannot compare: the two runs are on different questions ({len(only_a)} id(s) only in A"
                        + (f", e.g. {only_a[0]!r}" if only_a else "") + f"; {len(only_b)} only in B"
                        + (f", e.g. {only_b[0]!r}" if only_b else "") + "); evaluate both on the same questions")
    if len(a.ids) != len(ids_a) or len(b.ids) != len(ids_b):
        raise EvalError("cannot compare: a run lists the same question id twice")
    da, db = labels(a, b)
    by_b = {r.id: r.correct for r in b.records}
    ids = a.ids
    stats = stats_compare([r.correct for r in a.records], [by_b[i] for i in ids], name_a=name_a or da,
                          name_b=name_b or db, seed=seed, n_boot=n_boot)
    return CompareResult(a, b, name_a or da, name_b or db, stats, ids)


class _CallableModule(types.ModuleType):
    """`medcompile.evaluate` re-exports the function `stats.compare`, but importing this
    submodule rebinds the package attribute `compare` to the module. Calling the module
    runs `stats.compare`, so `from medcompile.evaluate import compare; compare(a, b)`
    works whichever import happened first. (Cleaner: import this module in the package
    __init__ before re-exporting the function; see the report to the lead.)"""

    def __call__(self, *args: Any, **kwargs: Any) -> Comparison:
        return stats_compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["CompareResult", "compare_evals", "labels"]
