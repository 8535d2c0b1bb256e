"""What the shell's PROGRAM and data arguments name.

PROGRAM is a ready-made name (``medprompt``), a ``.py`` file defining
``build(signature=None) -> Program`` (your own code, run because you asked), or a
program ``.json`` file (data only, never executed).
"""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any, Iterable

from ..program.program import Program


class ProgramSourceError(ValueError):
    """PROGRAM names nothing we can build."""


def resolve_program(spec: str, signature: Any = None) -> Program:
    p = Path(spec)
    if p.suffix == ".json":
        from ..program.io import load

        return load(p)
    if p.suffix == ".py":
        if not p.is_file():
            raise ProgramSourceError(f"program file {p} not found")
        mod_spec = importlib.util.spec_from_file_location(f"medcompile_user_{p.stem}", p)
        if mod_spec is None or mod_spec.loader is None:
            raise ProgramSourceError(f"cannot import {p}")
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
        return _build(module, str(p), signature)
    from programs import READY_MADE

    if spec not in READY_MADE:
        raise ProgramSourceError(f"unknown program {spec!r}: use one of {list(READY_MADE)}, a .py file or a .json file")
    return _build(importlib.import_module(f"programs.{spec}"), spec, signature)


def for_questions(spec: str, program: Program, questions: Iterable[Any]) -> Program:
    """PROGRAM as it should meet these questions. Passages reach a prompt only through a
    signature that declares them, so a ready-made or .py program is rebuilt with the
    context signature when any question carries a passage; a compiled .json program
    keeps the signature it was compiled with."""
    if Path(spec).suffix == ".json" or not any(q.context for q in questions):
        return program
    from ..signatures import MCQ_WITH_CONTEXT

    return resolve_program(spec, signature=MCQ_WITH_CONTEXT)


def _build(module: Any, where: str, signature: Any) -> Program:
    build = getattr(module, "build", None)
    if not callable(build):
        raise ProgramSourceError(f"{where} must define build(signature=None) returning a medcompile Program")
    prog = build(signature)
    if not isinstance(prog, Program):
        from ..modules.base import Module

        if isinstance(prog, Module):
            return Program(prog, name=Path(where).stem)
        raise ProgramSourceError(f"{where}: build() returned {type(prog).__name__}, not a Program")
    return prog
