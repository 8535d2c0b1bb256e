"""`medcompile optimize PROGRAM --train FILE --dev FILE --lm SPEC --budget N --out OUT.json`.

Compiles PROGRAM for one model: generates and filters rationales on the training
questions, proposes instructions, then searches the program's open choices on the dev
questions within a hard budget of model calls. Writes OUT.json (the frozen program)
and OUT.report.json/.md/.trials.png. The search is an optuna study in
OUT.json.study.sqlite (the resume checkpoint: rerun the same command after a crash);
watch it live with `optuna-dashboard sqlite:///OUT.json.study.sqlite`.

Example (offline, no model needed):
  medcompile optimize zero_shot --train medqa_us4 --train-split bank --train-limit 20 \\
      --dev medqa_us4 --dev-split dev --dev-limit 8 --lm sim --budget 60 --out zs.json
"""
from __future__ import annotations

import argparse

from ..argtypes import non_negative_int, positive_int, rounds_or_auto
from ..data_args import add_data_args, add_format_args, load_questions
from ..model_args import Models, add_model_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("optimize", help="compile a program for a model against a dev split", description=__doc__)
    p.add_argument("program", help="ready-made name (zero_shot, few_shot, medprompt, ensemble_refinement), "
                                   "a .py file defining build(signature=None), or a program .json")
    add_data_args(p, "train", required=True, help_name="exemplar bank / training questions")
    add_data_args(p, "dev", required=True, help_name="dev questions that configurations are scored on")
    add_format_args(p)
    p.add_argument("--budget", type=positive_int, default=500, help="hard cap on model calls for the whole compile")
    p.add_argument("--out", required=True, metavar="OUT.json", help="where to write the compiled program JSON")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="optuna storage URL (default: sqlite:///OUT.json.study.sqlite beside --out); "
                        "postgresql://... to share the study with --worker processes")
    p.add_argument("--study-name", default=None, help="name of the shared study (workers must use the same; "
                                                      "default: derived from the program, data and model)")
    p.add_argument("--worker", action="store_true", help="join an existing study as an extra worker")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for samples, exemplar choice, sampling and the search (same seed + data + cache = "
                        "same program, byte for byte)")
    p.add_argument("--trials", type=positive_int, default=24,
                   help="maximum number of configurations to try (a repeated proposal takes no slot)")
    p.add_argument("--minibatch", type=positive_int, default=4,
                   help="search questions between racing decisions (paired tests against finished trials)")
    p.add_argument("--confirm-fraction", type=float, default=0.4, metavar="F",
                   help="share of the dev questions held out to confirm the finalists on")
    p.add_argument("--confirm-top", type=positive_int, default=3, metavar="N",
                   help="finalists confirmed besides the cheapest configuration")
    p.add_argument("--select-rule", choices=["not_worse", "ahead"], default=None,
                   help="how the finalists are chosen among: 'not_worse' (cheapest not significantly worse than "
                        "the best) or 'ahead' (cheapest unless a costlier one is ahead with one-sided confidence "
                        "1-alpha); default: the library's")
    p.add_argument("--select-alpha", type=float, default=None, metavar="A",
                   help="risk level of that choice, the price of extra calls (default: the library's)")
    p.add_argument("--instructions", type=positive_int, default=3, help="instruction proposals to ask the model for")
    p.add_argument("--instruction-rounds", type=rounds_or_auto, default=0, metavar="N|auto",
                   help="rounds of instruction refinement (rewrite the best instruction, keep it if it scores "
                        "better on training questions); auto: what a fifth of the budget pays for; default 0 (off)")
    p.add_argument("--instruction-consensus", type=non_negative_int, default=0, metavar="N",
                   help="draw N instruction proposals and add the sentences proposed at least twice as one more "
                        "candidate (when N > --instructions); default 0 (off)")
    p.add_argument("--rationales", type=positive_int, default=None, metavar="N",
                   help="bank questions to generate CoT rationales for (default: a tenth of the budget, at least 40 within 30%% of it)")
    p.add_argument("--objective", choices=["accuracy", "pareto"], default="accuracy",
                   help="'pareto': accuracy vs calls per question, front saved in the report")
    p.add_argument("--embedder", default=None,
                   help="kNN embedder: wordllama (default), st:/path/or/name, litellm:model")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar, trial lines or summary")
    add_model_args(p, default_lm="local", concurrency_help="dev questions scored at once within a trial")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ...compile import optimize
    from ..resolve import for_questions, resolve_program

    program = resolve_program(args.program)
    train = load_questions(args.train, args.train_split, args.train_limit, args, seed=args.seed, prefix="train")
    dev = load_questions(args.dev, args.dev_split, args.dev_limit, args, seed=args.seed, prefix="dev")
    lm = Models(args)()
    program = for_questions(args.program, program, (*train, *dev))  # passages need a `context` input
    compiled = optimize(program, train, dev, lm=lm, budget=args.budget, seed=args.seed, out=args.out,
                        storage=args.storage, study_name=args.study_name, worker=args.worker,
                        max_trials=args.trials, minibatch=args.minibatch, n_instructions=args.instructions,
                        instruction_rounds=args.instruction_rounds, instruction_consensus=args.instruction_consensus,
                        confirm_fraction=args.confirm_fraction, confirm_top=args.confirm_top,
                        max_rationales=args.rationales, objective=args.objective, embedder=args.embedder,
                        concurrency=args.concurrency, quiet=args.quiet,
                        **{k: v for k, v in (("select_rule", args.select_rule), ("select_alpha", args.select_alpha))
                           if v is not None})
    if not args.worker and not args.quiet:
        info = compiled.compile_info or {}
        dev_info = info.get("dev", {})
        ci = dev_info.get("ci95")
        print(f"compiled {compiled.name} for {lm.model}: dev {dev_info.get('metric')} {dev_info.get('score'):.3f}"
              + (f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else "")
              + f", n={dev_info.get('n')} {dev_info.get('questions', 'dev')} questions, "
              f"{info.get('calls_per_question'):g} calls/question, {info['budget']['spent_calls']} of "
              f"{info['budget']['max_calls']} budget calls spent -> {args.out}")
    return 0
