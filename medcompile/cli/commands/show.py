"""`medcompile show PROGRAM --input Q.jsonl [--limit N]`: the exact prompts a program sends.

Runs PROGRAM on each question against a stand-in model that records every request and
answers with a placeholder (--reply), so nothing leaves the machine and nothing is
spent. Prints, per question, every model call in order: the mode, the sampling
settings and the exact text prompt (text mode) or chat messages (chat mode). A
program whose later calls build on earlier replies (self-generated CoT, ensemble
refinement) shows the placeholder where the model's reply would go.

The mode is the one the program was compiled with, unless --mode says otherwise. A
ready-made or .py program shown on questions with passages (PubMedQA) is declared with
the context signature, as optimize, eval and compare declare it, so the passage appears.
"""
from __future__ import annotations

import argparse
import json
import threading
from typing import Any

from ..argtypes import positive_int
from ..data_args import add_format_args

PLACEHOLDER = "<model reply>"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="print the exact prompts a program would send, without calling a model",
                       description=__doc__)
    p.add_argument("program", help="compiled program .json, a ready-made name, or a .py file")
    p.add_argument("--input", "-i", required=True, metavar="FILE",
                   help="questions: question JSONL, a dataset file or built-in name, or JSONL/CSV with --fields")
    p.add_argument("--limit", type=positive_int, default=1, metavar="N", help="show the first N questions")
    p.add_argument("--split", default="all", help="split of a dataset input (bank | dev | test | train | all)")
    add_format_args(p)
    p.add_argument("--mode", choices=("text", "chat"), default=None,
                   help="show text prompts or chat messages (default: the program's compiled mode, else text)")
    p.add_argument("--reply", default=PLACEHOLDER, metavar="TEXT",
                   help="what the stand-in model answers to every call")
    p.add_argument("--json", action="store_true", help="one JSON object per model call instead of text")
    p.set_defaults(func=main)


class Recorder:
    """A stand-in LM: records requests (per question, in call order) and replies `reply`."""

    def __init__(self, model: str, mode: str, reply: str) -> None:
        self.model = model
        self.mode = mode
        self.reply = reply
        self.requests: list[Any] = []
        self._lock = threading.Lock()

    def complete(self, request: Any) -> Any:
        from ...lm.base import LMResponse

        with self._lock:
            self.requests.append(request)
        return LMResponse(text=self.reply)


def main(args: argparse.Namespace) -> int:
    from ...modules.base import ModuleError
    from ..resolve import for_questions, resolve_program
    from .run import read_questions

    program = resolve_program(args.program)
    settings = program.lm_settings or {}
    mode = args.mode or settings.get("mode") or "text"
    questions = read_questions(args.input, args.split, None, args)[:args.limit]
    program = for_questions(args.program, program, questions)  # passages need a `context` input to show
    try:
        program.prepare(questions)
        show_calls(program, questions, mode, args)
    except ModuleError as exc:  # e.g. Retrieve with no bank: a declared program, not a compiled one
        raise ModuleError(f"{exc}. `show` runs the program as it is: compile it first, offline if you like "
                          f"(medcompile optimize {args.program} --train FILE --dev FILE --lm sim --budget 60 "
                          "--out p.json), then show p.json") from None
    return 0


def show_calls(program: Any, questions: list[Any], mode: str, args: argparse.Namespace) -> None:
    settings = program.lm_settings or {}
    for n, q in enumerate(questions, 1):
        rec = Recorder(settings.get("model") or "show", mode, args.reply)
        result = program.run(q, rec)
        if args.json:
            for i, r in enumerate(rec.requests, 1):
                print(json.dumps({"question_id": q.id, "call": i, **request_dict(r)}, ensure_ascii=False))
            continue
        print(f"=== question {n}/{len(questions)} (id {q.id}): {len(rec.requests)} model call(s), "
              f"program {program.name!r}, mode {mode}")
        for i, r in enumerate(rec.requests, 1):
            print(f"--- call {i}/{len(rec.requests)}: {describe(r)}")
            print(r.prompt if r.mode == "text" else "\n".join(f"[{m.role}]\n{m.content}" for m in r.messages))
        if result.error:
            print(f"--- the program stopped: {result.error}")


def describe(r: Any) -> str:
    parts = [f"temperature {r.temperature:g}", f"max_tokens {r.max_tokens}"]
    if r.stop:
        parts.append(f"stop {list(r.stop)}")
    if r.seed:
        parts.append(f"seed {r.seed}")
    if getattr(r, "choices", ()):
        parts.append(f"choices {list(r.choices)}")
    return ", ".join(parts)


def request_dict(r: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"mode": r.mode, "temperature": r.temperature, "max_tokens": r.max_tokens,
                         "stop": list(r.stop), "seed": r.seed}
    if getattr(r, "choices", ()):
        d["choices"] = list(r.choices)
    if r.mode == "text":
        d["prompt"] = r.prompt
    else:
        d["messages"] = [{"role": m.role, "content": m.content} for m in r.messages]
    return d
