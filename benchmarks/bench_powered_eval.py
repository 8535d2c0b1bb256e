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
from powered_interim import interim_markdown, interim_rows, paired_fields

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


CAPS: dict[str, int] = {}  # --cap: fewer questions than the issue's n (stated in every row)


def questions(spec: DataSpec, quick: bool) -> list[Question]:
    """The dataset's questions in run order; a --cap keeps the first N of that order, which
    are exactly the questions an interrupted run finished first."""
    qs = split_named(load_dataset(spec.dataset), spec.split).questions
    n = min(spec.n or len(qs), len(qs))
    if quick:
        n = min(n, 12)
    out = sample(qs, n, seed=0) if n < len(qs) else list(qs)
    return out[:CAPS[spec.name]] if spec.name in CAPS else out


def row(spec: DataSpec, program: str, res: EvalResult, **extra: Any) -> dict[str, Any]:
    acc, u = res.accuracy, res.usage_per_question()
    planned = spec.n or len(split_named(load_dataset(spec.dataset), spec.split).questions)
    return {"dataset": spec.name, "program": program, "n": res.n, "n_planned": planned, "accuracy": round(acc.mean, 4),
            "ci95": [round(acc.low, 4), round(acc.high, 4)], "abstention": round(res.abstention_rate, 4),
            "abstained": sum(r.answer is None for r in res.records),
            "calls_per_question": round(u["logical"]["calls"], 3),
            "prompt_tokens_per_question": round(u["logical"]["prompt_tokens"], 1),
            "completion_tokens_per_question": round(u["logical"]["completion_tokens"], 1),
            "seconds_per_question": round(sum(r.latency_s for r in res.records) / max(res.n, 1), 3),
            "chance": None if res.chance is None else round(res.chance, 4), "model": res.model, **extra}


def paired(a: EvalResult, b: EvalResult, name_a: str, name_b: str) -> dict[str, Any]:
    c = compare_evals(a, b, name_a=name_a, name_b=name_b)
    return {"vs": name_a, "n": len(c.ids), **paired_fields(c.stats)}


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


class _StoredLatency:
    """Replays the LM disk cache with the latency each response had when it was made (a
    cache hit normally reports its lookup time), so a rerun reports the model's own time."""

    def __init__(self, lm: Any) -> None:
        inner = lm
        while not hasattr(inner, "cache") and hasattr(inner, "inner"):
            inner = inner.inner
        self.cache = getattr(inner, "cache", None)
        self.model, self.mode = lm.model, lm.mode

    def complete(self, request: Any) -> Any:
        from dataclasses import replace

        from medcompile.lm.base import LMError

        hit = self.cache.get(replace(request, model=self.model).cache_key()) if self.cache else None
        if hit is None:
            raise LMError("not in the cache")
        return hit


def model_seconds(progs: dict[str, Program], qs: list[Question], lm: Any) -> dict[str, float]:
    """Mean seconds of model time per question, as recorded when each call was made."""
    replay = _StoredLatency(lm)
    out = {}
    for name, prog in progs.items():
        total = sum(prog.run(q, replay).usage.latency_s for q in qs)  # type: ignore[arg-type]
        out[name] = total / max(len(qs), 1)
    return out


def stage_answers(lm: Any, quick: bool, only: set[str] | None, out: Path = OUT) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for spec in DATASETS:
        if only and spec.name not in only:
            continue
        qs = questions(spec, quick)
        sig = SIGNATURES[spec.family]
        progs = {m: Program(Predict(sig, tune=False, answer=m), name=f"zero_shot_{m}") for m in ("parse", "constrained")}
        interleaved(progs, qs, lm, f"answers {spec.name}")
        secs = model_seconds(progs, qs, lm)
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
              note="live_seconds_per_question: the model's own time per question as recorded when the call was "
                   "made (parse runs first on each question; constrained then reuses llama.cpp's KV cache for the "
                   "same prompt, so its time is the scoring alone); seconds_per_question in these rows are "
                   "evaluations served from the LM cache. Timings are from a 2-core machine at load average "
                   "15-35 (other jobs), far slower than idle.")
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


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def compiled_programs(folder: Path) -> list[str]:
    """A table of the compiled programs: what each chose, on how many dev questions, and
    what its compile spent against its budget (an overspend is flagged, with its cause)."""
    reports = sorted(folder.glob("*/*.report.json"))
    if not reports:
        return []
    lines = ["## Compiled programs", "", "| family | program | chosen | calls/q | dev accuracy (95% CI), n | "
             "compile calls / budget |", "|---|---|---|---:|---|---|"]
    for path in reports:
        info = json.loads(path.read_text(encoding="utf-8"))["compile"]
        b, dev = info["budget"], info["dev"]
        chosen = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in info["chosen"].items())
        ci = f" ({_pct(dev['ci95'][0])}-{_pct(dev['ci95'][1])})" if "ci95" in dev else ""
        spent = f"{b['spent_calls']} / {b['max_calls']}"
        if b["spent_calls"] > b["max_calls"]:
            spent += (" **over**: compiled before the fix (a4af2af) that counts rationale follow-up calls against "
                      "the budget" if "preparation_calls" not in b else " **over budget**")
        lines.append(f"| {path.parent.name} | {path.name.split('.')[0]} | {chosen} | {info['calls_per_question']:g} | "
                     f"{_pct(dev['score'])}{ci}, n = {dev['n']} | {spent} |")
    return lines + [""]


