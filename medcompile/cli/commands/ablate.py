"""`medcompile ablate --train FILE --train-split bank --data FILE --split dev [--k 3] [--shuffles 5] [--rationales N]`.

Measures the Medprompt ladder (zero-shot -> random few-shot -> + self-generated CoT ->
kNN few-shot -> + choice-shuffle ensemble) on your model, every row on the same
questions; writes DIR/ablation.json, .md and .png.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..argtypes import positive_int
from ..data_args import add_data_args
from ..model_args import Models, add_model_args
from .eval import (add_eval_data_args, add_run_args, checkpoint_path, data_meta, eval_errors, load_eval_questions,
                   write_outputs)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ablate", help="the Medprompt ablation ladder on your model, with paired tests between rows",
                       description=__doc__)
    add_data_args(p, "train", required=True, help_name="exemplar bank (rationales are generated on a sample of it)")
    add_eval_data_args(p)
    p.add_argument("--k", type=positive_int, default=3, help="few-shot exemplars per question")
    p.add_argument("--shuffles", type=positive_int, default=5, help="choice-shuffle ensemble size of the last row")
    p.add_argument("--rationales", type=positive_int, default=20, metavar="N",
                   help="bank questions to generate self-CoT rationales for (only correct ones are kept)")
    p.add_argument("--embedder", default=None,
                   help="kNN embedder: wordllama (default), st:/path/or/name, litellm:model")
    add_run_args(p)
    add_model_args(p, default_lm="local")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ...evaluate.ablation import run_ablation
    from ...progress import log
    from ..data_args import load_questions

    with eval_errors():
        bank = load_questions(args.train, args.train_split, args.train_limit, args, seed=args.seed, prefix="train")
        questions = load_eval_questions(args)
        lm = Models(args)()
        result = run_ablation(bank, questions, lm, k=args.k, shuffles=args.shuffles, max_rationales=args.rationales,
                              seed=args.seed, concurrency=args.concurrency, quiet=args.quiet,
                              checkpoint=checkpoint_path(args, "ablation"), embedder=args.embedder)
        result.meta.update({"bank": f"{args.train} split {args.train_split} limit {args.train_limit}",
                            **data_meta(args, len(questions))})
        base = Path(args.out) / "ablation"
        paths = write_outputs(base, result.to_dict(), result.to_markdown(), result.plot)
    for i, row in enumerate(result.rows, 1):
        print(f"{i}. {row.label}: {row.result.accuracy.pts()}, {row.calls_per_question:.2f} calls/q")
    print(f"n={result.rows[0].result.n} questions per row")
    log("wrote " + ", ".join(str(p) for p in paths), quiet=args.quiet)
    return 0
