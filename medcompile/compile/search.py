"""Stage 3 of a compile: the optuna search, raced on the search questions.

Each proposal is one configuration of the program's open choices (choices that cannot
change the program given the others are not asked for). The first trial is always the
cheapest configuration, the baseline every other must beat. A proposal that repeats an
earlier configuration reuses its result and takes no trial slot. A candidate is scored
minibatch by minibatch on the search questions and raced, paired, against the finished
ones (`selection.race`); one that cannot fit in the budget, with room kept for the
confirmation stage, is skipped with the reason.

Everything that steers the loop is read back from the study (finished trials, their
logical calls), never kept in memory, so a resumed compile makes the same decisions as
an uninterrupted one.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from ..lm.base import LMError, Usage
from ..lm.meter import BudgetExceeded
from ..modules.base import Module, seed_tree
from ..program.program import Program
from ..progress import log, progress_bar
from . import study as studies
from .selection import DevSplit, Reference, race, race_note
from .space import (BankChoice, Param, active_params, apply, baseline_params, canonical, count_configurations,
                    simplest_choice)
from .trial import Pruned, TooManyModelErrors, TrialOutcome, evaluate_candidate

if TYPE_CHECKING:
    from .optimizer import Compiler

MAX_MISFITS = 10  # proposals in a row that do not fit the budget before the search gives up
MAX_REPEATS = 40  # proposals in a row that repeat tried configurations before the search gives up


def configure(root: Module, params: dict[str, Any], banks: BankChoice, seed: int) -> Module:
    """The candidate program for `params`, its randomness derived from the compile seed."""
    return seed_tree(apply(root, params, banks), seed, override=True)


def config_key(candidate: Module) -> str:
    return hashlib.sha256(canonical(candidate).encode()).hexdigest()


def trial_params(t: optuna.trial.FrozenTrial, space: list[Param]) -> dict[str, Any]:
    return {p.key: p.value(t.params[p.key]) for p in space if p.key in t.params}


# ---- what the study says so far -------------------------------------------------------------------
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


def _trailing(trials: list[optuna.trial.FrozenTrial], pred: Any) -> int:
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


def measured_cost(t: optuna.trial.FrozenTrial) -> float:
    n = len(t.user_attrs.get("scores", []))
    return t.user_attrs["calls"] / n if n else float(t.user_attrs.get("cpq", 0.0))


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def leader(trials: list[optuna.trial.FrozenTrial], max_cost: float | None = None) -> optuna.trial.FrozenTrial | None:
    """The best scored trial (cheaper, then earlier, on ties), optionally among those cheaper than `max_cost`."""
    pool = [t for t in trials if max_cost is None or measured_cost(t) < max_cost - 1e-9]
    if not pool:
        return None
    return max(pool, key=lambda t: (_mean(t.user_attrs["scores"]), -measured_cost(t), -t.number))


def _ref(t: optuna.trial.FrozenTrial | None) -> Reference | None:
    return None if t is None else Reference(t.number, t.user_attrs["scores"], measured_cost(t))


# ---- the loop --------------------------------------------------------------------------------------
def run_search(c: "Compiler", study: optuna.Study, space: list[Param], banks: BankChoice, prep: dict[str, Any],
               split: DevSplit) -> None:
    o = c.opts
    multi = o.objective == "pareto"
    n_startup = max(3, min(8, o.max_trials // 3))
    root = c.declared.root
    search_qs = split.search
    n_confirm = 0 if split.reused else len(split.confirm)
    base = baseline_params(root, space)
    base_program = configure(root, base, banks, o.seed)
    base_key, base_cpq = config_key(base_program), base_program.calls_per_question()
    size = count_configurations(root, space)
    with progress_bar("search", o.max_trials, quiet=o.quiet) as bar:
        bar.advance(None, n=min(sum(map(takes_slot, finished_in_order(study))), o.max_trials))
        while True:
            done = finished_in_order(study)
            slots = sum(map(takes_slot, done))
            tried = {t.user_attrs.get("canonical") for t in done if takes_slot(t) and "scores" in t.user_attrs}
            used = prep["calls"] + spent(study)
            if slots >= o.max_trials:
                break
            if size is not None and len(tried) >= size:
                log(f"every one of the {size} configurations of the search space has been tried", quiet=o.quiet)
                break
            if _trailing(done, is_repeat) >= MAX_REPEATS:
                log(f"the last {MAX_REPEATS} proposals repeated configurations already tried; stopping search",
                    quiet=o.quiet)
                break
            if used >= o.budget:
                log(f"budget of {o.budget} calls reached", quiet=o.quiet)
                break
            study.sampler = studies.seeded_sampler(o.seed, n_done(study), multi, n_startup)
            if not done and not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                # The first trial is the cheapest configuration: the baseline every other must beat.
                study.enqueue_trial({k: _raw(space, k, v) for k, v in base.items()})
            trial = study.ask()
            params = active_params(root, space, lambda p: p.value(trial.suggest_categorical(p.key, p.optuna_choices())))
            candidate = configure(root, params, banks, o.seed)
            key = config_key(candidate)
            cpq = candidate.calls_per_question()
            trial.set_user_attr("canonical", key)
            trial.set_user_attr("cpq", cpq)
            est = int(len(search_qs) * cpq)
            trial.set_user_attr("reserved", est)
            dup = _find_duplicate(study, key, trial.number)
            if dup is not None:
                _tell_duplicate(study, trial, dup)
                log(f"trial {trial.number:>3} same configuration as trial {dup.number}: reused, 0 calls, "
                    "no trial slot taken", quiet=o.quiet)
                continue
            scored_now = scored(study, len(search_qs))
            top = leader(scored_now)
            ranked = sorted(scored_now, key=lambda t: (-_mean(t.user_attrs["scores"]), measured_cost(t), t.number))

            def need(cost: float, key: str = key) -> tuple[int, int]:
                """(calls to score a candidate on the search questions, calls kept to confirm it,
                the cheapest configuration and the current leader)."""
                confirm = {base_key: base_cpq, key: cost}
                if top is not None:
                    confirm[top.user_attrs["canonical"]] = float(top.user_attrs["cpq"])
                if o.reserve_finalists:  # room to confirm every finalist, not only the leader
                    for t in ranked[:o.confirm_top]:
                        confirm[t.user_attrs["canonical"]] = float(t.user_attrs["cpq"])
                return int(len(search_qs) * cost), int(n_confirm * sum(confirm.values()))

            est, keep = need(cpq)
            if used + est + keep > o.budget:
                why = f"needs ~{est} calls" + (f" (+{keep} kept for confirmation)" if keep else "") + \
                      f", {o.budget - used} left"
                trial.set_user_attr("skipped", why)
                trial.set_user_attr("misfit", True)
                trial.set_user_attr("calls", 0)
                study.tell(trial, state=TrialState.FAIL)
                log(f"trial {trial.number:>3} skipped: {why}", quiet=o.quiet)
                if sum(need(base_cpq, "another")) > o.budget - used or \
                        _trailing(finished_in_order(study), is_misfit) >= MAX_MISFITS:
                    log(f"budget left ({o.budget - used} calls) is too small for the configurations "
                        "proposed; stopping search", quiet=o.quiet)
                    break
                thrifty = _thrifty(root, space, params, banks, o.seed,
                                   lambda cost: sum(need(cost)) <= o.budget - used)
                if thrifty is not None:
                    # Try the proposal with fewer calls (fewer shuffles, paths, members) instead.
                    study.enqueue_trial({k: _raw(space, k, v) for k, v in thrifty.items()})
                continue
            stop = _evaluate(c, study, trial, candidate, params, space, search_qs, o.budget - used, multi,
                             _ref(top), _ref(leader(scored_now, max_cost=cpq)), bar)
            if stop:
                break


def _thrifty(root: Module, space: list[Param], params: dict[str, Any], banks: BankChoice, seed: int,
             fits: Any) -> dict[str, Any] | None:
    """The costliest variant of `params` that `fits(calls_per_question)`, lowering one choice
    at a time by the smallest saving (None if none fits). Which choices cost calls is
    measured, not assumed; the other choices stay as proposed."""
    def cost(ps: dict[str, Any]) -> float:
        return configure(root, ps, banks, seed).calls_per_question()

    current, current_cost = dict(params), cost(params)
    while not fits(current_cost):
        steps = []
        for i, p in enumerate(space):
            if p.key not in current:
                continue
            lower = [c for c in p.choices if isinstance(c, (int, float)) and not isinstance(c, bool)
                     and c < current[p.key]] if isinstance(current[p.key], (int, float)) else []
            if lower:
                ps = active_params(root, space, lambda q, k=p.key, v=max(lower): v if q.key == k
                                   else current.get(q.key, simplest_choice(q)))
                c = cost(ps)
                if c < current_cost:
                    steps.append((current_cost - c, i, ps, c))
        if not steps:
            return None
        _, _, current, current_cost = min(steps, key=lambda s: (s[0], s[1]))
    return current if current != params else None


def _raw(space: list[Param], key: str, value: Any) -> Any:
    p = next(p for p in space if p.key == key)
    return value if p.optuna_choices() == p.choices else p.choices.index(value)


def _evaluate(c: "Compiler", study: optuna.Study, trial: optuna.Trial, candidate: Module, params: dict[str, Any],
              space: list[Param], questions: list, left: int, multi: bool, top: Reference | None,
              cheaper: Reference | None, bar: Any) -> bool:
    """Score one candidate, racing it; record and tell the outcome. True: stop the search."""
    o = c.opts
    prog = Program(candidate, name=c.declared.name, templates=c.declared.templates, seed=o.seed)
    outcome = TrialOutcome()

    def report(score: float, step: int) -> bool:
        if multi:
            return False
        trial.report(score, step)
        why = race(outcome.scores, outcome.calls / max(1, len(outcome.scores)), top, cheaper)
        if why is not None:
            trial.set_user_attr("pruned", why)
        return why is not None

    state, stop, reason = TrialState.COMPLETE, False, ""
    try:
        evaluate_candidate(prog, questions, c.lm, left, c.metric, minibatch=o.minibatch, report=report,
                           concurrency=o.concurrency, outcome=outcome)
    except Pruned:
        state = TrialState.PRUNED
    except TooManyModelErrors:
        state, reason = TrialState.FAIL, f"{outcome.model_errors} of {len(outcome.scores)} answers were model errors"
    except BudgetExceeded:
        state, stop, reason = TrialState.FAIL, True, "budget ran out during the trial"
    except LMError as exc:
        # Fatal backend failure: record what was spent, keep the study, stop cleanly.
        record(trial, outcome, candidate)
        study.tell(trial, state=TrialState.FAIL)
        from .preflight import backend_failed

        raise backend_failed(exc, f"during trial {trial.number}", "all finished trials are kept") from exc
    if reason:
        trial.set_user_attr("skipped", reason)
    record(trial, outcome, candidate)
    if state == TrialState.COMPLETE:
        study.tell(trial, [outcome.mean, trial.user_attrs["cpq"]] if multi else outcome.mean)
    else:
        study.tell(trial, state=state)
    bar.advance(outcome.usage)
    why = trial.user_attrs.get("pruned") if state == TrialState.PRUNED else None
    note = reason or (race_note(why, str(why["ref"])) if why else "")
    log(trial_line(trial.number, state, outcome, params, space, len(questions), note), quiet=o.quiet)
    if stop:
        log(f"budget of {o.budget} calls reached during trial {trial.number}", quiet=o.quiet)
    return stop


def record(trial: optuna.Trial, outcome: TrialOutcome, candidate: Module) -> None:
    trial.set_user_attr("calls", outcome.calls)
    trial.set_user_attr("usage", usage_dict(outcome.usage))
    trial.set_user_attr("n", len(outcome.scores))
    trial.set_user_attr("scores", outcome.scores)
    trial.set_user_attr("abstentions", outcome.abstentions)
    # Measured on the questions scored: a portfolio's cost depends on the questions.
    trial.set_user_attr("cpq", round(outcome.calls / len(outcome.scores), 6) if outcome.scores
                        else candidate.calls_per_question())


def _find_duplicate(study: optuna.Study, key: str, number: int) -> optuna.trial.FrozenTrial | None:
    for t in studies.finished_trials(study):
        if t.number != number and t.user_attrs.get("canonical") == key and "scores" in t.user_attrs:
            return t
    return None


def _tell_duplicate(study: optuna.Study, trial: optuna.Trial, dup: optuna.trial.FrozenTrial) -> None:
    for k in ("n", "scores", "abstentions", "cpq"):
        if k in dup.user_attrs:
            trial.set_user_attr(k, dup.user_attrs[k])
    trial.set_user_attr("calls", 0)
    trial.set_user_attr("duplicate_of", dup.number)
    if dup.state == TrialState.COMPLETE:
        study.tell(trial, dup.values if len(dup.values) > 1 else dup.values[0])
    else:
        study.tell(trial, state=TrialState.PRUNED)


def usage_dict(u: Usage) -> dict[str, Any]:
    return {"calls": u.calls, "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "cost": round(u.cost, 8)}


def trial_line(number: int, state: TrialState, o: TrialOutcome, params: dict[str, Any], space: list[Param],
               n_questions: int, note: str = "") -> str:
    shown = ", ".join(f"{p.key.split('.')[-1] if p.name != 'instruction' else 'instr'}="
                      f"{(p.choices.index(params[p.key]) if p.name == 'instruction' else params[p.key])}"
                      for p in space if p.key in params)
    word = state.name.lower() if state != TrialState.FAIL else "failed"
    return (f"trial {number:>3} {word:8} score {o.mean:.3f} on {len(o.scores)}/{n_questions} "
            f"calls {o.calls:>5}  {shown}" + (f"  ({note})" if note else ""))
