"""Turning expected failures into one clear line instead of a traceback."""
from __future__ import annotations

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
    from .resolve import ProgramSourceError

    return (ProgramFileError, DatasetError, CompileError, LMError, ModuleError, QuestionError, SignatureError,
            ProgramSourceError, EvalError, FileNotFoundError, PermissionError, IsADirectoryError)


def run_guarded(fn: Callable[[], int]) -> int:
    try:
        return fn()
    except KeyboardInterrupt:
        _err.print("[yellow]interrupted[/]: finished work is kept (cache and study); rerun to resume")
        return 130
    except expected_errors() as exc:
        _err.print(f"error: {exc}", highlight=False, markup=False, style="bold red")
        return 2


def fail(message: str) -> None:
    _err.print(f"error: {message}", highlight=False, markup=False, style="bold red")
    sys.exit(2)
