"""Shared dataset options of the subcommands (file, format, field map, split, limit).

Every command that reads data reads it the same way: a file (or a built-in name), its
format (detected, or `--format`), and for other JSONL/CSV layouts a field map
(`--fields`). `optimize` and `ablate` read two files; each may have its own layout
(`--train-fields`, `--dev-fields`), with `--fields` as the default for both.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path
from typing import Sequence

from ..data.formats import FieldMap
from ..data.validate import Dataset
from ..question import Question
from .argtypes import positive_int

BUILTIN_HELP = "medqa_us4, medqa_us5, medmcqa, mmlu_medical, pubmedqa"
FORMATS_HELP = "auto (detect) | medqa | medmcqa | mmlu | pubmedqa | jsonl | csv"
FIELDS_HELP = ("how to read another JSONL/CSV layout: comma-separated KEY=FIELD pairs. Keys: question; options "
               "(one field holding an object or a list, or columns joined by '|', lettered A, B, ...); answer "
               "(empty: unlabelled); answer_as (auto|key|text|index0|index1); id (default: the row number); "
               "subject; context. Unnamed keys keep their defaults (question, options, answer, id, subject, "
               "context). E.g. 'question=stem,options=A|B|C|D,answer=label,id=qid'")
SPLIT_HELP = "bank | dev | test | train | all (MedQA: realidx %% 5 = 0-2 bank, 3 dev, 4 test; PubMedQA: official test)"
#: Field-map keys whose field the loader treats as optional; named explicitly, they must exist.
_OPTIONAL_KEYS = ("id", "subject", "context")


def add_data_args(p: argparse.ArgumentParser, prefix: str, *, required: bool, help_name: str) -> None:
    """--PREFIX FILE, --PREFIX-split, --PREFIX-limit, --PREFIX-fields, --PREFIX-format."""
    dest = prefix.replace("-", "_")
    p.add_argument(f"--{prefix}", required=required, metavar="FILE",
                   help=f"{help_name}: a data file or a built-in name ({BUILTIN_HELP})")
    p.add_argument(f"--{prefix}-split", dest=f"{dest}_split", default="all", help=SPLIT_HELP)
    p.add_argument(f"--{prefix}-limit", dest=f"{dest}_limit", type=positive_int, default=None, metavar="N",
                   help="use a seeded sample of N questions (default: all)")
    p.add_argument(f"--{prefix}-fields", dest=f"{dest}_fields", default=None, metavar="MAP",
                   help=f"field map for the --{prefix} file only (default: --fields); see --fields")
    p.add_argument(f"--{prefix}-format", dest=f"{dest}_format", default=None, metavar="FORMAT",
                   help=f"format of the --{prefix} file only (default: --format)")


def add_format_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", default="auto", metavar="FORMAT", help=FORMATS_HELP)
    p.add_argument("--fields", default=None, metavar="MAP", help=FIELDS_HELP)
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="load the valid rows and report each malformed one, instead of stopping with the list "
                        "of problems")


def load_questions(path: str, split: str, limit: int | None, args: argparse.Namespace, seed: int = 0,
                   prefix: str = "") -> list[Question]:
    """The questions of one data option; `prefix` ('train', 'dev') picks its own field map
    and format when given."""
    from ..data.splits import sample, split_named

    ds = load_data_file(path, args, prefix)
    qs: Sequence[Question] = split_named(ds, split).questions if split != "all" else ds.questions
    if limit is not None:
        qs = sample(qs, limit, seed)
    return list(qs)


def load_data_file(path: str, args: argparse.Namespace, prefix: str = "", *,
                   labelled: bool = True) -> Dataset:
    """Load a dataset as the options say, reporting skipped rows on stderr."""
    from ..data import load_dataset, parse_field_map
    from ..progress import log

    dest = prefix.replace("-", "_")
    spec = (getattr(args, f"{dest}_fields", None) if prefix else None) or getattr(args, "fields", None)
    fmt = (getattr(args, f"{dest}_format", None) if prefix else None) or getattr(args, "format", "auto")
    fields = parse_field_map(spec) if spec else None
    if spec:
        check_named_fields(path, spec)
        if not labelled and fields is not None and fields.answer is not None:
            cols = _columns(Path(path)) if Path(path).is_file() else None
            if cols is not None and fields.answer not in cols:  # `run` reads unlabelled files too
                fields = _unlabelled(fields)
    ds = load_dataset(path, format=fmt, fields=fields,
                      on_error="skip" if getattr(args, "skip_bad_rows", False) else "raise")
    if ds.report.problems:
        log(f"{path}: skipped {len(ds.report.problems)} bad row(s); first: {ds.report.problems[0]}")
    return ds


def _unlabelled(fields: FieldMap) -> FieldMap:
    """For `run`: an answer column is optional unless the map names one."""
    from dataclasses import replace

    return replace(fields, answer=None)


def check_named_fields(path: str, spec: str) -> None:
    """A field the map names explicitly must exist in the file: the loader would
    otherwise fall back quietly (row numbers for a misspelt id column)."""
    from ..data import DatasetError

    p = Path(path)
    if not p.is_file():
        return  # a built-in name (field maps do not apply) or a missing file (the loader says so)
    named = {}
    for part in spec.split(","):
        key, _, value = (s.strip() for s in part.partition("="))
        if key in _OPTIONAL_KEYS and value:
            named[key] = value
    if not named:
        return
    columns = _columns(p)
    if columns is None:
        return
    for key, value in named.items():
        if value not in columns:
            shown = ", ".join(sorted(columns)[:30])
            raise DatasetError(f"{path}: --fields {key}={value}: the file has no field {value!r} "
                               f"(its fields: {shown})")


def _columns(p: Path) -> set[str] | None:
    """The CSV header, or every key used by any JSONL record; None for other files."""
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None  # the loader reports unreadable files with its own message
    if p.suffix.lower() in (".csv", ".tsv"):
        dialect = "excel-tab" if p.suffix.lower() == ".tsv" else "excel"
        header = next(csv.reader(io.StringIO(text), dialect=dialect), [])
        return {h.strip() for h in header}
    keys: set[str] = set()
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            keys.update(row)
    return keys or None
