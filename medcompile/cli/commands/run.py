"""`medcompile run PROGRAM.json --input Q.jsonl --output A.jsonl`: answer questions.

Reads canonical question JSONL (id, question, options, optional context/answer) or
any dataset format the loaders know; '-' means stdin/stdout. Answers are written
as they finish, in input order; the output file appears atomically at the end, and
an interrupted run keeps its finished answers in OUTPUT.partial.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import IO

from ...question import Question, QuestionError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a compiled program on questions")
    p.add_argument("program", help="compiled program .json")
    p.add_argument("--input", "-i", default="-", help="questions (JSONL, or a dataset file); '-' = stdin")
    p.add_argument("--output", "-o", default="-", help="answers JSONL; '-' = stdout")
    p.add_argument("--lm", default=None, help="override the model (litellm name, 'local', 'gguf:/path')")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--rationales", action="store_true", help="include rationales in the output")
    p.add_argument("--split", default="all", help="split of a dataset input (bank/dev/test/all)")
    p.add_argument("--limit", type=int, default=None, help="seeded sample of N questions")
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(func=main)


def read_questions(path: str, split: str = "all", limit: int | None = None) -> list[Question]:
    if path == "-":
        return parse_jsonl(sys.stdin, "<stdin>")
    from ...data import DatasetError, load_dataset
    from ...data.splits import sample, split_named

    try:
        ds = load_dataset(path)
    except DatasetError:
        if split == "all" and path.endswith(".jsonl"):  # plain questions, possibly without answers
            try:
                with open(path, encoding="utf-8") as f:
                    qs = parse_jsonl(f, path)
            except UnicodeDecodeError:
                raise QuestionError(f"{path}: not valid UTF-8 text") from None
            return sample(qs, limit, 0) if limit else qs
        raise
    qs = split_named(ds, split).questions if split != "all" else ds.questions
    return sample(qs, limit, 0) if limit else list(qs)


def parse_jsonl(f: IO[str], where: str) -> list[Question]:
    out = []
    for n, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            out.append(Question.from_dict({"id": str(n), **json.loads(line)}))
        except json.JSONDecodeError as exc:
            raise QuestionError(f"{where} line {n}: not valid JSON ({exc.msg})") from None
        except (QuestionError, TypeError, AttributeError) as exc:  # AttributeError: 'meta' not an object
            raise QuestionError(f"{where} line {n}: {exc}") from None
        except (ValueError, RecursionError) as exc:  # e.g. nested too deeply to parse
            raise QuestionError(f"{where} line {n}: not valid JSON ({type(exc).__name__})") from None
    return out


def main(args: argparse.Namespace) -> int:
    from ...program.io import load
    from ...progress import progress_bar

    program = load(args.program)
    questions = read_questions(args.input, args.split, args.limit)
    lm = program.resolve_lm(args.lm)
    to_stdout = args.output == "-"
    partial = Path(args.output + ".partial") if not to_stdout else None
    sink = sys.stdout if to_stdout else open(partial, "w", encoding="utf-8")  # type: ignore[arg-type]
    try:
        with progress_bar(f"run {program.name}", len(questions), quiet=args.quiet) as bar:
            def emit(r) -> None:  # type: ignore[no-untyped-def]
                sink.write(json.dumps(r.to_dict(rationales=args.rationales), ensure_ascii=False) + "\n")
                sink.flush()
                bar.advance(r.usage)

            program.run_many(questions, lm, concurrency=args.concurrency, on_result=emit)
    finally:
        if not to_stdout:
            sink.close()
    if partial is not None:
        os.replace(partial, args.output)
    return 0
