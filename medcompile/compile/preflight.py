"""What is checked before a compile spends anything: the program, the data, the metric.

A compile that fails at the end has wasted its whole budget, so everything that can be
known without the model is checked first. The program is asked what it needs
(`Module.needs()`), never what type it is; then the freeze is rehearsed: every single
choice of the search space is applied with stand-in exemplar banks, and the result is
written and validated as the program file would be. A program that could not be saved,
or whose exemplar sources nothing would fill, is refused with 0 model calls.

The metric is part of the compile's identity (the study it resumes): it is identified by
its name and a fingerprint of its code, so two different lambdas never share a study.
"""
from __future__ import annotations

import hashlib
import json
import types
from typing import Any, Callable, Sequence

from ..bank import Bank
from ..exemplar import Exemplar
from ..modules.base import Module, ModuleError, Needs
from ..program.program import Program
from ..question import Question
from .space import BankChoice, Param, apply, collect_space


class CompileError(RuntimeError):
    """A compile cannot go on (bad input, budget too small); work done so far is kept."""


def backend_failed(exc: Exception, where: str, kept: str) -> CompileError:
    """The error for a model failure that stops the compile. A configuration error (unknown
    model, missing key, no server) names its cause first: retrying will not help, so the
    resume hint comes last; an outage says where it struck and that rerunning resumes."""
    from ..lm.base import LMConfigError

    if isinstance(exc, LMConfigError):
        return CompileError(f"{exc} (the compile stopped {where}; {kept})")
    return CompileError(f"model backend failed {where}: {exc}. {kept}; rerun the same command to resume.")


def check_data(program: Program, train: Sequence[Question], dev: Sequence[Question]) -> None:
    """The data fits the program: labelled, disjoint, and shown as the signature says."""
    if not dev:
        raise CompileError("the dev set is empty: the optimizer needs questions to score configurations on")
    if any(q.answer is None for q in dev):
        raise CompileError("every dev question needs an answer (gold label) to be scored")
    if any(q.answer is None for q in train):
        raise CompileError("every training question needs an answer to serve as an exemplar")
    dev_ids = {q.id for q in dev}
    overlap = [q.id for q in train if q.id in dev_ids and any(d.question == q.question for d in dev)]
    if overlap:
        raise CompileError(f"{len(overlap)} dev question(s) are also in the training set (e.g. id {overlap[0]!r}): "
                           "scores would be inflated")
    with_context = next((q for q in (*dev, *train) if q.context), None)
    if with_context is not None and "context" not in program.signature.input_names:
        raise CompileError(
            f"question {with_context.id!r} has a context passage, but the program's signature "
            f"({program.signature.shorthand()!r}) has no 'context' input, so the model would never see it: "
            "declare it, e.g. SelfCoT('context, question, options -> answer')")


def check_program(program: Program, train: Sequence[Question]) -> None:
    """Refuse a program that cannot be compiled, before any model call."""
    root = program.root
    needs = Needs.of(root)
    if not needs.model_calls:
        raise CompileError("the program makes no model calls (it has no Predict or SelfCoT): nothing to compile")
    if needs.bank and not train:
        raise CompileError("the program retrieves exemplars but the training set is empty")
    stand_in = _stand_in_banks(train)
    for params in _rehearsals(collect_space(root, ())):
        where = f" with {params}" if params else ""
        try:
            candidate = apply(root, params, stand_in)
        except (ModuleError, ValueError) as exc:
            raise CompileError(f"the program cannot be configured{where}: {exc}") from None
        for path, m in candidate.walk():
            if m.needs().bank and m.bank_slot() is None:
                raise CompileError(f"{m.type_name} at {path or 'the root'} draws exemplars, but no predictor "
                                   "gives it a bank: use it as a predictor's demos=")
        _rehearse_save(program, candidate, where)


def _rehearsals(space: list[Param]) -> list[dict[str, Any]]:
    """The declared values, then every single choice on its own: enough to meet each
    module in each of its shapes (k=0 drops a bank, CoT switches banks) at linear cost."""
    out: list[dict[str, Any]] = [{}]
    for p in space:
        out.extend({p.key: c} for c in p.choices)
    return out


