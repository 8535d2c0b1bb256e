"""Shared dataset options of the subcommands (file, format, field map, split, limit)."""
from __future__ import annotations

import argparse
from typing import Sequence

from ..question import Question


def add_data_args(p: argparse.ArgumentParser, prefix: str, *, required: bool, help_name: str) -> None:
    dest = prefix.replace("-", "_")
    p.add_argument(f"--{prefix}", required=required, metavar="FILE",
                   help=f"{help_name}: a data file or a built-in name (medqa_us4, medqa_us5, medmcqa, mmlu_medical, pubmedqa)")
    p.add_argument(f"--{prefix}-split", dest=f"{dest}_split", default="all",
                   help="bank | dev | test | train | all (MedQA: realidx %% 5; PubMedQA: official test ids)")
    p.add_argument(f"--{prefix}-limit", dest=f"{dest}_limit", type=int, default=None, metavar="N",
                   help="use a seeded sample of N questions")


def add_format_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", default="auto", help="auto | medqa | medmcqa | mmlu | pubmedqa | jsonl | csv")
    p.add_argument("--fields", default=None, metavar="MAP",
                   help="field mapping for other JSONL/CSV files, e.g. 'question=stem,options=A|B|C|D,answer=label,id=qid'")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip malformed rows (each is reported) instead of failing")


def load_questions(path: str, split: str, limit: int | None, args: argparse.Namespace, seed: int = 0) -> list[Question]:
    from ..data import load_dataset, parse_field_map
    from ..data.splits import sample, split_named

    fields = parse_field_map(args.fields) if getattr(args, "fields", None) else None
    ds = load_dataset(path, format=getattr(args, "format", "auto"), fields=fields,
                      on_error="skip" if getattr(args, "skip_bad_rows", False) else "raise")
    if ds.report.problems:
        from ..progress import log

        log(f"{path}: skipped {len(ds.report.problems)} bad row(s); first: {ds.report.problems[0]}")
    qs: Sequence[Question] = split_named(ds, split).questions if split != "all" else ds.questions
    if limit is not None:
        qs = sample(qs, limit, seed)
    return list(qs)
