"""`medcompile eval PROGRAM.json --data FILE [--split dev] [--limit N] [--lm MODEL] [--out DIR]`.

Scores a program and writes DIR/<name>.eval.json (with per-question records), .md
and .png. Finished questions go to DIR/<name>.eval.checkpoint.jsonl as they finish,
so rerunning an interrupted or failed command resumes instead of starting over (and a
finished one reports from it at once); delete it, or pass --no-checkpoint, to start afresh.
"""
from __future__ import annotations

import argparse
import json
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from ...question import Question
from ..argtypes import positive_int
from ..model_args import Models, add_model_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score a program on labelled questions, with confidence intervals",
                       description=__doc__)
    p.add_argument("program", help="compiled program .json (or a ready-made name / .py)")
    add_eval_data_args(p)
    p.add_argument("--name", default=None, help="name of the output files (default: the program file name, "
                                                "plus @MODEL with --lm)")
    add_run_args(p)
    add_model_args(p, default_lm=None)
    p.set_defaults(func=main)


# ---- shared by eval, compare and ablate -------------------------------------------------------------
def add_eval_data_args(p: argparse.ArgumentParser) -> None:
    from ..data_args import add_format_args

    from ..data_args import BUILTIN_HELP, SPLIT_HELP

    p.add_argument("--data", required=True, metavar="FILE",
                   help=f"labelled questions: a data file or a built-in name ({BUILTIN_HELP})")
    p.add_argument("--split", default="all", help=SPLIT_HELP)
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="use a seeded sample of N questions (default: all)")
    add_format_args(p)


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=".", metavar="DIR", help="output directory")
    p.add_argument("--seed", type=int, default=0, help="seed for the question sample and the bootstrap")
    p.add_argument("--no-checkpoint", action="store_true",
                   help="do not save per-question results as they finish (an interrupted run then starts over; "
                        "the model cache still serves calls already made)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or log lines on stderr")


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
    from ..resolve import for_questions, resolve_program

    with eval_errors():
        program = resolve_program(args.program)
        questions = load_eval_questions(args)
        lm = Models(args)(program)
        program = for_questions(args.program, program, questions)  # passages need a `context` input
        name = args.name or Path(args.program).stem + (f"@{slug(lm.model)}" if args.lm else "")
        base = Path(args.out) / f"{slug(name)}.eval"
        ckpt = checkpoint_path(args, base.name)
        result = evaluate(program, questions, lm, concurrency=args.concurrency, quiet=args.quiet, seed=args.seed,
                          checkpoint=ckpt, name=name)
        result.meta.update({"program_file": args.program, **data_meta(args, len(questions))})
        paths = write_outputs(base, result.to_dict(), result.to_markdown(), lambda p: plot_eval(result, p))
    print(result.summary())
    log("wrote " + ", ".join(str(p) for p in paths), quiet=args.quiet)
    return 0
