"""`medcompile eval PROGRAM.json --data FILE [--split dev] [--limit N] [--lm MODEL] [--out DIR]`.

Scores a program and writes DIR/<name>.eval.json (with per-question records), .md
and .png. Finished questions go to DIR/<name>.eval.checkpoint.jsonl as they finish,
so rerunning an interrupted command resumes instead of starting over.
"""
from __future__ import annotations

import argparse
import json
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from ...question import Question


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score a program on labelled questions, with confidence intervals")
    p.add_argument("program", help="compiled program .json (or a ready-made name / .py)")
    add_eval_data_args(p)
    p.add_argument("--lm", default=None, help="evaluate with this model instead of the one the program was compiled for")
    p.add_argument("--name", default=None, help="name of the output files (default: program file name)")
    add_run_args(p)
    p.set_defaults(func=main)


# ---- shared by eval, compare and ablate -------------------------------------------------------------
def add_eval_data_args(p: argparse.ArgumentParser) -> None:
    from ..data_args import add_format_args

    p.add_argument("--data", required=True, metavar="FILE",
                   help="labelled questions: a data file or a built-in name (medqa_us4, medmcqa, ...)")
    p.add_argument("--split", default="all", help="bank | dev | test | train | all (MedQA: realidx %% 5)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="use a seeded sample of N questions")
    add_format_args(p)


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=".", metavar="DIR", help="output directory (default: current directory)")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="seed for the question sample and the bootstrap")
    p.add_argument("--no-checkpoint", action="store_true", help="do not save or resume per-question results")
    p.add_argument("--quiet", "-q", action="store_true")


def load_eval_questions(args: argparse.Namespace) -> list[Question]:
    from ..data_args import load_questions

    if args.limit is not None and args.limit < 1:
        raise_eval(f"--limit must be at least 1, got {args.limit}")
    from ...data.validate import DatasetError

    try:
        return load_questions(args.data, args.split, args.limit, args, seed=args.seed)
    except DatasetError:
        raise
    except ValueError as exc:  # e.g. --limit larger than the split
        raise_eval(f"--data {args.data} --split {args.split}: {exc}")
        raise


def data_meta(args: argparse.Namespace, n: int) -> dict[str, Any]:
    return {"data": args.data, "split": args.split, "limit": args.limit, "sample_seed": args.seed, "n_questions": n}


def slug(text: str) -> str:
    """A file-name-safe version of a label or model name."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "run"


def checkpoint_path(args: argparse.Namespace, base: str) -> Path | None:
    return None if args.no_checkpoint else Path(args.out) / f"{base}.checkpoint.jsonl"


def write_outputs(base: Path, data: dict[str, Any], markdown: str, plot: Callable[[Path], Any]) -> list[Path]:
    """BASE.json, BASE.md and BASE.png, each written atomically."""
    from ...atomic import write_text_atomic

    paths = [base.with_name(base.name + ext) for ext in (".json", ".md", ".png")]
    write_text_atomic(paths[0], json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False) + "\n")
    write_text_atomic(paths[1], markdown)
    plot(paths[2])
    return paths


def raise_eval(message: str) -> None:
    from ...evaluate.runner import EvalError

    raise EvalError(message)


@contextmanager
def eval_errors() -> Iterator[None]:
    """EvalError is not among the CLI's expected errors: print it as one line too."""
    from ...evaluate.runner import EvalError
    from ..errors import fail

    try:
        yield
    except EvalError as exc:
        fail(str(exc))


# ---- the command -------------------------------------------------------------------------------------
def main(args: argparse.Namespace) -> int:
    from ...evaluate.plots import plot_eval
    from ...evaluate.runner import evaluate
    from ...progress import log
    from ..resolve import resolve_program

    with eval_errors():
        program = resolve_program(args.program)
        questions = load_eval_questions(args)
        lm = program.resolve_lm(args.lm)
        name = args.name or Path(args.program).stem + (f"@{slug(lm.model)}" if args.lm else "")
        base = Path(args.out) / f"{slug(name)}.eval"
        result = evaluate(program, questions, lm, concurrency=args.concurrency, quiet=args.quiet, seed=args.seed,
                          checkpoint=checkpoint_path(args, base.name), name=name)
        result.meta.update({"program_file": args.program, **data_meta(args, len(questions))})
        paths = write_outputs(base, result.to_dict(), result.to_markdown(), lambda p: plot_eval(result, p))
    print(result.summary())
    log("wrote " + ", ".join(str(p) for p in paths), quiet=args.quiet)
    return 0
