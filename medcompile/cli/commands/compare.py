"""`medcompile compare A.json B.json --data FILE [--split dev] [--limit N] [--lm X] [--lm-b Y] [--out DIR]`.

Evaluates both programs on exactly the same questions and writes a paired comparison
(DIR/<a>_vs_<b>.compare.json, .md, .png). Two models on one program:
`compare P.json P.json --lm X --lm-b Y`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..model_args import Models, add_model_args
from .eval import (add_eval_data_args, add_run_args, checkpoint_path, data_meta, eval_errors, load_eval_questions,
                   slug, write_outputs)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="paired comparison of two programs (or two models) on the same questions",
                       description=__doc__)
    p.add_argument("program_a", help="program A (.json); the baseline")
    p.add_argument("program_b", help="program B (.json); differences are B - A")
    add_eval_data_args(p)
    add_run_args(p)
    add_model_args(p, default_lm=None, second=True)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ...evaluate.compare import compare_evals, labels
    from ...evaluate.plots import plot_compare
    from ...evaluate.runner import evaluate
    from ...progress import log
    from ..resolve import for_questions, resolve_program

    with eval_errors():
        prog_a, prog_b = resolve_program(args.program_a), resolve_program(args.program_b)
        questions = load_eval_questions(args)
        models = Models(args)
        lm_a, lm_b = models(prog_a), models(prog_b, b=True)
        prog_a = for_questions(args.program_a, prog_a, questions)  # passages need a `context` input
        prog_b = for_questions(args.program_b, prog_b, questions)
        stem_a, stem_b = Path(args.program_a).stem, Path(args.program_b).stem
        name_a, name_b = (stem_a, stem_b) if stem_a != stem_b else (prog_a.name, prog_b.name)
        ckpt_base = slug(f"{stem_a}_vs_{stem_b}")
        ckpt = checkpoint_path(args, ckpt_base)  # one file: records are keyed by program and model
        kw = dict(concurrency=args.concurrency, quiet=args.quiet, seed=args.seed, checkpoint=ckpt)
        res_a = evaluate(prog_a, questions, lm_a, name=name_a, **kw)  # type: ignore[arg-type]
        res_b = evaluate(prog_b, questions, lm_b, name=name_b, **kw)  # type: ignore[arg-type]
        for res, f in ((res_a, args.program_a), (res_b, args.program_b)):
            res.meta.update({"program_file": f})
        cmp = compare_evals(res_a, res_b, seed=args.seed)
        la, lb = labels(res_a, res_b)
        base = Path(args.out) / f"{slug(la)}_vs_{slug(lb)}.compare"
        d = {**cmp.to_dict(records=True), "data": data_meta(args, len(questions))}
        paths = write_outputs(base, d, cmp.to_markdown() + _data_line(args, len(questions)),
                              lambda p: plot_compare(cmp, p))
    s = cmp.stats
    print(f"A {cmp.name_a}: {s.acc_a.pts()}; B {cmp.name_b}: {s.acc_b.pts()}; n={len(cmp.ids)}")
    print(cmp.verdict)
    log("wrote " + ", ".join(str(p) for p in paths), quiet=args.quiet)
    return 0


def _data_line(args: argparse.Namespace, n: int) -> str:
    return f"- data: {args.data}, split {args.split}, limit {args.limit}, sample seed {args.seed}, n={n}\n"
