"""Turning expected failures into one clear line instead of a traceback.

When a run stops because the model can never answer as configured (`LMConfigError`:
unknown model, missing key, nothing listening at --api-base), that cause comes first,
whatever layer wrapped it (a compile or an evaluation that stopped); what was kept
and how to resume follows on the next line.
"""
from __future__ import annotations

import os
import sys
from typing import Callable

from rich.console import Console

_err = Console(stderr=True, soft_wrap=True)


def expected_errors() -> tuple[type[BaseException], ...]:
    from ..compile.optimizer import CompileError
    from ..data.validate import DatasetError
    from ..evaluate.runner import EvalError
    from ..lm.base import LMError
    from ..modules.base import ModuleError
    from ..program.io import ProgramFileError
    from ..question import QuestionError
    from ..signatures import SignatureError
    from .model_args import ModelSpecError
    from .resolve import ProgramSourceError

    return (ProgramFileError, DatasetError, CompileError, LMError, ModuleError, QuestionError, SignatureError,
            ProgramSourceError, EvalError, ModelSpecError, FileNotFoundError, PermissionError, IsADirectoryError)


def config_cause(exc: BaseException) -> BaseException | None:
    """The LMConfigError `exc` is, or was raised from, if any."""
    from ..lm.base import LMConfigError

    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        if isinstance(cur, LMConfigError):
            return cur
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return None


def describe(exc: BaseException) -> list[str]:
    """The lines to print for an expected error: the cause first, then what was kept."""
    cause = config_cause(exc)
    if cause is None or cause is exc:
        return [f"error: {exc}"]
    outer, inner = str(exc), str(cause)
    at = outer.find(inner)
    tail = outer[at + len(inner):].lstrip(" .;") if at >= 0 else ""
    return [f"error: {inner}"] + ([f"  ({tail.rstrip()})"] if tail else [])


def run_guarded(fn: Callable[[], int]) -> int:
    try:
        return fn()
    except BrokenPipeError:  # `medcompile ... | head`: the reader has gone, nothing to report
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail again
        return 141
    except KeyboardInterrupt:
        _err.print("[yellow]interrupted[/]: finished work is kept (cache and study); rerun to resume")
        return 130
    except expected_errors() as exc:
        for line in describe(exc):
            _err.print(line, highlight=False, markup=False, style="bold red" if line.startswith("error") else None)
        return 2


def fail(message: str) -> None:
    _err.print(f"error: {message}", highlight=False, markup=False, style="bold red")
    sys.exit(2)
