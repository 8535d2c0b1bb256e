"""What every module shares: the run context, predictions, seeds and the type registry.

Modules are immutable values. Running one never changes it; tuning one returns a
configured copy. Every module can write itself as a plain JSON-able dict and be
rebuilt from one, which is what makes compiled programs loadable without the code
that declared them. Only the types registered here can be built from JSON: nothing
in a program file names Python code to import.
"""
from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import astuple, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Mapping, Protocol

from ..lm.base import LM, LMRequest, LMResponse
from ..prompts.builder import PromptBuilder
from ..question import Question

if TYPE_CHECKING:
    from ..bank import Bank


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


@dataclass(frozen=True)
class Needs:
    """What one module asks of whoever compiles or runs it (its own needs, not its children's).

    The compiler and `Program` ask modules this instead of checking their types, so a new
    module type (a router, a portfolio) takes part by answering it; `Needs.of(root)` is the
    whole tree's.
    """

    bank: bool = False  # draws few-shot exemplars from a bank: the compile needs a training set
    knn: bool = False  # may look up nearest neighbours: its bank needs embeddings
    rationales: bool = False  # may reason: its exemplars need self-generated rationales
    instruction: bool = False  # follows an instruction the compiler may choose among candidates
    model_calls: bool = False  # calls the model itself

    def __or__(self, other: "Needs") -> "Needs":
        return Needs(*(a or b for a, b in zip(astuple(self), astuple(other))))

    @classmethod
    def of(cls, root: "Module") -> "Needs":
        out = cls()
        for _, m in root.walk():
            out = out | m.needs()
        return out


class BankSource(Protocol):
    """Where the compiler's exemplar banks come from: chain-of-thought exemplars need
    rationales, direct ones do not (see `compile.space.BankChoice`)."""

    def for_predictor(self, cot: bool) -> "Bank": ...


@dataclass(frozen=True)
class BankSlot:
    """An exemplar bank a module holds, and its name in the program file (None: not
    named yet; `Program` names it after the module's path)."""

    name: str | None
    bank: "Bank"


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

    # ---- what the compiler and Program ask of a module --------------------------------
    def needs(self) -> Needs:
        """This module's own needs (banks, rationales, an instruction slot, model calls)."""
        return Needs()

    def bind_banks(self, banks: BankSource) -> "Module":
        """At compile time: a copy holding the exemplar banks it (and its exemplar
        sources) draw from. Called after its children were bound and configured."""
        return self

    def bank_slot(self) -> BankSlot | None:
        """The exemplar bank this module holds, if any, for `Program` to store."""
        return None

    def with_bank_name(self, name: str) -> "Module":
        """A copy whose bank is stored under `name` (only for modules with a bank slot)."""
        return self

    # ---- tuning ---------------------------------------------------------------------
    def inert_params(self, chosen: Mapping[str, Any]) -> set[str]:
        """Choices that cannot change what this module does, given its own chosen values
        (`chosen`, by name; a missing one keeps its current setting): own parameter names,
        or a child's (``"inner.temperature"``, ``"members.1"`` for a whole subtree). The
        compiler neither searches nor reports them."""
        return set()

    def seeded(self, seed: int, *, override: bool = False) -> "Module":
        """A copy whose own random draws use `seed` (an explicit seed is kept unless
        `override`). Only modules that draw random numbers (shuffles, random exemplars)
        have one; see `seed_tree`."""
        return self

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

    def with_expected_calls(self, calls_per_question: float) -> "Module":
        """A copy recording its mean calls per question as measured on dev at compile time.
        Only modules whose cost depends on the question (a portfolio) keep it; others ignore it."""
        return self

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


def seed_tree(root: Module, program_seed: int, *, override: bool = False, path: str = "") -> Module:
    """`root` with each module's randomness derived from the program seed and the module's
    path in the tree, so `--seed` reaches shuffle orders and random exemplars too. Seeds
    already set are kept unless `override` (the compiler overrides: the compile seed
    decides). A tree with nothing to change comes back as the same object."""
    kids = dict(root.children())
    new = {name: seed_tree(child, program_seed, override=override, path=f"{path}.{name}" if path else name)
           for name, child in kids.items()}
    out = root.with_children(new) if any(new[n] is not kids[n] for n in kids) else root
    return out.seeded(derive_seed(program_seed, "module", path), override=override)


def tune_to_config(tune: Mapping[str, tuple[Any, ...]] | None) -> dict[str, list[Any]] | None:
    return None if tune is None else {k: list(v) for k, v in sorted(tune.items())}


def with_tune(d: dict[str, Any], tune: Mapping[str, tuple[Any, ...]] | None) -> dict[str, Any]:
    """A module's config plus its open choices, if it still has any (frozen ones carry none)."""
    if tune is not None:
        d["tune"] = tune_to_config(tune)
    return d


def check_int(where: str, value: Any, lo: int, hi: int | None = None) -> None:
    """Refuse anything but an integer (not a bool) within lo..hi, naming the setting."""
    if not isinstance(value, int) or isinstance(value, bool) or value < lo or (hi is not None and value > hi):
        bounds = f"within {lo}..{hi}" if hi is not None else f"of at least {lo}"
        raise ModuleError(f"{where} must be an integer {bounds}, got {value!r}")


MAX_TEMPERATURE = 2.0


def check_temperature(where: str, value: Any) -> None:
    """Sampling temperatures are numbers within 0..2 (what providers accept)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not 0.0 <= float(value) <= MAX_TEMPERATURE:
        raise ModuleError(f"{where} must be within 0..{MAX_TEMPERATURE:g}, got {value!r}")


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
