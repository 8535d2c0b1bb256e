"""`medcompile optimize PROGRAM --train F --dev F --lm M --budget N --out OUT.json`."""
from __future__ import annotations

import argparse

from ..data_args import add_data_args, add_format_args, load_questions


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("optimize", help="compile a program for a model against a dev split")
    p.add_argument("program", help="ready-made name (zero_shot, few_shot, medprompt, ensemble_refinement), a .py or a .json")
    add_data_args(p, "train", required=True, help_name="exemplar bank / training questions")
    add_data_args(p, "dev", required=True, help_name="dev questions that configurations are scored on")
    add_format_args(p)
    p.add_argument("--lm", default="local", help="model: 'local' (embedded Gemma 3 270M), 'gguf:/path', or a litellm name")
    p.add_argument("--lm-mode", choices=["text", "chat"], default=None, help="force text completion or chat")
    p.add_argument("--api-base", default=None, help="OpenAI-compatible server URL for the litellm model")
    p.add_argument("--budget", type=int, default=500, help="hard cap on model calls for the whole compile")
    p.add_argument("--out", required=True, help="where to write the compiled program JSON")
    p.add_argument("--storage", default=None,
                   help="optuna storage URL (default: SQLite file beside --out); postgresql://... to share with workers")
    p.add_argument("--study-name", default=None, help="name of the shared study (workers must use the same)")
    p.add_argument("--worker", action="store_true", help="join an existing study as an extra worker")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trials", type=int, default=24, help="maximum number of configurations to try")
    p.add_argument("--minibatch", type=int, default=8, help="dev questions per pruning step")
    p.add_argument("--instructions", type=int, default=3, help="instruction proposals to ask the model for")
    p.add_argument("--rationales", type=int, default=None, help="bank questions to generate CoT rationales for")
    p.add_argument("--objective", choices=["accuracy", "pareto"], default="accuracy",
                   help="'pareto': accuracy vs calls per question, front saved in the report")
    p.add_argument("--embedder", default=None, help="wordllama (default), st:/path/or/name, litellm:model")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ...compile import optimize
    from ...lm.registry import make_lm
    from ..resolve import resolve_program

    program = resolve_program(args.program)
    train = load_questions(args.train, args.train_split, args.train_limit, args, seed=args.seed)
    dev = load_questions(args.dev, args.dev_split, args.dev_limit, args, seed=args.seed)
    lm = make_lm(args.lm, mode=args.lm_mode, api_base=args.api_base)
    if any(q.context for q in (*train, *dev)):  # passages are shown only to signatures that declare them
        from ...signatures import MCQ_WITH_CONTEXT

        program = resolve_program(args.program, signature=MCQ_WITH_CONTEXT)
    compiled = optimize(program, train, dev, lm=lm, budget=args.budget, seed=args.seed, out=args.out,
                        storage=args.storage, study_name=args.study_name, worker=args.worker,
                        max_trials=args.trials, minibatch=args.minibatch, n_instructions=args.instructions,
                        max_rationales=args.rationales, objective=args.objective, embedder=args.embedder,
                        concurrency=args.concurrency, quiet=args.quiet)
    if not args.worker and not args.quiet:
        info = compiled.compile_info or {}
        dev_info = info.get("dev", {})
        ci = dev_info.get("ci95")
        print(f"compiled {compiled.name} for {lm.model}: dev {dev_info.get('metric')} {dev_info.get('score'):.3f}"
              + (f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else "") + f", n={dev_info.get('n')}, "
              f"{info.get('calls_per_question'):g} calls/question, {info['budget']['spent_calls']} of "
              f"{info['budget']['max_calls']} budget calls spent -> {args.out}")
    return 0
