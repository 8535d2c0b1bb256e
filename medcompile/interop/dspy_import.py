"""Bring a DSPy program into medcompile.

What maps (and nothing else is accepted):

| DSPy | medcompile |
|---|---|
| `dspy.Predict(sig)` | `Predict(sig)` (direct answer) |
| `dspy.ChainOfThought(sig)` | `SelfCoT(sig)` (reasoning on) |
| signature inputs `question`, `options`, `context` (or renamed with `fields=`) | the same `Signature` inputs |
| signature outputs `answer` (+ CoT's `reasoning`) | `answer` (one option key) |
| signature instructions | the predictor's instruction (DSPy's auto-generated "Given the fields ..." becomes medcompile's default) |
| compiled `demos` (LabeledFewShot, BootstrapFewShot, ...) | an exemplar bank shown in full (`Retrieve(k=len(demos), strategy="random")`); a demo's `reasoning`/`rationale` becomes the exemplar's rationale |
| `config["temperature"]` | `temperature` |
| a module exported by `to_dspy` with kNN exemplars | `Retrieve(strategy="knn")` over the same bank |
| a user module holding several predictors | refused, unless `combine="vote"` says they form a majority vote |

Refused with a clear error: other DSPy modules (ReAct, ProgramOfThought, BestOfN, Refine,
MultiChainComparison, CodeAct, ...), fields that do not map onto question/options/context ->
answer, extra outputs, demos without options or with an answer that is not an option, and
several predictors without `combine`. A user module's own `forward()` code is never imported:
only its predictors, their signatures and demos.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from ..bank import Bank
from ..exemplar import Exemplar
from ..modules.base import Module
from ..modules.predict import Predict, SelfCoT
from ..modules.retrieve import Retrieve
from ..modules.vote import Vote
from ..program.program import Program
from ..signatures import DEFAULT_INSTRUCTION, Field, Signature, SignatureError
from .fields import INPUTS, InteropError, question_from_values

_DSPY_DEFAULT = re.compile(r"^Given the fields .+, produce the fields .+\.$", re.S)
_RATIONALE_NAMES = ("reasoning", "rationale")


def from_dspy(module: Any, *, name: str = "dspy_program", fields: Mapping[str, str] | None = None,
              combine: str | None = None) -> Program:
    """A runnable, frozen medcompile `Program` equivalent to `module` (see the module docstring).

    `fields` renames DSPy field names onto medcompile's (e.g. ``{"stem": "question",
    "choices": "options", "label": "answer"}``). The result can be run, saved, or compiled
    further with `medcompile.optimize` (which then builds exemplars from its own train set).
    """
    dspy = _dspy()
    rename = dict(fields or {})
    units = _units(module, dspy)
    if not units:
        raise InteropError(f"{type(module).__name__} holds no dspy.Predict or dspy.ChainOfThought to import")
    members = [_import_unit(path, unit, rename, dspy, i if len(units) > 1 else None) for i, (path, unit) in enumerate(units)]
    if len(members) == 1:
        root: Module = members[0]
    elif combine == "vote":
        root = Vote(*members)
    else:
        paths = ", ".join(p or "(top)" for p, _ in units)
        raise InteropError(f"{type(module).__name__} holds {len(units)} predictors ({paths}); its forward() code "
                           "cannot be imported, so say how they combine: combine='vote' for a majority vote, "
                           "or import one of them")
    return Program(root, name=name)


def _dspy() -> Any:
    try:
        import dspy
    except ImportError as exc:  # pragma: no cover - dspy is a dependency
        raise InteropError("DSPy interop needs the 'dspy' package (pip install dspy-ai)") from exc
    return dspy


def _units(module: Any, dspy: Any) -> list[tuple[str, Any]]:
    """The importable predictors in `module`, refusing any DSPy module type that has no equivalent."""
    from .dspy_export import KNNFewShotProgram

    if not isinstance(module, dspy.Module if hasattr(dspy, "Module") else object):
        raise InteropError(f"expected a dspy.Module (Predict, ChainOfThought or a module holding them), "
                           f"got {type(module).__name__}")
    units: list[tuple[str, Any]] = []
    inside: list[str] = []
    for raw, sub in module.named_sub_modules():
        if any(raw.startswith(p + ".") or raw.startswith(p + "[") for p in inside):
            continue  # the Predict inside a ChainOfThought (or inside our kNN wrapper)
        path = "" if raw == "self" else raw.removeprefix("self.")
        if isinstance(sub, (dspy.ChainOfThought, KNNFewShotProgram)):
            units.append((path, sub))
            inside.append(raw)
        elif isinstance(sub, dspy.Predict):
            units.append((path, sub))
        elif type(sub).__module__.split(".")[0] == "dspy" and type(sub).__name__ != "Module":
            raise InteropError(f"{path or 'the program'} is a dspy.{type(sub).__name__}, which medcompile cannot "
                               "import: only dspy.Predict and dspy.ChainOfThought map onto medcompile modules")
    return units


def _import_unit(path: str, unit: Any, rename: dict[str, str], dspy: Any, index: int | None) -> Predict:
    from .dspy_export import KNNFewShotProgram

    where = f"predictor {path!r}" if path else "the predictor"
    knn = unit if isinstance(unit, KNNFewShotProgram) else None
    if knn is not None:
        unit = knn.predictor
    cot = isinstance(unit, dspy.ChainOfThought)
    predict = unit.predict if cot else unit
    sig, names = _signature(predict.signature, rename, cot, where)
    config = dict(getattr(predict, "config", {}) or {})
    unknown_config = sorted(set(config) - {"temperature", "max_tokens"})
    if unknown_config:
        raise InteropError(f"{where}: config {unknown_config} has no medcompile equivalent (only temperature, max_tokens)")
    temperature = float(config.get("temperature", 0.0))
    cls = SelfCoT if cot else Predict
    bank_name = f"dspy_{index}" if index is not None else "bank"
    if knn is not None:
        demos: Retrieve | None = Retrieve(k=knn.k, strategy="knn", bank=knn.bank, tune=False, bank_name=bank_name)
    else:
        exemplars = [_exemplar(d, names, f"{where} demo {i}") for i, d in enumerate(predict.demos or [])]
        demos = _shown_in_order(exemplars, bank_name) if exemplars else None
    try:
        return cls(sig, demos=demos, cot=cot, temperature=temperature, max_tokens=config.get("max_tokens"), tune=False)
    except ValueError as exc:
        raise InteropError(f"{where}: {exc}") from None


def _shown_in_order(exemplars: list[Exemplar], bank_name: str) -> Retrieve:
    """All demos, shown in DSPy's order: Retrieve shows a seeded permutation of its bank, so the
    bank is stored in the inverse permutation (a round trip then gives back the same demo list)."""
    probe = Retrieve(k=len(exemplars), strategy="random", bank=Bank(exemplars), seed=0, tune=False)
    position = {id(e): i for i, e in enumerate(exemplars)}
    stored: list[Exemplar] = list(exemplars)
    for slot, shown in enumerate(probe.static_demos()):
        stored[position[id(shown)]] = exemplars[slot]
    return Retrieve(k=len(exemplars), strategy="random", bank=Bank(stored), seed=0, tune=False, bank_name=bank_name)


def _signature(dsig: Any, rename: dict[str, str], cot: bool, where: str) -> tuple[Signature, dict[str, str]]:
    """medcompile's signature, and the map medcompile name -> DSPy field name."""
    names: dict[str, str] = {}
    ins, outs = [], []
    for dname in dsig.input_fields:
        mc = rename.get(dname, dname)
        if mc not in INPUTS:
            raise InteropError(f"{where}: input field {dname!r} does not map onto medcompile's inputs {list(INPUTS)}; "
                               f"rename it with fields={{{dname!r}: 'question' | 'options' | 'context'}}")
        names[mc] = dname
        ins.append(mc)
    for dname in dsig.output_fields:
        mc = rename.get(dname, dname)
        if cot and mc in _RATIONALE_NAMES:
            names["reasoning"] = dname
            continue
        if mc != "answer":
            raise InteropError(f"{where}: output field {dname!r} has no medcompile equivalent: a medcompile "
                               "program outputs one answer (an option key)"
                               + ("" if cot else ", plus reasoning for chain of thought")
                               + f"; rename it with fields={{{dname!r}: 'answer'}} if it is the answer")
        names["answer"] = dname
        outs.append(mc)
    instruction = (dsig.instructions or "").strip()
    if not instruction or _DSPY_DEFAULT.match(instruction):
        instruction = DEFAULT_INSTRUCTION
    try:
        sig = Signature(tuple(Field(n, "options" if n == "options" else "text") for n in ins),
                        tuple(Field(n, "choice") for n in outs), instruction)
    except SignatureError as exc:
        raise InteropError(f"{where}: {exc}") from None
    return sig, names


def _exemplar(demo: Any, names: Mapping[str, str], where: str) -> Exemplar:
    raw = demo.toDict() if hasattr(demo, "toDict") else dict(demo)
    values = {mc: raw.get(dname) for mc, dname in names.items() if dname in raw}
    if "id" in raw and isinstance(raw["id"], str):
        values["id"] = raw["id"]
    q = question_from_values(values, where, need_answer=True)
    rationale = values.get("reasoning")
    return Exemplar(q, str(rationale).strip() if rationale else None)
