"""Powered evaluation on the embedded model: n in the hundreds, CIs, paired tests.

    python benchmarks/bench_powered_eval.py [--quick] [--stage answers|compile|eval|all]

Three stages, each resumable after a kill (LM disk cache + eval checkpoints + optuna
studies beside the compiled programs), all writing to benchmarks/results/powered/:

- ``answers``: the same zero-shot direct program answering by parsing free text (how
  version-1 programs ran) and by constrained choice over the option keys, on the same
  questions of every dataset: abstention and accuracy before/after, paired.
- ``compile``: zero_shot, few_shot, medprompt and ensemble_refinement compiled for the
  embedded model; MedQA (bank/dev) programs serve the three A-D datasets, PubMedQA
  programs (context signature, compiled on PubMedQA's non-test questions) serve PubMedQA.
- ``eval``: every program on every dataset at the issue's n, with accuracy (95% CI),
  abstention, calls/tokens/seconds per question and paired comparisons against zero_shot
  (paired bootstrap CI of the difference, exact McNemar).

The embedded model is Gemma 3 270M, a near-chance base model: these figures measure
robustness and machinery (abstention, cost, statistics), not medical quality.
Cheapest first: rows are written after every (dataset, program) pair, so a partial run
leaves complete rows with their n; the JSON says which rows are missing.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import RESULTS, machine, save_json

from medcompile import Predict, Program
from medcompile.data import load_dataset, sample, split_named
from medcompile.evaluate.compare import compare_evals
from medcompile.evaluate.runner import EvalResult, evaluate
from medcompile.lm.registry import make_lm
from medcompile.question import Question

OUT = RESULTS / "powered"
WORDING = ("Gemma 3 270M (embedded, llama.cpp, Q4_K_M) is a near-chance base model: these figures measure "
           "robustness and machinery (abstention, cost, paired statistics), not medical quality.")


@dataclass(frozen=True)
class DataSpec:
    name: str
    dataset: str
    split: str
    n: int | None  # None: the whole split
    family: str  # which compiled programs serve it
    note: str


DATASETS = (  # cheapest prompts first
    DataSpec("medmcqa", "medmcqa", "all", 500, "medqa", "MedMCQA, first 500 of a seeded sample (seed 0)"),
    DataSpec("mmlu_medical", "mmlu_medical", "all", 500, "medqa", "MMLU medical, seeded sample (seed 0)"),
    DataSpec("medqa_us4", "medqa_us4", "test", None, "medqa", "MedQA-US4 test split (realidx % 5 == 4)"),
    DataSpec("pubmedqa", "pubmedqa", "test", None, "pubmedqa", "PubMedQA official test split"),
)
SIGNATURES = {"medqa": "question, options -> answer", "pubmedqa": "context, question, options -> answer"}


def questions(spec: DataSpec, quick: bool) -> list[Question]:
    qs = split_named(load_dataset(spec.dataset), spec.split).questions
    n = min(spec.n or len(qs), len(qs))
    if quick:
        n = min(n, 12)
    return sample(qs, n, seed=0) if n < len(qs) else list(qs)


def row(spec: DataSpec, program: str, res: EvalResult, **extra: Any) -> dict[str, Any]:
    acc, u = res.accuracy, res.usage_per_question()
    return {"dataset": spec.name, "program": program, "n": res.n, "accuracy": round(acc.mean, 4),
            "ci95": [round(acc.low, 4), round(acc.high, 4)], "abstention": round(res.abstention_rate, 4),
            "abstained": sum(r.answer is None for r in res.records),
            "calls_per_question": round(u["logical"]["calls"], 3),
            "prompt_tokens_per_question": round(u["logical"]["prompt_tokens"], 1),
            "completion_tokens_per_question": round(u["logical"]["completion_tokens"], 1),
            "seconds_per_question": round(sum(r.latency_s for r in res.records) / max(res.n, 1), 3),
            "chance": None if res.chance is None else round(res.chance, 4), "model": res.model, **extra}


def paired(a: EvalResult, b: EvalResult, name_a: str, name_b: str) -> dict[str, Any]:
    c = compare_evals(a, b, name_a=name_a, name_b=name_b)
    s = c.stats
    return {"vs": name_a, "n": len(c.ids), "diff": round(s.diff.mean, 4),
            "diff_ci95": [round(s.diff.low, 4), round(s.diff.high, 4)], "mcnemar_p": round(s.mcnemar_p, 6),
            "wins": s.wtl.wins, "losses": s.wtl.losses, "verdict": s.verdict}


def run_eval(prog: Program, qs: list[Question], lm: Any, label: str, ckpt_dir: Path) -> EvalResult:
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    return evaluate(prog, qs, lm, checkpoint=ckpt_dir / f"{label}.checkpoint.jsonl", name=label, quiet=False)


# ---- stage 1: parse vs constrained ------------------------------------------------------------
def interleaved(progs: dict[str, Program], qs: list[Question], lm: Any, label: str) -> dict[str, float]:
    """Run every program on one question before the next question, so the later programs'
    calls reuse llama.cpp's KV cache for the shared prompt; responses land in the LM disk
    cache, so the evaluations after this pass (and a rerun after a kill) are cache hits.
    Returns each program's mean live seconds per question."""
    spent = {name: 0.0 for name in progs}
    t_start = time.perf_counter()
    for i, q in enumerate(qs, 1):
        for name, prog in progs.items():
            t0 = time.perf_counter()
            prog.run(q, lm)
            spent[name] += time.perf_counter() - t0
        if i % 25 == 0 or i == len(qs):
            print(f"[{label}] {i}/{len(qs)} questions, {time.perf_counter() - t_start:.0f} s", flush=True)
    return {name: s / max(len(qs), 1) for name, s in spent.items()}


