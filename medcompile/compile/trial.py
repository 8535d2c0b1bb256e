"""Scoring one candidate configuration on dev questions, minibatch by minibatch.

After each minibatch the caller's `report` sees the running scores and may stop a
configuration (racing, `selection.race`) before it spends the rest of its calls.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..lm.base import Usage
from ..lm.meter import BudgetedLM, MeteredLM, usage_diff
from ..modules.base import Prediction
from ..program.program import Program
from ..question import Question

Metric = Callable[[Question, Prediction], float]


def accuracy_metric(q: Question, p: Prediction) -> float:
    """1 when the chosen option is the gold one; abstentions score 0."""
    return 1.0 if p.answer is not None and p.answer == q.answer else 0.0


class Pruned(Exception):
    """The pruner stopped this trial early."""


class TooManyModelErrors(Exception):
    """Most answers of this trial were model errors, not model choices: its score would
    measure the backend, so the trial is dropped instead of scored."""


@dataclass
class TrialOutcome:
    scores: list[float] = field(default_factory=list)
    calls: int = 0
    usage: Usage = field(default_factory=Usage)
    abstentions: int = 0
    model_errors: int = 0

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else 0.0


def evaluate_candidate(program: Program, dev: Sequence[Question], lm: MeteredLM, budget_left: int, metric: Metric,
                       *, minibatch: int, report: Callable[[float, int], bool] | None, concurrency: int,
                       outcome: TrialOutcome) -> TrialOutcome:
    """Fill `outcome` as it goes (so a budget stop or prune still tells what was spent).

    `report(score, step)` returns True when the trial should be pruned.
    """
    budgeted = BudgetedLM(lm, budget_left)
    before = lm.snapshot()
    try:
        for start in range(0, len(dev), minibatch):
            chunk = dev[start:start + minibatch]
            results = program.run_many(chunk, budgeted, concurrency=concurrency)
            for q, r in zip(chunk, results):
                outcome.scores.append(float(metric(q, r.prediction)))
                outcome.abstentions += int(r.prediction.answer is None)
                outcome.model_errors += int(r.usage.failures > 0 and r.prediction.answer is None)
            outcome.calls = budgeted.calls  # so far: a racing `report` compares cost per question
            if outcome.model_errors * 2 > len(outcome.scores):
                raise TooManyModelErrors()
            if report is not None and start + minibatch < len(dev) and report(outcome.mean, len(outcome.scores)):
                raise Pruned()
    finally:
        outcome.calls = budgeted.calls
        outcome.usage = usage_diff(lm.snapshot(), before)
    return outcome
