"""Retrieve: where a predictor's few-shot exemplars come from.

``strategy="knn"`` is Medprompt's dynamic few-shot: the k bank items nearest to each
question. ``"random"`` is the classic static few-shot baseline: k items drawn once
with the seed and shown for every question. ``k=0`` is zero-shot.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Mapping

from ..bank import Bank
from ..exemplar import Exemplar
from ..question import Question
from .base import Module, ModuleError, Resolver, register, resolve_tune, tune_to_config


@register
@dataclass(frozen=True, eq=False)
class Retrieve(Module):
    k: int = 3
    strategy: str = "knn"
    bank: Bank | None = None
    seed: int = 0
    tune: Any = True
    bank_name: str = "bank"

    type_name: ClassVar[str] = "Retrieve"
    default_space: ClassVar[Mapping[str, tuple[Any, ...]]] = {"k": (0, 1, 3, 5), "strategy": ("knn", "random")}

    def __post_init__(self) -> None:
        object.__setattr__(self, "tune", resolve_tune(self.tune, self.default_space, "Retrieve"))
        if self.bank is not None and not isinstance(self.bank, Bank):
            object.__setattr__(self, "bank", Bank([Exemplar(q) for q in self.bank]))
        if self.strategy not in ("knn", "random"):
            raise ModuleError(f"Retrieve.strategy must be 'knn' or 'random', got {self.strategy!r}")
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 0:
            raise ModuleError(f"Retrieve.k must be a non-negative integer, got {self.k!r}")

    def demos(self, q: Question) -> list[Exemplar]:
        if self.k == 0:
            return []
        if self.bank is None:
            raise ModuleError("Retrieve has no exemplar bank: compile the program, or pass bank=[...]")
        if self.strategy == "random":
            return self.static_demos()
        return self.bank.nearest(q, self.k)

    def static_demos(self) -> list[Exemplar]:
        assert self.bank is not None
        rng = random.Random(self.seed)
        idx = rng.sample(range(len(self.bank)), min(self.k, len(self.bank)))
        return [self.bank.exemplars[i] for i in idx]

    def with_bank(self, bank: Bank) -> "Retrieve":
        return replace(self, bank=bank)

    def configure(self, params: Mapping[str, Any]) -> "Retrieve":
        return replace(self, k=int(params.get("k", self.k)), strategy=params.get("strategy", self.strategy), tune=None)

    def calls_per_question(self) -> float:
        return 0.0

    def to_config(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type_name, "k": self.k, "strategy": self.strategy, "seed": self.seed,
                             "bank": self.bank_name if self.bank is not None else None}
        if self.tune is not None:
            d["tune"] = tune_to_config(self.tune)
        return d

    @classmethod
    def from_config(cls, d: Mapping[str, Any], resolve: Resolver) -> "Retrieve":
        bank = resolve.bank(d["bank"]) if d.get("bank") else None
        return cls(k=d["k"], strategy=d["strategy"], seed=d.get("seed", 0), bank=bank,
                   bank_name=d.get("bank") or "bank",
                   tune=d.get("tune"))
