"""Refine: Med-PaLM 2's ensemble refinement.

First m reasoning paths are sampled from the inner predictor (temperature > 0). Then
the model is asked r times to answer again, conditioned on the question *and* those
paths, and the r refined answers are voted. Costs m + r calls a question.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Any, ClassVar, Mapping

from ..question import Question
from .base import (Module, ModuleError, Prediction, Resolver, RunContext, check_int, check_temperature, register,
                   resolve_tune, with_tune)
from .fanout import fan_out
from .predict import Predict
from .vote import plurality

MAX_PATHS = 32


@register
@dataclass(frozen=True, eq=False)
class Refine(Module):
    inner: Predict
    m: int = 3
    r: int = 2
    temperature: float = 0.7
    tune: Any = True

    type_name: ClassVar[str] = "Refine"
    default_space: ClassVar[Mapping[str, tuple[Any, ...]]] = {"m": (2, 3, 5), "r": (1, 3)}

    def __post_init__(self) -> None:
        object.__setattr__(self, "tune", resolve_tune(self.tune, self.default_space, "Refine"))
        if not isinstance(self.inner, Predict):
            raise ModuleError("Refine.inner must be a Predict or SelfCoT module")
        check_int("Refine.m", self.m, 1, MAX_PATHS)
        check_int("Refine.r", self.r, 1, MAX_PATHS)
        check_temperature("Refine.temperature", self.temperature)

    def forward(self, q: Question, ctx: RunContext, path: str) -> Prediction:
        inner = self.inner
        t = float(self.temperature)
        first = inner.parts(q)
        paths = fan_out(ctx, [partial(inner.ask, first, ctx, f"{path}/path{i}", t, q) for i in range(self.m)])
        shown = tuple((p.rationale or "", p.answer or "none") for p in paths)
        # Refinement always reasons, whatever the inner predictor does.
        parts = inner.parts(q, extra_paths=shown, cot=True)
        refined = fan_out(ctx, [partial(inner.ask, parts, ctx, f"{path}/refine{j}", t if self.r > 1 else 0.0, q)
                                for j in range(self.r)])
        out = plurality(refined, list(q.options))
        if out.answer is None:  # nothing refined parsed: fall back to the sampled paths
            out = plurality(paths, list(q.options))
        return out

    def children(self) -> list[tuple[str, Module]]:
        return [("inner", self.inner)]

    def with_children(self, new: Mapping[str, Module]) -> "Refine":
        return replace(self, inner=new.get("inner", self.inner))

    def inert_params(self, chosen: Mapping[str, Any]) -> set[str]:
        return {"inner.temperature"}  # paths and refinements sample at this module's temperature

    def configure(self, params: Mapping[str, Any]) -> "Refine":
        return replace(self, m=int(params.get("m", self.m)), r=int(params.get("r", self.r)), tune=False)

    def calls_per_question(self) -> float:
        return float(self.m + self.r)

    def to_config(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type_name, "m": self.m, "r": self.r, "temperature": float(self.temperature),
                             "inner": self.inner.to_config()}
        return with_tune(d, self.tune)

    @classmethod
    def from_config(cls, d: Mapping[str, Any], resolve: Resolver) -> "Refine":
        return cls(inner=resolve.build(d["inner"]), m=d["m"], r=d["r"], temperature=d["temperature"],  # type: ignore[arg-type]
                   tune=d.get("tune"))
