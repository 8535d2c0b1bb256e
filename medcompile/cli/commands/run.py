"""`medcompile run PROGRAM.json --input Q.jsonl --output A.jsonl`: answer questions.

Reads questions from:
  - question JSONL, one object per line: {"id", "question", "options": {"A": ...}, "context"?, "answer"?};
  - any dataset file the loaders know (MedQA/MedMCQA/MMLU JSONL, PubMedQA JSON), by path or built-in name;
  - any other JSONL or CSV with --fields (e.g. 'question=stem,options=A|B|C|D,id=qid').
'-' reads question JSONL from stdin / writes to stdout. Answers are JSONL, in input order.
The output file is written once, atomically, when every question is answered; a failed
or interrupted run leaves no file behind (its finished model calls are in the cache,
so rerunning costs nothing for them). With '-o -' answers stream as they finish.

Offline try-out: `medcompile run PROGRAM.json -i Q.jsonl --lm sim` (simulated model) or
`--lm echo` (replies with the prompt); `medcompile show` prints the prompts themselves.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import IO

from ...question import Question, QuestionError
from ..argtypes import positive_int
from ..data_args import add_format_args
from ..model_args import Models, add_model_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a compiled program on questions", description=__doc__)
    p.add_argument("program", metavar="PROGRAM.json", help="compiled program file (read as data, never executed)")
    p.add_argument("--input", "-i", default="-", metavar="FILE",
                   help="questions: question JSONL, a dataset file or built-in name, or any JSONL/CSV with "
                        "--fields; '-' = question JSONL on stdin")
    p.add_argument("--output", "-o", default="-", metavar="FILE", help="answers JSONL; '-' = stdout")
    p.add_argument("--rationales", action="store_true", help="include the model's reasoning in the output")
    p.add_argument("--split", default="all", help="split of a dataset input (bank | dev | test | train | all)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="seeded sample of N questions (default: all)")
    add_format_args(p)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar on stderr")
    add_model_args(p, default_lm=None)
    p.set_defaults(func=main)


def read_questions(path: str, split: str = "all", limit: int | None = None,
                   args: argparse.Namespace | None = None) -> list[Question]:
    """Questions from stdin ('-'), a dataset file, plain question JSONL, or a --fields file."""
    from ...data import DatasetError
    from ...data.splits import sample, split_named
    from ..data_args import load_data_file

    args = args or argparse.Namespace()
    if path == "-":
        if getattr(args, "fields", None):
            raise QuestionError("--fields needs a file: stdin is read as question JSONL")
        qs = parse_jsonl(sys.stdin, "<stdin>")
        return sample(qs, limit, 0) if limit else qs
    generic = bool(getattr(args, "fields", None)) or getattr(args, "format", "auto") != "auto"
    try:
        ds = load_data_file(path, args, labelled=False)
    except DatasetError:
        if not generic and split == "all" and path.endswith(".jsonl"):  # plain questions, maybe unlabelled
            try:
                with open(path, encoding="utf-8") as f:
                    qs = parse_jsonl(f, path)
            except UnicodeDecodeError:
                raise QuestionError(f"{path}: not valid UTF-8 text") from None
            return sample(qs, limit, 0) if limit else qs
        raise
    qs2 = split_named(ds, split).questions if split != "all" else ds.questions
    return sample(qs2, limit, 0) if limit else list(qs2)


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
    from ...atomic import write_text_atomic
    from ...program.io import load
    from ...progress import progress_bar

    program = load(args.program)  # data only: run never imports or executes a program file
    questions = read_questions(args.input, args.split, args.limit, args)
    lm = Models(args)(program)
    to_stdout = args.output == "-"
    lines: list[str] = []  # a file is written once, whole, at the end: never a partial one
    with progress_bar(f"run {program.name}", len(questions), quiet=args.quiet) as bar:
        def emit(r) -> None:  # type: ignore[no-untyped-def]
            line = json.dumps(r.to_dict(rationales=args.rationales), ensure_ascii=False) + "\n"
            if to_stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                lines.append(line)
            bar.advance(r.usage)

        program.run_many(questions, lm, concurrency=args.concurrency, on_result=emit)
    if not to_stdout:
        write_text_atomic(args.output, "".join(lines))
    return 0
