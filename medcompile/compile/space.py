"""The search space of a declared program, and how a point in it becomes a program.

Every module declares its own open choices (`Module.space()`); here they are collected
under stable dotted paths (``inner.inner.cot``), offered to optuna as categorical
choices, and applied back to a frozen copy of the module tree.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..bank import Bank
from ..modules.base import Module
from ..program.program import name_banks


@dataclass(frozen=True)
class Param:
    """One open choice: `path` locates the module, `name` the parameter."""

    path: str
    name: str
    choices: tuple[Any, ...]

    @property
    def key(self) -> str:
        return f"{self.path}.{self.name}" if self.path else self.name

    def optuna_choices(self) -> tuple[Any, ...]:
        """optuna stores only plain scalars: long texts (instructions) go by index."""
        if all(isinstance(c, (bool, int, float)) or (isinstance(c, str) and len(c) <= 64) for c in self.choices):
            return self.choices
        return tuple(range(len(self.choices)))

    def value(self, raw: Any) -> Any:
        return self.choices[raw] if self.optuna_choices() != self.choices else raw


def collect_space(root: Module, instructions: tuple[str, ...] = ()) -> list[Param]:
    """All open choices of the tree. Predictors get an `instruction` choice when the
    compiler has more than one candidate instruction for them."""
    params: list[Param] = []
    for path, m in root.walk():
        space = m.space()
        if m.needs().instruction and "instruction" not in space and len(instructions) > 1:
            space["instruction"] = instructions
        for name, choices in sorted(space.items()):
            if len(choices) > 1:
                params.append(Param(path, name, tuple(choices)))
    return params


def apply(root: Module, params: Mapping[str, Any], banks: "BankChoice") -> Module:
    """A frozen copy of `root` with the chosen values (missing ones keep their default)."""

    def rebuild(m: Module, path: str) -> Module:
        mine = {k[len(path) + 1:] if path else k: v for k, v in params.items()
                if (k.rsplit(".", 1)[0] if "." in k else "") == path}
        kids = {name: rebuild(child, f"{path}.{name}" if path else name) for name, child in m.children()}
        out = m.with_children(kids) if kids else m
        return out.configure(mine).bind_banks(banks)

    return name_banks(rebuild(root, ""))  # named now, so later changes (a measured cost) keep them


@dataclass
class BankChoice:
    """Chain-of-thought exemplars need rationales; direct ones do not. Medprompt keeps
    only rationales that reached the right answer, so the CoT bank is a subset."""

    full: Bank
    cot: Bank

    def for_predictor(self, cot: bool) -> Bank:
        return self.cot if cot else self.full


def canonical(root: Module) -> str:
    """A text identifying what a configured program does, for spotting repeats."""
    return json.dumps(root.to_config(), sort_keys=True)


# ---- conditional choices ---------------------------------------------------------------------------
def _own(path: str, chosen: Mapping[str, Any]) -> dict[str, Any]:
    """The values in `chosen` that belong to the module at `path`, by parameter name."""
    return {k[len(path) + 1:] if path else k: v for k, v in chosen.items()
            if (k.rsplit(".", 1)[0] if "." in k else "") == path}


def is_inert(root: Module, p: Param, chosen: Mapping[str, Any]) -> bool:
    """True when `p` cannot change the program given the values chosen so far: the module
    or one of its ancestors says so (`Module.inert_params`), e.g. Retrieve's strategy at
    k=0 or a Refine's inner temperature."""
    for path, m in root.walk():
        if path and p.path != path and not p.path.startswith(path + "."):
            continue
        rel = p.key[len(path) + 1:] if path else p.key
        if any(rel == d or rel.startswith(d + ".") for d in m.inert_params(_own(path, chosen))):
            return True
    return False


def active_params(root: Module, space: list[Param], pick: Callable[[Param], Any]) -> dict[str, Any]:
    """Choose values in space order (a module's own choices before its children's),
    asking `pick` only for choices that still matter."""
    chosen: dict[str, Any] = {}
    for p in space:
        if not is_inert(root, p, chosen):
            chosen[p.key] = pick(p)
    return chosen


def count_configurations(root: Module, space: list[Param], limit: int = 100_000) -> int | None:
    """How many distinct configurations the space holds once inert choices are dropped
    (None when the full product is over `limit`)."""
    total = 1
    for p in space:
        total *= len(p.choices)
    if total > limit:
        return None

    def count(i: int, chosen: dict[str, Any]) -> int:
        if i == len(space):
            return 1
        p = space[i]
        if is_inert(root, p, chosen):
            return count(i + 1, chosen)
        return sum(count(i + 1, {**chosen, p.key: c}) for c in p.choices)

    return count(0, {})


def simplest_choice(p: Param) -> Any:
    """The smallest number (0 exemplars, 1 shuffle, temperature 0, no reasoning) or the
    first option (the declared instruction, the declared strategy)."""
    numbers = [c for c in p.choices if isinstance(c, (bool, int, float))]
    return min(numbers) if numbers else p.choices[0]


def declared_params(root: Module, space: list[Param]) -> dict[str, Any]:
    """The configuration the program was declared with (Medprompt: kNN k=5, CoT, 5
    shuffles): the user's own best guess, so the search measures it early."""
    modules = dict(root.walk())

    def declared(p: Param) -> Any:
        m = modules[p.path]
        same = m.configure({}).to_config()
        return next((c for c in p.choices if m.configure({p.name: c}).to_config() == same), simplest_choice(p))

    return active_params(root, space, declared)


def baseline_params(root: Module, space: list[Param]) -> dict[str, Any]:
    """The cheapest, simplest configuration: every choice at its simplest. For Medprompt
    that is zero-shot with a direct answer and one call a question."""
    return active_params(root, space, simplest_choice)
