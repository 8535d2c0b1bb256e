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
from .base import (BankSlot, Module, ModuleError, Needs, Prediction, Resolver, RunContext, check_int, register,
                   resolve_tune, with_tune)

MAX_K = 64  # exemplars in one prompt (the program file's bound)


@register
@dataclass(frozen=True, eq=False)
class Retrieve(Module):
    k: int = 3
    strategy: str = "knn"
    bank: Bank | None = None
    seed: int | None = None  # None: derived from the program seed and this module's path
    tune: Any = True
    #: Name of the bank in the program file; None until `Program` names it after this module's path.
    bank_name: str | None = None

    type_name: ClassVar[str] = "Retrieve"
    default_space: ClassVar[Mapping[str, tuple[Any, ...]]] = {"k": (0, 1, 3, 5), "strategy": ("knn", "random")}

    def __post_init__(self) -> None:
        object.__setattr__(self, "tune", resolve_tune(self.tune, self.default_space, "Retrieve"))
        if self.bank is not None and not isinstance(self.bank, Bank):
            object.__setattr__(self, "bank", Bank([Exemplar(q) for q in self.bank]))
        if self.strategy not in ("knn", "random"):
            raise ModuleError(f"Retrieve.strategy must be 'knn' or 'random', got {self.strategy!r}")
        check_int("Retrieve.k", self.k, 0, MAX_K)

    def forward(self, q: Question, ctx: RunContext, path: str) -> Prediction:
        raise ModuleError("Retrieve supplies exemplars and answers nothing: use it as a predictor's demos=")

    def needs(self) -> Needs:
        ks = (self.tune or {}).get("k", (self.k,))
        strategies = (self.tune or {}).get("strategy", (self.strategy,))
        bank = any(k > 0 for k in ks)
        return Needs(bank=bank, knn=bank and "knn" in strategies)

    def bank_slot(self) -> BankSlot | None:
        return BankSlot(self.bank_name, self.bank) if self.bank is not None else None

    def with_bank_name(self, name: str) -> "Retrieve":
        return replace(self, bank_name=name)

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
        rng = random.Random(self.seed or 0)
        idx = rng.sample(range(len(self.bank)), min(self.k, len(self.bank)))
        return [self.bank.exemplars[i] for i in idx]

    def inert_params(self, chosen: Mapping[str, Any]) -> set[str]:
        return {"strategy"} if chosen.get("k", self.k) == 0 else set()  # zero-shot: no exemplars to choose

    def seeded(self, seed: int, *, override: bool = False) -> "Retrieve":
        return self if self.seed is not None and not override else replace(self, seed=seed)

    def configure(self, params: Mapping[str, Any]) -> "Retrieve":
        return replace(self, k=int(params.get("k", self.k)), strategy=params.get("strategy", self.strategy), tune=None)

    def calls_per_question(self) -> float:
        return 0.0

    def to_config(self) -> dict[str, Any]:
        # A bank not named yet (outside a Program) is written under the plain name "bank".
        return with_tune({"type": self.type_name, "k": self.k, "strategy": self.strategy, "seed": self.seed,
                          "bank": (self.bank_name or "bank") if self.bank is not None else None}, self.tune)

    @classmethod
    def from_config(cls, d: Mapping[str, Any], resolve: Resolver) -> "Retrieve":
        bank = resolve.bank(d["bank"]) if d.get("bank") else None
        return cls(k=d["k"], strategy=d["strategy"], seed=d.get("seed", 0), bank=bank,
                   bank_name=d.get("bank"), tune=d.get("tune"))
