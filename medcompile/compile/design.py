"""The search's design: screen one change at a time, combine what helped, scale last.

Screening (`screen`): right after the baseline (every choice at its cheapest), each
choice is changed alone (chain of thought on, the declared number of exemplars, each
candidate instruction, ...) and scored paired against the baseline on the same
questions: each trial measures one effect. Then the changes that were ahead are
combined into one configuration (effects of prompt choices add up, roughly), and the
model-guided search goes on from there.

Scale last (`scale_last`): search a program's choices at one call a question, then
measure the best of them at the declared size.

Choices that multiply calls (shuffles, ensemble members, refinement paths) cost the
search most and, for most models, interact least with the others: an ensemble of a
better prompt is a better ensemble. So with `scale_last`, the search scores every
proposal at the cheapest value of those choices, keeps room in the budget, and
spends it at the end on one candidate: the search leader scaled back to the sizes
the program was declared with. The finalists' comparison (paired, on held-out
questions) then decides whether the extra calls buy accuracy.

Which choices cost calls is measured (`Module.calls_per_question`), never assumed.
"""
from __future__ import annotations

from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from ..modules.base import Module
from ..progress import log
from .ledger import is_repeat, leader, mean, raw_value, scored, trial_params
from .space import BankChoice, Param, active_params, simplest_choice

SCALED_ATTR = "scaled_from"  # user attr of the trial that scales a leader up


def cost_keys(root: Module, space: list[Param], base: dict[str, Any], cost: Callable[[dict[str, Any]], float]
              ) -> set[str]:
    """Keys of the choices that change calls per question, each tried from the baseline."""
    base_cost = cost(base)
    out: set[str] = set()
    for p in space:
        for c in p.choices:
            ps = active_params(root, space, lambda q, k=p.key, v=c: v if q.key == k else base.get(q.key, simplest_choice(q)))
            if abs(cost(ps) - base_cost) > 1e-9:
                out.add(p.key)
                break
    return out


def with_sizes(root: Module, space: list[Param], params: dict[str, Any], sizes: dict[str, Any], keys: set[str]
               ) -> dict[str, Any]:
    """`params` with the call-multiplying choices set from `sizes` (inert ones dropped)."""
    merged = {**params, **{k: v for k, v in sizes.items() if k in keys}}
    return active_params(root, space, lambda p: merged.get(p.key, simplest_choice(p)))


def _changed(root: Module, space: list[Param], base: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    return active_params(root, space, lambda q: value if q.key == key else base.get(q.key, simplest_choice(q)))


def screen_values(p: Param, base_value: Any, declared_value: Any) -> list[Any]:
    """The values a screen tries for one choice: every alternative of a categorical choice
    (instructions, strategies), the declared (else the largest) value of a numeric one."""
    others = [c for c in p.choices if c != base_value]
    numeric = [c for c in others if isinstance(c, (int, float)) and not isinstance(c, bool)]
    if numeric and len(numeric) == len(others):
        return [declared_value if declared_value in numeric else max(numeric)]
    return others


def openings(root: Module, space: list[Param], base: dict[str, Any], declared: dict[str, Any], try_declared: bool,
             screen: bool, skip: set[str]) -> list[dict[str, Any]]:
    """Configurations queued right after the baseline: the program as declared, then (screen)
    the baseline with one choice changed, for every choice not in `skip` (call multipliers)."""
    out: list[dict[str, Any]] = []
    if try_declared and declared != base:
        out.append(declared)
    if screen:
        for p in space:
            if p.key in skip:
                continue
            probe = base if p.key in base else _changed(root, space, base, p.key, p.choices[0])
            if p.key not in probe:
                continue  # only reachable through another choice (a strategy at k=0): screened with it
            for v in screen_values(p, base.get(p.key, simplest_choice(p)), declared.get(p.key)):
                ps = _changed(root, space, base, p.key, v)
                if ps != base and ps not in out:
                    out.append(ps)
    return out


def combination(root: Module, space: list[Param], base: dict[str, Any], screened: list[tuple[dict[str, Any], float]]
                ) -> dict[str, Any] | None:
    """The baseline with every screened change that was ahead of it (for a choice screened
    with several values, the best one); None when fewer than two helped."""
    best: dict[str, tuple[float, Any]] = {}
    for ps, gain in screened:
        if gain <= 0:
            continue
        for k, v in ps.items():
            if base.get(k) != v and (k not in best or gain > best[k][0]):
                best[k] = (gain, v)
    if len(best) < 2:
        return None
    merged = {**base, **{k: v for k, (_, v) in best.items()}}
    return active_params(root, space, lambda q: merged.get(q.key, simplest_choice(q)))


def combine_screened(done: list[optuna.trial.FrozenTrial], root: Module, space: list[Param], base: dict[str, Any],
                     base_key: str, plan_keys: set[str]) -> dict[str, Any] | None:
    """The screened changes that were ahead of the baseline, together (see the module note):
    read from the finished trials of the baseline and the openings, whatever their order."""
    scored_ = [t for t in done if t.user_attrs.get("scores") and not is_repeat(t)]
    ref = next((t.user_attrs["scores"] for t in scored_ if t.user_attrs.get("canonical") == base_key), None)
    if ref is None:
        return None
    screened = [(trial_params(t, space), mean(t.user_attrs["scores"]) - mean(list(ref[:len(t.user_attrs["scores"])])))
                for t in scored_ if t.user_attrs.get("canonical") in plan_keys]
    return combination(root, space, base, screened)


def set_aside(study: optuna.Study, trial: optuna.Trial, why: str) -> None:
    """Tell a proposal that is not scored as it stands: no calls, no trial slot."""
    trial.set_user_attr("skipped", why)
    trial.set_user_attr("misfit", True)
    trial.set_user_attr("calls", 0)
    study.tell(trial, state=TrialState.FAIL)


def scale_leader(study: optuna.Study, root: Module, space: list[Param], ckeys: set[str], declared: dict[str, Any],
                 n_search: int, banks: BankChoice, opts: Any) -> bool:
    """Queue the search leader at its declared sizes (once; the search re-queues it if a kill
    cuts it short); False when there is nothing to scale."""
    from .search import config_key, configure  # noqa: PLC0415 - search imports this module

    study.set_user_attr(SCALED_ATTR, -1)
    top = leader(scored(study, n_search))
    if top is None:
        return False
    params = trial_params(top, space)
    sized = with_sizes(root, space, params, declared, ckeys)
    if sized == params:
        return False
    key = config_key(configure(root, sized, banks, opts.seed))
    study.set_user_attr(SCALED_ATTR, {"trial": top.number, "key": key,
                                      "params": {k: raw_value(space, k, v) for k, v in sized.items()}})
    study.enqueue_trial({k: raw_value(space, k, v) for k, v in sized.items()})
    log(f"scale last: trial {top.number}, the leader at the cheapest sizes, is tried at the declared sizes",
        quiet=opts.quiet)
    return True



__all__ = ["SCALED_ATTR", "BankChoice", "combination", "combine_screened", "cost_keys", "openings", "scale_leader",
           "screen_values", "set_aside", "with_sizes"]