def stage_answers(lm: Any, quick: bool, only: set[str] | None, out: Path = OUT) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for spec in DATASETS:
        if only and spec.name not in only:
            continue
        qs = questions(spec, quick)
        sig = SIGNATURES[spec.family]
        progs = {m: Program(Predict(sig, tune=False, answer=m), name=f"zero_shot_{m}") for m in ("parse", "constrained")}
        secs = interleaved(progs, qs, lm, f"answers {spec.name}")
        res = {m: run_eval(p, qs, lm, f"{spec.name}.zero_shot_{m}", out / "checkpoints") for m, p in progs.items()}
        for m in progs:
            print(f"[answers] {spec.name} {m}: {res[m].summary()}", flush=True)
        r_parse = row(spec, "zero_shot", res["parse"], answer="parse", live_seconds_per_question=round(secs["parse"], 3))
        r_con = row(spec, "zero_shot", res["constrained"], answer="constrained",
                    live_seconds_per_question=round(secs["constrained"], 3),
                    paired_vs_parse=paired(res["parse"], res["constrained"], "parse", "constrained"))
        if spec.name == "mmlu_medical":
            for r, key in ((r_parse, "parse"), (r_con, "constrained")):
                r["by_subject"] = {s: {"n": c.n, "accuracy": round(c.mean, 4), "ci95": [round(c.low, 4), round(c.high, 4)],
                                       "abstention": round(_abst(res[key], s), 4)}
                                   for s, c in res[key].by_subject().items()}
        rows += [r_parse, r_con]
        _save(out / "answer_methods", rows, quick, datasets={d.name: d.note for d in DATASETS},
              note="live_seconds_per_question: parse runs first on each question, constrained then reuses the "
                   "KV cache for the same prompt; seconds_per_question in the rows are cache-hit evaluations")
    return {"rows": rows}


def _abst(res: EvalResult, subject: str) -> float:
    rs = [r for r in res.records if (r.subject or "(none)") == subject]
    return sum(r.answer is None for r in rs) / len(rs) if rs else 0.0


def _save(base: Path, rows: list[dict[str, Any]], quick: bool, **extra: Any) -> Path:
    """Write the rows, keeping rows of other (dataset, program, answer) keys already in the file
    (several processes may each run some datasets)."""
    fname = f"{base.relative_to(RESULTS)}{'.quick' if quick else ''}.json"
    key = lambda r: (r["dataset"], r["program"], r.get("answer"))  # noqa: E731
    mine = {key(r) for r in rows}
    try:
        old = json.loads((RESULTS / fname).read_text(encoding="utf-8")).get("rows", [])
    except (OSError, ValueError):
        old = []
    merged = [r for r in old if key(r) not in mine] + rows
    order = {d.name: i for i, d in enumerate(DATASETS)}
    merged.sort(key=lambda r: (order.get(r["dataset"], 99), r["program"], r.get("answer") or ""))
    return save_json(fname, {"wording": WORDING, "quick": quick, "machine": machine(), "rows": merged, **extra})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="12 questions per dataset, tiny compiles")
    ap.add_argument("--stage", choices=("answers", "compile", "eval", "all"), default="all")
    ap.add_argument("--datasets", default="", help="comma-separated subset of " + ",".join(d.name for d in DATASETS))
    ap.add_argument("--lm", default="local", help="model spec (default: the embedded model); e.g. 'sim' to "
                    "check the pipeline in seconds (results then go to powered-<spec>/)")
    args = ap.parse_args(argv)
    only = set(filter(None, args.datasets.split(","))) or None
    out = OUT if args.lm == "local" else RESULTS / f"powered-{args.lm.replace(':', '_').replace('/', '_')}"
    out.mkdir(parents=True, exist_ok=True)
    lm = make_lm(args.lm, n_ctx=4096) if args.lm == "local" else make_lm(args.lm)
    if args.stage in ("answers", "all"):
        stage_answers(lm, args.quick, only, out)
    if args.stage in ("compile", "eval", "all"):
        from powered_stages import stage_compile, stage_eval  # noqa: PLC0415 - heavy, only when asked

        progs = stage_compile(lm, args.quick, out)
        if args.stage in ("eval", "all"):
            stage_eval(lm, progs, args.quick, only, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
