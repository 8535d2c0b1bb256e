"""The compiler: turn a declared program into a frozen one for a given model."""
from .optimizer import CompileError, CompileOptions, Compiler, optimize
from .trial import accuracy_metric

__all__ = ["optimize", "CompileError", "CompileOptions", "Compiler", "accuracy_metric"]
