"""medcompile: compile medical multiple-choice prompt programs for a model, then run, evaluate and serve them.

Typical use:
  medcompile show zero_shot --input q.jsonl                         # the exact prompt, no model needed
  medcompile optimize medprompt --train medqa_us4 --train-split bank \\
      --dev medqa_us4 --dev-split dev --dev-limit 32 --lm local --budget 600 --out medprompt.json
  medcompile run medprompt.json --input q.jsonl --output answers.jsonl
  medcompile eval medprompt.json --data medqa_us4 --split test --limit 40 --out results/
  medcompile serve medprompt.json --port 8000

Every command that calls a model takes the same model options (--lm, --api-base, --mode,
--concurrency, --cache/--no-cache, --cache-dir). Try any command offline with --lm sim
(a simulated model) or --lm echo (replies with its prompt). `medcompile COMMAND --help`
lists each command's options with their defaults.
"""
from __future__ import annotations

import importlib
import sys
from typing import Sequence

from .argtypes import Parser

from ..offline import keep_litellm_offline

keep_litellm_offline()

#: Subcommand modules in cli/commands/; each defines `register(subparsers)` and sets `func`.
COMMANDS = ("run", "optimize", "eval", "compare", "ablate", "show", "serve", "validate", "schema", "demo")


def build_parser() -> Parser:
    from .. import __version__

    parser = Parser(prog="medcompile", description=__doc__)
    parser.add_argument("--version", action="version", version=f"medcompile {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
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
