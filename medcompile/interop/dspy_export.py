"""Take a compiled medcompile program out to DSPy.

The export is the program's *predictor*: its chosen instruction, whether it reasons,
its temperature and its exemplars with their self-generated rationales, as a
`dspy.Predict` or `dspy.ChainOfThought` whose signature carries the instruction and
whose `demos` are `dspy.Example`s (``question``, ``options`` as ``A. text`` lines,
``answer`` = the option key, and ``reasoning`` for chain of thought). kNN exemplars
(different ones per question) become `KNNFewShotProgram`, a small `dspy.Module` that
looks up the nearest exemplars in the compiled bank and passes them as ``demos=`` to
the same predictor on every call.

What DSPy has no module for is not exported, and a warning says so: choice-shuffle
ensembles, votes, ensemble refinement and portfolio routing (run those with
medcompile). A program with several different predictors (e.g. a portfolio) needs
`predictor=` to say which one to export.
"""
from __future__ import annotations

import warnings
from typing import Any

from ..bank import Bank
from ..exemplar import Exemplar
from ..modules.predict import Predict
from ..program.program import Program
from ..question import Question
from .fields import InteropError, dspy_inputs, options_text

ANSWER_DESC = "the key of the single best option (for example: A)"
OPTIONS_DESC = "the answer options, one per line as 'KEY. text'"


def _dspy() -> Any:
    import dspy

    return dspy


def predictors(program: Program) -> list[tuple[str, Predict]]:
    """(path, predictor) for every model-calling module of the program, in graph order."""
    return [(path, m) for path, m in program.root.walk() if isinstance(m, Predict)]


def to_dspy(program: Program, *, predictor: str | None = None) -> Any:
    """The DSPy program equivalent to `program`'s (chosen) predictor; see the module docstring."""
    dspy = _dspy()
    found = predictors(program)
    if not found:
        raise InteropError(f"program {program.name!r} has no predictor to export")
    if predictor is not None:
        chosen = [(p, m) for p, m in found if p == predictor]
        if not chosen:
            raise InteropError(f"no predictor at {predictor!r}; predictors: {[p for p, _ in found]}")
    else:
        distinct = {_identity(m): (p, m) for p, m in found}
        if len(distinct) > 1:
            raise InteropError(f"program {program.name!r} has {len(distinct)} different predictors "
                               f"({[p for p, _ in found]}); choose one with predictor=PATH")
        chosen = [found[0]]
    path, pred = chosen[0]
    dropped = sorted({m.type_name for _, m in program.root.walk()} - {"Predict", "SelfCoT", "Retrieve"})
    if dropped:
        warnings.warn(f"exporting only the predictor at {path or '(root)'}: DSPy has no equivalent of "
                      f"{', '.join(dropped)} (run the full program with medcompile)", stacklevel=2)
    module = _predictor_module(pred, dspy)
    retrieve = pred.demos
    if retrieve is None or retrieve.k == 0:
        return module
    if retrieve.bank is None:
        raise InteropError(f"predictor {path or '(root)'} has no exemplar bank: export a compiled program")
    if retrieve.strategy == "knn":
        return KNNFewShotProgram(module, retrieve.bank, retrieve.k, cot=pred.cot)
    _inner(module, dspy).demos = [to_example(e, pred.cot) for e in retrieve.static_demos()]
    return module


def _identity(m: Predict) -> str:
    import json

    return json.dumps(m.to_config(), sort_keys=True)


def _inner(module: Any, dspy: Any) -> Any:
    return module.predict if isinstance(module, dspy.ChainOfThought) else module


def signature_for(pred: Predict) -> Any:
    """A DSPy signature class with the predictor's inputs, an `answer` output and its instruction."""
    dspy = _dspy()
    fields: dict[str, tuple[type, Any]] = {}
    for f in pred.signature.inputs:
        desc = OPTIONS_DESC if f.name == "options" else (f.desc or f"the {f.name}")
        fields[f.name] = (str, dspy.InputField(desc=desc))
    fields["answer"] = (str, dspy.OutputField(desc=ANSWER_DESC))
    return dspy.make_signature(fields, pred.instruction, signature_name="MedicalMCQ")


def _predictor_module(pred: Predict, dspy: Any) -> Any:
    sig = signature_for(pred)
    config: dict[str, Any] = {}
    if pred.temperature:
        config["temperature"] = float(pred.temperature)
    if pred.max_tokens:
        config["max_tokens"] = int(pred.max_tokens)
    return dspy.ChainOfThought(sig, **config) if pred.cot else dspy.Predict(sig, **config)


def to_example(e: Exemplar, cot: bool) -> Any:
    """One exemplar as a DSPy demo (inputs marked, rationale as `reasoning` for CoT)."""
    dspy = _dspy()
    q = e.question
    d: dict[str, Any] = {"id": q.id, "question": q.question, "options": options_text(q.options), "answer": q.answer}
    inputs = ["question", "options"]
    if q.context:
        d["context"] = q.context
        inputs.append("context")
    if cot and e.rationale:
        d["reasoning"] = e.rationale
    return dspy.Example(**d).with_inputs(*inputs)


def _base_module() -> type:
    return _dspy().Module


class KNNFewShotProgram(_base_module()):  # type: ignore[misc]
    """A DSPy module: the k nearest exemplars of a medcompile bank as demos for each call."""

    def __init__(self, predictor: Any, bank: Bank, k: int, *, cot: bool):
        super().__init__()
        self.predictor = predictor
        self.bank = bank
        self.k = int(k)
        self.cot = cot

    def demos_for(self, question: str, options: Any, context: str | None = None) -> list[Any]:
        from .fields import parse_options

        q = Question("dspy-query", question, parse_options(options, "query"), context=context)
        return [to_example(e, self.cot) for e in self.bank.nearest(q, self.k)]

    def forward(self, question: str, options: Any, context: str | None = None, **kwargs: Any) -> Any:
        inputs = {"question": question, "options": options if isinstance(options, str) else options_text(options)}
        if context is not None:
            inputs["context"] = context
        return self.predictor(**inputs, demos=self.demos_for(question, options, context), **kwargs)


__all__ = ["to_dspy", "to_example", "signature_for", "predictors", "KNNFewShotProgram", "dspy_inputs"]
