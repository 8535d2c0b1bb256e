"""`medcompile` command line: one subcommand per module in `cli/commands/`."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from ..offline import keep_litellm_offline

keep_litellm_offline()

#: Subcommand modules; each defines `register(subparsers)` and sets `func` on its parser.
COMMANDS = ("run", "optimize", "eval", "compare", "ablate", "serve", "validate", "schema", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medcompile", description=__doc__)
    parser.add_argument("--version", action="version", version="medcompile 0.1.0")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"medcompile.cli.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"medcompile.cli.commands.{name}":
                continue  # subcommand not built into this version
            raise
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .errors import run_guarded

    args = build_parser().parse_args(argv)
    return run_guarded(lambda: int(args.func(args) or 0))


if __name__ == "__main__":
    sys.exit(main())