def write_markdown(out: Path) -> Path | None:
    """answer_methods.md and powered.md from the JSON rows (whatever exists so far)."""
    lines = ["# Powered evaluation on the embedded model", "", f"_{WORDING}_", ""]
    am = out / "answer_methods.json"
    if am.exists():
        d = json.loads(am.read_text(encoding="utf-8"))
        lines += ["## Parse vs constrained direct answers (zero-shot, same questions)", "",
                  "| dataset | n | answering | accuracy % (95% CI) | abstained | paired diff constrained - parse "
                  "(95% CI) | McNemar p | s/question (live) |", "|---|---:|---|---|---:|---|---:|---:|"]
        for r in d["rows"]:
            p = r.get("paired_vs_parse")
            diff = f"{100 * p['diff']:+.1f} ({100 * p['diff_ci95'][0]:+.1f} to {100 * p['diff_ci95'][1]:+.1f})" if p else ""
            lines.append(f"| {r['dataset']} | {r['n']} | {r['answer']} | {_pct(r['accuracy'])} ({_pct(r['ci95'][0])}-"
                         f"{_pct(r['ci95'][1])}) | {_pct(r['abstention'])}% ({r['abstained']}) | {diff} | "
                         f"{p['mcnemar_p']:.3g} |" if p else
                         f"| {r['dataset']} | {r['n']} | {r['answer']} | {_pct(r['accuracy'])} ({_pct(r['ci95'][0])}-"
                         f"{_pct(r['ci95'][1])}) | {_pct(r['abstention'])}% ({r['abstained']}) | | |")
            lines[-1] += f" {r.get('live_seconds_per_question', '')} |"
            if r.get("by_subject"):
                for s_, v in r["by_subject"].items():
                    lines.append(f"| &nbsp;&nbsp;{s_} | {v['n']} | {r['answer']} | {_pct(v['accuracy'])} "
                                 f"({_pct(v['ci95'][0])}-{_pct(v['ci95'][1])}) | {_pct(v['abstention'])}% | | | |")
        lines.append("")
    pw = out / "powered.json"
    if pw.exists():
        d = json.loads(pw.read_text(encoding="utf-8"))
        lines += ["## Programs x datasets", "", "| dataset | program | n | accuracy % (95% CI) | abstained | calls/q | "
                  "prompt tok/q | s/q (wall, this run; ~0 when served from the LM cache) | vs zero_shot: diff (95% CI), McNemar p |", "|---|---|---:|---|---:|---:|---:|---:|---|"]
        for r in d["rows"]:
            p = r.get("paired_vs_zero_shot")
            cmp = (f"{100 * p['diff']:+.1f} ({100 * p['diff_ci95'][0]:+.1f} to {100 * p['diff_ci95'][1]:+.1f}), "
                   f"p={p['mcnemar_p']:.3g}") if p else ""
            lines.append(f"| {r['dataset']} | {r['program']} | {r['n']} | {_pct(r['accuracy'])} ({_pct(r['ci95'][0])}-"
                         f"{_pct(r['ci95'][1])}) | {_pct(r['abstention'])}% | {r['calls_per_question']:.2f} | "
                         f"{r['prompt_tokens_per_question']:.0f} | {r['seconds_per_question']:.2f} | {cmp} |")
        if d.get("missing"):
            lines += ["", "Not run: " + ", ".join(d["missing"])]
        lines.append("")
    done = {(r["dataset"], r["program"]) for r in d["rows"]} if pw.exists() else set()
    interim = interim_rows(out / "checkpoints", done) if (out / "checkpoints").is_dir() else []
    save_json(f"{out.relative_to(RESULTS)}/interim.json", {"wording": WORDING, "rows": interim})
    lines += interim_markdown(interim)
    lines += compiled_programs(out / "programs")
    if len(lines) <= 4:
        return None
    path = out / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="12 questions per dataset, tiny compiles")
    ap.add_argument("--stage", choices=("answers", "compile", "eval", "all", "report"), default="all")
    ap.add_argument("--datasets", default="", help="comma-separated subset of " + ",".join(d.name for d in DATASETS))
    ap.add_argument("--lm", default="local", help="model spec (default: the embedded model); e.g. 'sim' to "
                    "check the pipeline in seconds (results then go to powered-<spec>/)")
    ap.add_argument("--programs", default="", help="comma-separated subset of zero_shot,few_shot,medprompt,"
                    "ensemble_refinement (zero_shot is always evaluated: the paired comparisons need it)")
    ap.add_argument("--cap", default="", help="e.g. pubmedqa=200: evaluate only the first N questions of a "
                    "dataset's run order (to report the finished part of an interrupted run; rows state their n)")
    args = ap.parse_args(argv)
    only = set(filter(None, args.datasets.split(","))) or None
    for item in filter(None, args.cap.split(",")):
        name, _, n = item.partition("=")
        CAPS[name.strip()] = int(n)
    out = OUT if args.lm == "local" else RESULTS / f"powered-{args.lm.replace(':', '_').replace('/', '_')}"
    out.mkdir(parents=True, exist_ok=True)
    if args.stage == "report":
        print(write_markdown(out))
        return 0
    lm = make_lm(args.lm, n_ctx=4096) if args.lm == "local" else make_lm(args.lm)
    if args.stage in ("answers", "all"):
        stage_answers(lm, args.quick, only, out)
    if args.stage in ("compile", "eval", "all"):
        from powered_stages import PROGRAMS, stage_compile, stage_eval  # noqa: PLC0415 - heavy, only when asked

        names = tuple(n for n in PROGRAMS if not args.programs or n == "zero_shot" or n in args.programs.split(","))
        progs = stage_compile(lm, args.quick, out, names)
        if args.stage in ("eval", "all"):
            stage_eval(lm, progs, args.quick, only, out, names)
    write_markdown(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
