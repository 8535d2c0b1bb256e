"""What every module shares: the run context, predictions, seeds and the type registry.

Modules are immutable values. Running one never changes it; tuning one returns a
configured copy. Every module can write itself as a plain JSON-able dict and be
rebuilt from one, which is what makes compiled programs loadable without the code
that declared them. Only the types registered here can be built from JSON: nothing
in a program file names Python code to import.
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Mapping

from ..lm.base import LM, LMRequest, LMResponse
from ..prompts.builder import PromptBuilder
from ..question import Question


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from any parts, stable across processes (no Python hash())."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


@dataclass
class CallRecord:
    path: str
    request: LMRequest
    response: LMResponse | None
    error: str | None = None


@dataclass
class RunContext:
    """Everything a module needs to run one question: no global settings.

    `calls` collects this question's model calls, so per-question usage is exact even
    when many questions run at once on one shared LM.
    """

    lm: LM
    builder: PromptBuilder
    seed: int = 0
    calls: list[CallRecord] = field(default_factory=list)
    #: How many of this question's independent calls may run at once (1: in order; see modules/fanout.py).
    parallel_calls: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def complete(self, path: str, request: LMRequest) -> LMResponse:
        try:
            resp = self.lm.complete(request)
        except Exception as exc:
            with self._lock:
                self.calls.append(CallRecord(path, request, None, f"{type(exc).__name__}: {exc}"))
            raise
        with self._lock:
            self.calls.append(CallRecord(path, request, resp))
        return resp


@dataclass
class Prediction:
    """A module's answer. `answer` None means abstention (nothing parsable).

    `option_probs` is the model's probability of each option key, when the answer was
    scored rather than parsed (constrained answers); empty otherwise."""

    answer: str | None
    confidence: float = 0.0
    votes: dict[str, int] = field(default_factory=dict)
    rationale: str | None = None
    reason: str = ""
    candidates: list["Prediction"] = field(default_factory=list)
    option_probs: dict[str, float] = field(default_factory=dict)

    @property
    def abstained(self) -> bool:
        return self.answer is None

    def leaves(self) -> list["Prediction"]:
        """The single-call predictions this one was made from (itself if it is one)."""
        if not self.candidates:
            return [self]
        return [leaf for c in self.candidates for leaf in c.leaves()]

    def to_dict(self, *, rationales: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"answer": self.answer, "confidence": round(self.confidence, 6),
                             "votes": dict(self.votes)}
        if self.option_probs:
            d["option_probs"] = {k: round(v, 6) for k, v in self.option_probs.items()}
        if rationales and self.rationale:
            d["rationale"] = self.rationale
        if self.answer is None:
            d["abstain_reason"] = self.reason
        return d


class ModuleError(ValueError):
    """A module is misconfigured (for example a Retrieve with no exemplar bank)."""


#: Module types that may appear in a program file.
MODULE_TYPES: dict[str, type["Module"]] = {}


def register(cls: type["Module"]) -> type["Module"]:
    MODULE_TYPES[cls.type_name] = cls
    return cls


class Module:
    """Base class for program modules."""

    type_name: ClassVar[str] = "Module"
    #: Default search space: parameter -> choices the optimizer may try.
    default_space: ClassVar[Mapping[str, tuple[Any, ...]]] = {}
    tune: Mapping[str, tuple[Any, ...]] | None

    def forward(self, q: Question, ctx: RunContext, path: str) -> Prediction:
        raise NotImplementedError

    def __call__(self, q: Question, ctx: RunContext, path: str = "") -> Prediction:
        return self.forward(q, ctx, path)

    # ---- structure ----------------------------------------------------------------
    def children(self) -> list[tuple[str, "Module"]]:
        """(name, child) pairs; names build stable parameter paths like ``inner.demos.k``."""
        return []

    def with_children(self, new: Mapping[str, "Module"]) -> "Module":
        return self

    def walk(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, child in self.children():
            yield from child.walk(f"{prefix}.{name}" if prefix else name)

    # ---- tuning ---------------------------------------------------------------------
    def space(self) -> dict[str, tuple[Any, ...]]:
        """This module's own open choices (not its children's)."""
        if self.tune is None:
            return {}
        return {k: tuple(v) for k, v in self.tune.items()}

    def configure(self, params: Mapping[str, Any]) -> "Module":
        """A frozen copy with chosen values for this module's own parameters."""
        raise NotImplementedError

    def calls_per_question(self) -> float:
        raise NotImplementedError

    # ---- serialisation ------------------------------------------------------------
    def to_config(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_config(cls, d: Mapping[str, Any], resolve: "Resolver") -> "Module":
        raise NotImplementedError


class Resolver:
    """Rebuilds modules from their dicts, and shared resources (exemplar banks), while
    loading. Only types in MODULE_TYPES can be built: a file cannot name other code."""

    def __init__(self, banks: Mapping[str, Any], max_depth: int = 24):
        self.banks = banks
        self.max_depth = max_depth
        self._depth = 0

    def bank(self, name: str) -> Any:
        if name not in self.banks:
            raise ModuleError(f"program refers to exemplar bank {name!r}, which is not in 'banks'")
        return self.banks[name]

    def build(self, d: Mapping[str, Any]) -> "Module":
        cls = MODULE_TYPES.get(d.get("type", "")) if isinstance(d, Mapping) else None
        if cls is None:
            found = d.get("type") if isinstance(d, Mapping) else d
            raise ModuleError(f"unknown module type {found!r}; known types: {sorted(MODULE_TYPES)}")
        self._depth += 1
        try:
            if self._depth > self.max_depth:
                raise ModuleError(f"modules nested deeper than {self.max_depth} levels")
            return cls.from_config(d, self)
        finally:
            self._depth -= 1


def tune_to_config(tune: Mapping[str, tuple[Any, ...]] | None) -> dict[str, list[Any]] | None:
    return None if tune is None else {k: list(v) for k, v in sorted(tune.items())}


def tune_from_config(d: Mapping[str, Any] | None, allowed: Mapping[str, Any], where: str) -> dict[str, tuple] | None:
    if d is None:
        return None
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise ModuleError(f"{where}.tune: unknown parameter(s) {unknown}; tunable: {sorted(allowed)}")
    return {k: tuple(v) for k, v in d.items()}


def resolve_tune(tune: Mapping[str, Any] | bool | None, default: Mapping[str, tuple], where: str,
                 extra: tuple[str, ...] = ()) -> dict[str, tuple] | None:
    """The `tune=` argument: True = the default space, False/None = frozen, dict = own space."""
    if tune is True:
        return {k: tuple(v) for k, v in default.items()}
    if tune is False or tune is None:
        return None
    out = tune_from_config(tune, {**default, **{k: () for k in extra}}, where)
    for k, v in (out or {}).items():
        if not v:
            raise ModuleError(f"{where}.tune.{k}: needs at least one choice")
    return out
