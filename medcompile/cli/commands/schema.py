"""`medcompile schema`: print the JSON Schema of program files."""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schema", help="print the program file JSON Schema", description=__doc__)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ...program.schema import json_schema

    print(json.dumps(json_schema(), indent=1, sort_keys=True))
    return 0
