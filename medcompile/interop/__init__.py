"""Interoperability with DSPy: import DSPy programs, export compiled medcompile programs.

`from_dspy(module)` turns a DSPy program made of `dspy.Predict` / `dspy.ChainOfThought`
(with compiled demos) into a medcompile `Program`; `to_dspy(program)` turns a compiled
program's chosen instruction and exemplars (with rationales) into the equivalent DSPy
predictor. DSPy is imported only when these are called.
"""
from __future__ import annotations

from typing import Any

from .fields import InteropError, answer_key, dspy_inputs, options_text, parse_options


def from_dspy(module: Any, **kwargs: Any) -> Any:
    """See `medcompile.interop.dspy_import.from_dspy`."""
    from .dspy_import import from_dspy as _from

    return _from(module, **kwargs)


def to_dspy(program: Any, **kwargs: Any) -> Any:
    """See `medcompile.interop.dspy_export.to_dspy`."""
    from .dspy_export import to_dspy as _to

    return _to(program, **kwargs)


__all__ = ["from_dspy", "to_dspy", "InteropError", "answer_key", "dspy_inputs", "options_text", "parse_options"]
