"""Shuffle: Medprompt's choice-shuffle ensemble.

The inner module runs n times, each time with the options in a different seeded
order; every answer is mapped back to the original option keys. Run 0 keeps the
original order, so ``n=1`` means "no shuffling" and the optimizer can turn it off.
Letter keys (A, B, ...) keep their places and the texts move; word keys
(yes/no/maybe) move with their texts, since relabelling them would lie.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any, Callable, ClassVar, Mapping

from ..question import Question
from .base import (Module, ModuleError, Prediction, Resolver, RunContext, check_int, derive_seed, register, resolve_tune,
                   with_tune)
from .fanout import fan_out
from .vote import plurality

MAX_SHUFFLES = 64


def permute(q: Question, perm: list[int]) -> tuple[Question, dict[str, str]]:
    """Apply `perm` (new position -> old position) to q's options.

    Returns the shuffled question and the map from its keys back to the original keys.
    """
    keys = list(q.options)
    texts = [q.options[k] for k in keys]
    if sorted(perm) != list(range(len(keys))):
        raise ValueError(f"not a permutation of {len(keys)} options: {perm}")
    if all(len(k) == 1 and k.isalpha() for k in keys):
        new_opts = {keys[i]: texts[perm[i]] for i in range(len(keys))}
        back = {keys[i]: keys[perm[i]] for i in range(len(keys))}
    else:
        new_opts = {keys[perm[i]]: texts[perm[i]] for i in range(len(keys))}
        back = {k: k for k in keys}
    inv = {v: k for k, v in back.items()}
    answer = inv[q.answer] if q.answer is not None else None
    return q.with_options(new_opts, answer), back


def permutation_for(q: Question, seed: int, i: int) -> list[int]:
    n = len(q.options)
    if i == 0:
        return list(range(n))
    perm = list(range(n))
    random.Random(derive_seed(seed, q.id, q.question, i)).shuffle(perm)
    return perm


@register
@dataclass(frozen=True, eq=False)
class Shuffle(Module):
    inner: Module
    n: int = 5
    seed: int | None = None  # None: derived from the program seed and this module's path
    tune: Any = True

    type_name: ClassVar[str] = "Shuffle"
    default_space: ClassVar[Mapping[str, tuple[Any, ...]]] = {"n": (1, 3, 5)}

    def __post_init__(self) -> None:
        object.__setattr__(self, "tune", resolve_tune(self.tune, self.default_space, "Shuffle"))
        check_int("Shuffle.n", self.n, 1, MAX_SHUFFLES)
        if not isinstance(self.inner, Module):
            raise ModuleError("Shuffle.inner must be a module")

    def forward(self, q: Question, ctx: RunContext, path: str) -> Prediction:
        def run(i: int) -> Callable[[], Prediction]:
            def call() -> Prediction:
                shuffled, back = permute(q, permutation_for(q, self.seed or 0, i))
                return _map_back(self.inner(shuffled, ctx, f"{path}/shuffle{i}"), back)
            return call

        return plurality(fan_out(ctx, [run(i) for i in range(self.n)]), list(q.options))

    def children(self) -> list[tuple[str, Module]]:
        return [("inner", self.inner)]

    def with_children(self, new: Mapping[str, Module]) -> "Shuffle":
        return replace(self, inner=new.get("inner", self.inner))

    def seeded(self, seed: int, *, override: bool = False) -> "Shuffle":
        return self if self.seed is not None and not override else replace(self, seed=seed)

    def configure(self, params: Mapping[str, Any]) -> "Shuffle":
        return replace(self, n=int(params.get("n", self.n)), tune=False)

    def calls_per_question(self) -> float:
        return self.n * self.inner.calls_per_question()

    def to_config(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type_name, "n": self.n, "seed": self.seed, "inner": self.inner.to_config()}
        return with_tune(d, self.tune)

    @classmethod
    def from_config(cls, d: Mapping[str, Any], resolve: Resolver) -> "Shuffle":
        return cls(inner=resolve.build(d["inner"]), n=d["n"], seed=d.get("seed", 0), tune=d.get("tune"))


def _map_back(p: Prediction, back: dict[str, str]) -> Prediction:
    return Prediction(
        answer=back[p.answer] if p.answer is not None else None,
        confidence=p.confidence,
        votes={back[k]: v for k, v in p.votes.items()},
        rationale=p.rationale,
        reason=p.reason,
        candidates=[_map_back(c, back) for c in p.candidates],
        option_probs={back[k]: v for k, v in p.option_probs.items()},
    )
