"""Pooled effect estimates: each trial's search score, smoothed by what every trial says.

A trial's own score rests on a few dozen search questions, so ranking trials by it
picks whichever was luckiest. Prompt choices act roughly additively (an ensemble of a
better prompt is a better ensemble; chain of thought helps or hurts a model much the
same whatever the instruction), so an additive model fitted to every scored question
of every trial, with one effect per question (all trials answer the same search
questions in the same order, so questions pair) and one per choice value, estimates
each choice's effect from all the trials that differ in it. A trial's pooled score is
that model's prediction for its configuration.

On the simulated profiles, picking by such a model instead of by each configuration's
own score lowers the regret of an idealised optimizer that scores every configuration
on 40 dev questions from 2.2-6.1 to 0.3-1.0 points (`benchmarks/bench_selection_floor.py
--rule additive`). With `pool_effects`, the search proposes the configuration the model
predicts best whenever it has not been tried, and the finalists to confirm are ranked
by pooled score.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..modules.base import Module
from .space import Param, active_params, simplest_choice


Row = tuple[int, dict[str, Any], Sequence[float]]  # (trial number, params, per-question search scores)


def _level(value: Any) -> str:
    return repr(value)


@dataclass(frozen=True)
class Fit:
    """The additive model: a base score and one effect per (choice, value) seen."""

    base: float
    effects: dict[tuple[str, str], float]  # (choice key, repr(value)) -> effect; a choice's first value is 0

    def predict(self, params: dict[str, Any], keys: Sequence[str]) -> float:
        return self.base + sum(self.effects.get((k, _level(params.get(k))), 0.0) for k in keys)


def choice_levels(params: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """{choice key: its values across `params`, ordered by repr}; the first is the
    reference level every effect is measured against (inactive counts as a value)."""
    keys = sorted({k for ps in params for k in ps})
    return {k: sorted({_level(ps.get(k)) for ps in params}) for k in keys}


def main_effect_design(params: Sequence[Mapping[str, Any]],
                       by_choice: Mapping[str, list[str]] | None = None) -> tuple[list[tuple[str, str]], np.ndarray]:
    """(levels, indicator matrix (configurations, levels)): one column per (choice, value)
    beyond each choice's first value (values ordered by repr; a choice a configuration does
    not have, being inactive, is a value of its own). `by_choice`: `choice_levels(params)`,
    if the caller has it already."""
    by_choice = choice_levels(params) if by_choice is None else by_choice
    levels = [(k, v) for k, values in by_choice.items() for v in values[1:]]
    matrix = np.array([[float(_level(ps.get(k)) == v) for k, v in levels] for ps in params])
    return levels, matrix.reshape(len(params), len(levels))


def question_and_main_effects(obs: Sequence[tuple[int, int, float]], design: np.ndarray, n_q: int) -> np.ndarray:
    """Least-squares coefficients of score = question effect + main effects, fitted to
    observations (configuration row of `design`, question index, score): the first n_q are
    the question effects, the rest the main effects in `design`'s column order. Where the
    observations cannot separate every effect, the minimum-norm solution shrinks the effects
    no pair of configurations isolates toward zero."""
    x = np.zeros((len(obs), n_q + design.shape[1]))
    y = np.zeros(len(obs))
    for i, (r, q, score) in enumerate(obs):
        x[i, q], x[i, n_q:], y[i] = 1.0, design[r], float(score)
    return np.linalg.lstsq(x, y, rcond=None)[0]


def fit(rows: Sequence[Row]) -> tuple[Fit, list[str]] | None:
    """The additive model fitted to every scored question of every row (None with fewer
    than two rows). Scores pair by position (question i of every row is the same
    question). `base` averages the question effects, so predictions read like a mean
    score over the search questions."""
    rows = [r for r in rows if len(r[2])]
    if len(rows) < 2:
        return None
    params = [ps for _, ps, _ in rows]
    by_choice = choice_levels(params)
    levels, design = main_effect_design(params, by_choice)
    n_q = max(len(s) for _, _, s in rows)
    beta = question_and_main_effects([(r, q, sc) for r, (_, _, scores) in enumerate(rows)
                                      for q, sc in enumerate(scores)], design, n_q)
    effects = {lv: round(float(b), 9) for lv, b in zip(levels, beta[n_q:])}
    reference = {k: values[0] for k, values in by_choice.items()}
    effects.update({(k, v): 0.0 for k, v in reference.items()})
    return Fit(round(float(np.mean(beta[:n_q])), 9), effects), list(reference)


def pooled_scores(rows: Sequence[Row]) -> dict[int, float]:
    """{trial number: the additive model's prediction for its configuration}; each row's
    own mean when there are too few rows to fit."""
    got = fit(rows)
    if got is None:
        return {n: float(np.mean(s)) for n, _, s in rows if len(s)}
    model, keys = got
    return {n: round(model.predict(ps, keys), 9) for n, ps, s in rows if len(s)}


def pooled_best(root: Module, space: list[Param], rows: Sequence[Row]) -> dict[str, Any] | None:
    """The configuration the additive model predicts best: each choice (in space order,
    only those still active) at its value of largest effect among the values the trials
    tried (untried values are left to the search to explore). None without a fit."""
    got = fit(rows)
    if got is None:
        return None
    model, _ = got

    def pick(p: Param) -> Any:
        tried = [c for c in p.choices if (p.key, _level(c)) in model.effects]
        if not tried:
            return simplest_choice(p)
        return max(tried, key=lambda c: (model.effects[(p.key, _level(c))], -p.choices.index(c)))

    return active_params(root, space, pick)


__all__ = ["Fit", "choice_levels", "fit", "main_effect_design", "pooled_best", "pooled_scores", "question_and_main_effects"]
