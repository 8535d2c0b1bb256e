"""`medcompile validate PROGRAM.json`: check a program file without running it."""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="validate a program file against the schema", description=__doc__)
    p.add_argument("program", metavar="PROGRAM.json",
                   help="compiled program file to check (size, JSON, schema, templates); prints a summary")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ...program.io import load
    from ...program.schema import SCHEMA_VERSION

    prog = load(args.program)
    info = {"name": prog.name, "schema_version": SCHEMA_VERSION, "sha256": prog.content_hash(),
            "signature": prog.signature.shorthand(), "calls_per_question": prog.calls_per_question(),
            "lm": (prog.lm_settings or {}).get("model"), "dev": (prog.compile_info or {}).get("dev")}
    print(json.dumps(info, indent=1))
    return 0
