"""Argument types and the help layout every subcommand shares."""
from __future__ import annotations

import argparse
from typing import Any


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default, except where there is nothing to show (None, False),
    and keeps descriptions' own line breaks (they hold examples)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS \
                or "%(default)" in help_text:
            return help_text
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            return help_text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return help_text + " (default: %(default)s)"
        return help_text


class Parser(argparse.ArgumentParser):
    """An ArgumentParser using `HelpFormatter` unless told otherwise (subparsers too)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        kw.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kw)


def _whole(text: str, minimum: int, expected: str = "a whole number") -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}" if minimum == 1
                                         else f"must be {minimum} or more, got {value}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (counts: --concurrency, --limit, --budget ...)."""
    return _whole(text, 1)


def non_negative_int(text: str) -> int:
    """A whole number >= 0 (0 turns an optional stage off)."""
    return _whole(text, 0)


def rounds_or_auto(text: str) -> int | None:
    """A whole number >= 0, or "auto" (None: the compile decides from its budget)."""
    return None if text.strip().lower() == "auto" else _whole(text, 0, "a whole number or 'auto'")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value
