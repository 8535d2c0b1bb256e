"""Stage 4 of a compile: score the finalists on questions the search never saw.

The finalists are the cheapest configuration (the search's first trial) and the best
few distinct configurations by their score on the search questions. Each is scored on
the confirmation questions (same questions, same order: paired), and
`selection.choose` picks among them. Results are stored in the study as they finish,
so a resumed compile neither repeats nor recounts them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna

from ..lm.base import LMError
from ..lm.meter import BudgetExceeded
from ..program.program import Program
from ..progress import log
from . import study as studies
from .ledger import leader, measured_cost, score_rows, scored, trial_params
from .pooled import pooled_scores
from .search import config_key, configure, usage_dict
from .selection import Candidate, DevSplit
from .space import BankChoice, Param, baseline_params
from .trial import TooManyModelErrors, TrialOutcome, evaluate_candidate

if TYPE_CHECKING:
    from .optimizer import Compiler

PREFIX = "confirm:"


@dataclass
class Confirmation:
    candidates: list[Candidate] = field(default_factory=list)
    trials: dict[int, optuna.trial.FrozenTrial] = field(default_factory=dict)  # by candidate number
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (trial number, why)


def finalists(study: optuna.Study, space: list[Param], banks: BankChoice, root: Any, seed: int, n_search: int,
              top: int, pool_effects: bool = False) -> tuple[list[optuna.trial.FrozenTrial], str]:
    """(trials to confirm, canonical key of the cheapest configuration): the cheapest
    first, then the best `top` distinct configurations on the search questions (by their
    own scores, or with `pool_effects` by the additive model of every trial's, `pooled`)."""
    base_key = config_key(configure(root, baseline_params(root, space), banks, seed))
    pool = scored(study, n_search)
    first: dict[str, optuna.trial.FrozenTrial] = {}
    for t in pool:
        first.setdefault(t.user_attrs["canonical"], t)
    score = {t.number: _mean(t.user_attrs["scores"]) for t in first.values()}
    if pool_effects:
        score = pooled_scores(score_rows(studies.finished_trials(study), space))
    ranked = sorted(first.values(), key=lambda t: (-score[t.number], measured_cost(t), t.number))
    out = [first[base_key]] if base_key in first else []
    out += [t for t in ranked if t.user_attrs["canonical"] != base_key][:top]
    return out, base_key


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def stored_calls(study: optuna.Study) -> int:
    return sum(int(json_rec.get("calls", 0)) for json_rec in _records(study).values())


def stored_usage(study: optuna.Study) -> list[dict[str, Any]]:
    return [r.get("usage", {}) for r in _records(study).values()]


def _records(study: optuna.Study) -> dict[str, dict[str, Any]]:
    return {k[len(PREFIX):]: studies.get_json(study, k) for k in sorted(study.user_attrs) if k.startswith(PREFIX)}


def run_confirmation(c: "Compiler", study: optuna.Study, space: list[Param], banks: BankChoice,
                     prep: dict[str, Any], split: DevSplit, search_calls: int) -> Confirmation:
    o = c.opts
    root = c.declared.root
    trials, base_key = finalists(study, space, banks, root, o.seed, len(split.search), o.confirm_top,
                                 o.pool_effects)
    out = Confirmation()
    for t in trials:
        key = t.user_attrs["canonical"]
        rec = studies.get_json(study, PREFIX + key)
        if rec is None and split.reused:  # too few dev questions to hold any out: the search scores stand
            rec = {"scores": t.user_attrs["scores"], "calls": 0, "usage": usage_dict_of(t), "reused": True}
        if rec is None:
            rec = _confirm_one(c, study, t, space, banks, split, prep["calls"] + search_calls)
        if rec is None or "scores" not in rec:
            out.skipped.append((t.number, (rec or {}).get("failed", "does not fit in the budget left")))
            continue
        n = len(rec["scores"])
        used = t.user_attrs["usage"] if rec.get("reused") else rec["usage"]
        calls = t.user_attrs["calls"] if rec.get("reused") else rec["calls"]
        scores = [float(s) for s in rec["scores"]]
        if o.select_on == "pooled" and not rec.get("reused"):
            # every finalist was scored on all search questions in the same order: pairs stay paired
            scores = [float(s) for s in t.user_attrs["scores"]] + scores
        out.candidates.append(Candidate(
            number=t.number, scores=scores, cost=calls / n,
            tokens=(used.get("prompt_tokens", 0) + used.get("completion_tokens", 0)) / n,
            search_score=_mean(t.user_attrs["scores"]), search_n=len(t.user_attrs["scores"]),
            baseline=key == base_key))
        out.trials[t.number] = t
    return out


def usage_dict_of(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return dict(t.user_attrs.get("usage", {}))


def _confirm_one(c: "Compiler", study: optuna.Study, t: optuna.trial.FrozenTrial, space: list[Param],
                 banks: BankChoice, split: DevSplit, used_before: int) -> dict[str, Any] | None:
    o = c.opts
    used = used_before + stored_calls(study)
    candidate = configure(c.declared.root, trial_params(t, space), banks, o.seed)
    # The search measured what a question costs this configuration (chain-of-thought follow-ups
    # included); a confirmation the budget cannot finish would spend calls and yield nothing.
    need = math.ceil(len(split.confirm) * max(candidate.calls_per_question(), measured_cost(t)) - 1e-9)
    if used + need > o.budget:
        log(f"confirmation of trial {t.number} skipped: needs ~{need} calls, {o.budget - used} left", quiet=o.quiet)
        return None
    prog = Program(candidate, name=c.declared.name, templates=c.declared.templates, seed=o.seed)
    outcome = TrialOutcome()
    rec: dict[str, Any]
    try:
        evaluate_candidate(prog, split.confirm, c.lm, o.budget - used, c.metric, minibatch=len(split.confirm),
                           report=None, concurrency=o.concurrency, outcome=outcome)
        rec = {"scores": outcome.scores, "abstentions": outcome.abstentions}
    except TooManyModelErrors:
        rec = {"failed": f"{outcome.model_errors} of {len(outcome.scores)} answers were model errors"}
    except BudgetExceeded:
        rec = {"failed": "budget ran out during confirmation"}
    except LMError as exc:
        from .preflight import backend_failed

        raise backend_failed(exc, f"while confirming trial {t.number}", "all finished trials are kept") from exc
    rec.update(calls=outcome.calls, usage=usage_dict(outcome.usage))
    studies.put_json(study, PREFIX + t.user_attrs["canonical"], rec)
    score = (f"score {outcome.mean:.3f} on {len(outcome.scores)} confirmation questions" if "scores" in rec
             else f"not confirmed: {rec['failed']}")
    log(f"confirm trial {t.number:>3}: {score}, calls {outcome.calls}", quiet=o.quiet)
    return rec


def search_leader(study: optuna.Study, n_search: int) -> optuna.trial.FrozenTrial | None:
    """The best trial on the search questions (when nothing could be confirmed)."""
    return leader(scored(study, n_search))