def _stand_in_banks(train: Sequence[Question]) -> BankChoice:
    """Two small, different banks in place of the real ones (which need model calls)."""
    sample = list(train[:2])
    return BankChoice(full=Bank([Exemplar(q) for q in sample]),
                      cot=Bank([Exemplar(q, "(a self-generated rationale)") for q in sample]))


def _rehearse_save(program: Program, candidate: Module, where: str) -> None:
    from ..program.io import ProgramFileError, dumps, validate_dict

    try:
        frozen = Program(candidate, name=program.name, signature=program.signature, templates=program.templates,
                         seed=program.seed)
        validate_dict(json.loads(dumps(frozen.to_dict())), where="the compiled program")
    except (ModuleError, ProgramFileError, ValueError) as exc:
        raise CompileError(f"the compiled program could not be saved{where}: {exc}") from None


# ---- the metric's identity -------------------------------------------------------------------------------------
def metric_identity(metric: Callable[..., float] | None) -> dict[str, str]:
    """A name (for reports) and a fingerprint of what the metric computes.

    A function is fingerprinted by its code (constants, names, nested code), defaults,
    captured values and the plain values of globals it reads. Anything else needs an
    explicit `metric_id` attribute: its behaviour cannot be read off it.
    """
    from .trial import accuracy_metric

    if metric is None or metric is accuracy_metric:
        return {"name": "accuracy", "id": "accuracy"}
    explicit = getattr(metric, "metric_id", None)
    if isinstance(explicit, str) and explicit:
        return {"name": explicit, "id": f"named:{explicit}"}
    if not isinstance(metric, types.FunctionType):
        raise CompileError(f"cannot identify the metric {metric!r}: a metric that is not a plain function needs a "
                           "`metric_id` attribute (a string naming what it computes), so that a different metric "
                           "never resumes its study")
    h = hashlib.sha256()
    _digest_code(metric.__code__, h)
    captured = [c.cell_contents for c in metric.__closure__ or ()]
    read_globals = [(n, metric.__globals__[n]) for n in _all_names(metric.__code__) if n in metric.__globals__]
    values = [("defaults", metric.__defaults__), ("kwdefaults", metric.__kwdefaults__), ("closure", captured),
              ("globals", [(n, v) for n, v in read_globals if _is_plain(v)])]
    for label, v in values:
        text = _stable_repr(v)
        if " at 0x" in text:
            raise CompileError(f"cannot fingerprint the metric {metric.__qualname__!r}: its {label} hold an object "
                               "without a stable value; set `metric_id` on it (a string naming what it computes)")
        h.update(f"{label}={text}".encode())
    name = metric.__qualname__
    return {"name": name, "id": f"{metric.__module__}.{name}:{h.hexdigest()[:16]}"}


def _digest_code(code: types.CodeType, h: Any) -> None:
    h.update(code.co_code)
    h.update(repr((code.co_names, code.co_varnames, code.co_argcount)).encode())
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            _digest_code(c, h)
        else:
            h.update(repr(c).encode())


def _all_names(code: types.CodeType) -> list[str]:
    names = list(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names += _all_names(c)
    return sorted(set(names))


def _stable_repr(v: Any) -> str:
    """repr, with sets sorted (their order changes from process to process)."""
    if isinstance(v, (set, frozenset)):
        return "{" + ", ".join(sorted(_stable_repr(x) for x in v)) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_stable_repr(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_stable_repr(k)}: {_stable_repr(x)}" for k, x in v.items()) + "}"
    return repr(v)


def _is_plain(v: Any) -> bool:
    """Values whose repr is their identity (a threshold, a label set), not modules or functions."""
    if isinstance(v, (bool, int, float, str, bytes, type(None))):
        return True
    if isinstance(v, (tuple, list, frozenset, set)):
        return all(_is_plain(x) for x in v)
    if isinstance(v, dict):
        return all(_is_plain(k) and _is_plain(x) for k, x in v.items())
    return False
