"""What the study says so far: the search's state, always read back from optuna.

Nothing that steers the search is kept in memory, so a resumed compile (or another
worker) makes the same decisions as an uninterrupted one.
"""
from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from . import study as studies
from .selection import Reference
from .space import Param


def trial_params(t: optuna.trial.FrozenTrial, space: list[Param]) -> dict[str, Any]:
    return {p.key: p.value(t.params[p.key]) for p in space if p.key in t.params}


def n_done(study: optuna.Study) -> int:
    """Trials that count for re-seeding the sampler: finished ones, repeats and skips, not killed ones."""
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in studies.FINISHED or (t.state == TrialState.FAIL and "skipped" in t.user_attrs))


def is_repeat(t: optuna.trial.FrozenTrial) -> bool:
    return "duplicate_of" in t.user_attrs


def is_misfit(t: optuna.trial.FrozenTrial) -> bool:
    return bool(t.user_attrs.get("misfit"))


def takes_slot(t: optuna.trial.FrozenTrial) -> bool:
    """A configuration really tried: scored, pruned, or stopped while scoring."""
    if is_repeat(t) or is_misfit(t):
        return False
    return t.state in studies.FINISHED or (t.state == TrialState.FAIL and "skipped" in t.user_attrs)


def spent(study: optuna.Study) -> int:
    """Logical calls of finished trials, plus what running trials (other workers) reserved."""
    total = 0
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.RUNNING:
            total += int(t.user_attrs.get("reserved", 0))
        elif t.state in studies.FINISHED or "skipped" in t.user_attrs:
            total += int(t.user_attrs.get("calls", 0))
    return total


def trailing(trials: list[optuna.trial.FrozenTrial], pred: Any) -> int:
    n = 0
    for t in reversed(trials):
        if not pred(t):
            break
        n += 1
    return n


def finished_in_order(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Finished trials and skips, in trial order (killed ones left out)."""
    return sorted((t for t in study.get_trials(deepcopy=False)
                   if t.state in studies.FINISHED or (t.state == TrialState.FAIL and "skipped" in t.user_attrs)),
                  key=lambda t: t.number)


def scored(study: optuna.Study, n: int) -> list[optuna.trial.FrozenTrial]:
    """Complete trials scored on all `n` search questions (not repeats), in trial order."""
    return [t for t in studies.finished_trials(study)
            if t.state == TrialState.COMPLETE and not is_repeat(t) and len(t.user_attrs.get("scores", [])) >= n]


def score_rows(trials: list[optuna.trial.FrozenTrial], space: list[Param]
               ) -> list[tuple[int, dict[str, Any], list[float]]]:
    """(number, params, per-question search scores) of every trial with scores (pruned
    ones' prefixes too), repeats left out: the data of the pooled model (`pooled`)."""
    return [(t.number, trial_params(t, space), list(t.user_attrs["scores"])) for t in trials
            if t.user_attrs.get("scores") and not is_repeat(t)]


def measured_cost(t: optuna.trial.FrozenTrial) -> float:
    n = len(t.user_attrs.get("scores", []))
    return t.user_attrs["calls"] / n if n else float(t.user_attrs.get("cpq", 0.0))


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def leader(trials: list[optuna.trial.FrozenTrial], max_cost: float | None = None) -> optuna.trial.FrozenTrial | None:
    """The best scored trial (cheaper, then earlier, on ties), optionally among those cheaper than `max_cost`."""
    pool = [t for t in trials if max_cost is None or measured_cost(t) < max_cost - 1e-9]
    if not pool:
        return None
    return max(pool, key=lambda t: (mean(t.user_attrs["scores"]), -measured_cost(t), -t.number))


def as_reference(t: optuna.trial.FrozenTrial | None) -> Reference | None:
    return None if t is None else Reference(t.number, t.user_attrs["scores"], measured_cost(t))


def raw_value(space: list[Param], key: str, value: Any) -> Any:
    p = next(p for p in space if p.key == key)
    return value if p.optuna_choices() == p.choices else p.choices.index(value)
