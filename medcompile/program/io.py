"""Reading and writing program files.

Writing is canonical (sorted keys, fixed indentation, no NaN), so the same program
always gives the same bytes, and atomic. Reading checks, in order: size, JSON syntax
and nesting depth, the schema id and version (a newer file gets a clear "upgrade"
message), the full schema, the templates, and only then builds modules from the
fixed registry of module types. Nothing read from a file is imported, evaluated or
unpickled.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

from pydantic import ValidationError

from ..atomic import write_text_atomic
from ..bank import Bank
from ..modules.base import ModuleError, Resolver
from ..prompts.templates import TemplateError
from ..signatures import Signature, SignatureError
from .program import Program
from .schema import MAX_DEPTH, READABLE_VERSIONS, SCHEMA_ID, SCHEMA_VERSION, ProgramSpec, upgrade

MAX_FILE_BYTES = 512 * 1024 * 1024


class ProgramFileError(ValueError):
    """A program file cannot be loaded; the message names the field and the problem."""


def dumps(d: Mapping[str, Any]) -> str:
    return json.dumps(d, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def program_to_dict(p: Program) -> dict[str, Any]:
    banks = p.banks()
    d: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "name": p.name,
        "signature": p.signature.to_dict(),
        "templates": dict(sorted(p.templates.items())),
        "graph": p.root.to_config(),
        "banks": {name: bank.to_config() for name, bank in sorted(banks.items())},
        "seed": p.seed,
    }
    if p.lm_settings is not None:
        d["lm"] = p.lm_settings
    if p.compile_info is not None:
        d["compile"] = p.compile_info
    return d


def save(p: Program, path: str | os.PathLike[str]) -> None:
    text = dumps(p.to_dict())
    validate_dict(json.loads(text), where=str(path))  # never write a file we would refuse to read
    write_text_atomic(path, text)


def load(path: str | os.PathLike[str]) -> Program:
    """Load a compiled (or declared) program from its JSON file."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise ProgramFileError(f"{p}: no such program file") from None
    if size > MAX_FILE_BYTES:
        raise ProgramFileError(f"{p}: file is {size} bytes, over the {MAX_FILE_BYTES} byte limit")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ProgramFileError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return loads(text, where=str(p))


def loads(text: str, where: str = "<program>") -> Program:
    if len(text) > MAX_FILE_BYTES:
        raise ProgramFileError(f"{where}: program text is over the {MAX_FILE_BYTES} byte limit")
    _check_depth(text, where)
    try:
        raw = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ProgramFileError(f"{where}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:
        raise ProgramFileError(f"{where}: not valid JSON: {exc}") from None
    return from_dict(raw, where)


def from_dict(raw: Any, where: str = "<program>") -> Program:
    validate_dict(raw, where)
    raw = upgrade(raw)  # an older version's dict, as the current version
    try:
        banks = {name: Bank.from_config(b) for name, b in raw["banks"].items()}
        root = Resolver(banks, MAX_DEPTH).build(raw["graph"])
        return Program(root, name=raw["name"], signature=Signature.from_dict(raw["signature"]),
                       templates=raw["templates"], lm=raw.get("lm"), compile_info=raw.get("compile"),
                       seed=raw["seed"])
    except (ModuleError, SignatureError, TemplateError, ValueError, KeyError) as exc:
        raise ProgramFileError(f"{where}: {exc}") from None


def validate_dict(raw: Any, where: str) -> ProgramSpec:
    if not isinstance(raw, dict):
        raise ProgramFileError(f"{where}: a program file must hold a JSON object, not {type(raw).__name__}")
    if raw.get("schema") != SCHEMA_ID:
        raise ProgramFileError(f"{where}: field 'schema' must be {SCHEMA_ID!r} (is this a medcompile program?)")
    version = raw.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise ProgramFileError(
            f"{where}: field 'schema_version' is {version}, written by a newer medcompile; "
            f"this version reads schema_version {SCHEMA_VERSION}. Upgrade medcompile to load it."
        )
    if version not in READABLE_VERSIONS or type(version) is not int:  # not true, not 1.0
        raise ProgramFileError(f"{where}: field 'schema_version' must be an integer in {list(READABLE_VERSIONS)}, "
                               f"got {version!r}")
    raw = upgrade(raw)
    try:
        spec = ProgramSpec.model_validate(raw)
    except ValidationError as exc:
        raise ProgramFileError(f"{where}: invalid program file:\n{_format_errors(exc)}") from None
    try:  # open-ended sections (compile, lm, embedder) must still be writable, hashable JSON
        json.dumps(raw, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except ValueError as exc:  # an overflowing number like 1e999 (inf), or an unpaired surrogate
        raise ProgramFileError(f"{where}: holds a value that is not portable JSON ({exc}); numbers must be "
                               "finite and text valid Unicode") from None
    return spec


def _format_errors(exc: ValidationError, limit: int = 8) -> str:
    lines = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  - field '{loc}': {err['msg']}")
    if exc.error_count() > limit:
        lines.append(f"  ... and {exc.error_count() - limit} more")
    return "\n".join(lines)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a program file")


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _check_depth(text: str, where: str) -> None:
    """Refuse absurd nesting before the JSON parser recurses into it."""
    limit = MAX_DEPTH * 4 + 16
    depth = 0
    for ch in _STRING.sub("", text):
        if ch in "[{":
            depth += 1
            if depth > limit:
                raise ProgramFileError(f"{where}: JSON nested deeper than {limit} levels")
        elif ch in "]}":
            depth -= 1
