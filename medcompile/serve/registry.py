"""The programs a server holds, each paired with the model it runs on.

Everything that can fail (building the model stack, retrieval indexes) is done here,
at start-up, so a bad deployment fails before it takes traffic rather than on the
first request. Programs compiled for the same model share one model stack: one
cache, one meter and one concurrency limit in front of that backend.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Union

from ..lm.base import LM
from ..program.program import Program
from ..program.schema import SCHEMA_VERSION
from .schemas import CompileSummary, DevScore, LMOut, ProgramOut

#: What create_app accepts for models: one LM for every program, LMs by program name,
#: or a factory called once per program.
LMSource = Union[LM, Mapping[str, LM], Callable[[Program], LM], None]


@dataclass(frozen=True)
class ServedProgram:
    program: Program
    lm: LM
    info: ProgramOut

    @property
    def name(self) -> str:
        return self.program.name

    @property
    def inputs(self) -> list[str]:
        return self.program.signature.input_names


def build_registry(programs: Mapping[str, Program], lms: LMSource = None) -> dict[str, ServedProgram]:
    """Pair each program with its LM; `lms=None` builds the model each was compiled for."""
    if not programs:
        raise ValueError("no programs to serve")
    shared: dict[str, LM] = {}
    out: dict[str, ServedProgram] = {}
    for name, program in programs.items():
        if not isinstance(program, Program):
            raise TypeError(f"program {name!r} is a {type(program).__name__}, not a medcompile Program")
        lm = _lm_for(name, program, lms, shared)
        program.prepare()
        out[name] = ServedProgram(program, lm, describe(name, program, lm))
    return out


def _lm_for(name: str, program: Program, lms: LMSource, shared: dict[str, LM]) -> LM:
    if lms is None:
        key = json.dumps({k: (program.lm_settings or {}).get(k) for k in ("spec", "model", "mode")}, sort_keys=True)
        if key not in shared:
            shared[key] = program.resolve_lm(None)
        return shared[key]
    if isinstance(lms, Mapping):
        if name not in lms:
            raise KeyError(f"no model given for program {name!r}")
        return lms[name]
    if hasattr(lms, "complete"):
        return lms  # type: ignore[return-value]
    return lms(program)  # type: ignore[operator]


def describe(name: str, program: Program, lm: LM) -> ProgramOut:
    """What clients may know about a program: no templates, banks or model secrets."""
    settings = program.lm_settings or {}
    return ProgramOut(
        name=name, schema_version=SCHEMA_VERSION, sha256=program.content_hash(),
        signature=program.signature.shorthand(), inputs=program.signature.input_names,
        requires_context="context" in program.signature.input_names,
        calls_per_question=program.calls_per_question(),
        lm=LMOut(model=getattr(lm, "model", None), mode=getattr(lm, "mode", None)),
        compiled_for=LMOut(model=settings.get("model"), mode=settings.get("mode")) if settings else None,
        compile=_compile_summary(program.compile_info),
    )


def _compile_summary(info: Mapping[str, Any] | None) -> CompileSummary | None:
    """A whitelist of compile metadata: study storage URLs and the like stay private."""
    if not info:
        return None
    dev = info.get("dev") if isinstance(info.get("dev"), Mapping) else None
    data = info.get("data") if isinstance(info.get("data"), Mapping) else {}
    train = data.get("train") if isinstance(data.get("train"), Mapping) else {}

    def num(v: Any) -> Any:
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    ci = dev.get("ci95") if dev else None
    return CompileSummary(
        compiler=info.get("compiler") if isinstance(info.get("compiler"), str) else None,
        dev=DevScore(metric=dev.get("metric") if isinstance(dev.get("metric"), str) else None,
                     score=num(dev.get("score")), n=num(dev.get("n")),
                     ci95=[float(x) for x in ci] if isinstance(ci, list) and len(ci) == 2
                     and all(num(x) is not None for x in ci) else None) if dev else None,
        train_n=num(train.get("n")),
        calls_per_question=num(info.get("calls_per_question")),
        chosen_trial=num(info.get("chosen_trial")),
    )
