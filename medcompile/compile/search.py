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
from .design import SCALED_ATTR, combine_screened, cost_keys, openings, scale_leader, set_aside, with_sizes
from .ledger import (as_reference, finished_in_order, is_misfit, is_repeat, leader, mean, measured_cost, n_done,
                     raw_value, score_rows, scored, spent, takes_slot, trailing, trial_params)
from .pooled import pooled_best
from .selection import DevSplit, Reference, race, race_note
from .space import (BankChoice, Param, active_params, apply, baseline_params, canonical, count_configurations,
                    declared_params, simplest_choice)
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
    declared = declared_params(root, space)
    base_program = configure(root, base, banks, o.seed)
    base_key, base_cpq = config_key(base_program), base_program.calls_per_question()
    size = count_configurations(root, space)
    cost_of = lambda ps: configure(root, ps, banks, o.seed).calls_per_question()  # noqa: E731
    multipliers = cost_keys(root, space, base, cost_of) if (o.scale_last or o.screen) and not multi else set()
    ckeys = multipliers if o.scale_last else set()
    # Queued one at a time and found again from the study's finished trials, so a compile killed
    # mid-opening redoes the same opening next (the same program as an uninterrupted compile).
    plan = [(ps, config_key(configure(root, ps, banks, o.seed)))
            for ps in openings(root, space, base, declared, o.try_declared, o.screen, multipliers)]
    plan_keys = {k for _, k in plan}
    with progress_bar("search", o.max_trials, quiet=o.quiet) as bar:
        bar.resume(min(sum(map(takes_slot, finished_in_order(study))), o.max_trials))
        while True:
            done = finished_in_order(study)
            slots = sum(map(takes_slot, done))
            tried = {t.user_attrs.get("canonical") for t in done if takes_slot(t) and "scores" in t.user_attrs}
            used = prep["calls"] + spent(study)
            cheap_phase = bool(ckeys) and SCALED_ATTR not in study.user_attrs
            if slots >= o.max_trials - int(cheap_phase):
                if cheap_phase and scale_leader(study, root, space, ckeys, declared, len(search_qs), banks, o):
                    continue
                break
            if size is not None and len(tried) >= size:
                log(f"every one of the {size} configurations of the search space has been tried", quiet=o.quiet)
                break
            if trailing(done, is_repeat) >= MAX_REPEATS:
                log(f"the last {MAX_REPEATS} proposals repeated configurations already tried; stopping search",
                    quiet=o.quiet)
                break
            if used >= o.budget:
                log(f"budget of {o.budget} calls reached", quiet=o.quiet)
                break
            study.sampler = studies.seeded_sampler(o.seed, n_done(study), multi, n_startup)
            waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            if not done and not waiting:
                # The first trial is the cheapest configuration: the baseline every other must beat.
                study.enqueue_trial({k: raw_value(space, k, v) for k, v in base.items()})
            elif not waiting:
                # Then the openings (the program as declared; the screen's one-change trials), then
                # the screen's combination, then a scaled leader that a kill cut short.
                seen = {t.user_attrs.get("canonical") for t in done}
                nxt = next((ps for ps, k in plan if k not in seen), None)
                if nxt is None and o.screen:
                    nxt = combine_screened(done, root, space, base, base_key, plan_keys)
                    nxt = None if nxt is None or config_key(configure(root, nxt, banks, o.seed)) in seen else nxt
                if nxt is None and o.pool_effects:  # the additive model's best, while untried
                    nxt = pooled_best(root, space, score_rows(done, space))
                    nxt = None if nxt is None or config_key(configure(root, nxt, banks, o.seed)) in seen else nxt
                if nxt is not None:
                    study.enqueue_trial({k: raw_value(space, k, v) for k, v in nxt.items()})
                elif isinstance(scaled := study.user_attrs.get(SCALED_ATTR), dict) and scaled["key"] not in seen:
                    study.enqueue_trial(scaled["params"])  # stored as optuna values already
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
            if cheap_phase and cpq > base_cpq + 1e-9:
                # Cheap first: score this proposal at the cheapest sizes; the leader is scaled last.
                set_aside(study, trial, "scored at the cheapest sizes first (scale_last)")
                study.enqueue_trial({k: raw_value(space, k, v) for k, v in with_sizes(root, space, params, base,
                                                                                   ckeys).items()})
                continue
            scored_now = scored(study, len(search_qs))
            top = leader(scored_now)
            ranked = sorted(scored_now, key=lambda t: (-mean(t.user_attrs["scores"]), measured_cost(t), t.number))

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
            if cheap_phase and top is not None and key not in plan_keys:
                sized = with_sizes(root, space, trial_params(top, space), declared, ckeys)
                sized_cost = cost_of(sized)
                room = sum(need(sized_cost, config_key(configure(root, sized, banks, o.seed))))
                if used + est + keep + room > o.budget:
                    set_aside(study, trial, f"the budget left ({o.budget - used} calls) is kept for the "
                                             "leader at its declared sizes")
                    if scale_leader(study, root, space, ckeys, declared, len(search_qs), banks, o):
                        continue
                    break
            if used + est + keep > o.budget:
                why = f"needs ~{est} calls" + (f" (+{keep} kept for confirmation)" if keep else "") + \
                      f", {o.budget - used} left"
                set_aside(study, trial, why)
                log(f"trial {trial.number:>3} skipped: {why}", quiet=o.quiet)
                if sum(need(base_cpq, "another")) > o.budget - used or \
                        trailing(finished_in_order(study), is_misfit) >= MAX_MISFITS:
                    log(f"budget left ({o.budget - used} calls) is too small for the configurations "
                        "proposed; stopping search", quiet=o.quiet)
                    break
                thrifty = _thrifty(root, space, params, banks, o.seed,
                                   lambda cost: sum(need(cost)) <= o.budget - used)
                if thrifty is not None:
                    # Try the proposal with fewer calls (fewer shuffles, paths, members) instead.
                    study.enqueue_trial({k: raw_value(space, k, v) for k, v in thrifty.items()})
                continue
            stop = _evaluate(c, study, trial, candidate, params, space, search_qs, o.budget - used, multi,
                             as_reference(top), as_reference(leader(scored_now, max_cost=cpq)), bar)
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
        why = race(outcome.scores, outcome.calls / max(1, len(outcome.scores)), top, cheaper, patient=o.patient_racing)
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
