"""Benchmark: which selection rule should `optimize` use by default? Chosen on random profiles.

Runs `medcompile optimize` (end_to_end, the Medprompt program) with each selection
variant on the same cells (profile x seed: a fresh simulated world) and reports, per
variant, mean regret (oracle - expected test accuracy, points, t 95% CI over cells),
the share of 1-call choices (Wilson 95% CI), and the paired regret difference against
today's rule (t 95% CI over cells). The profiles are drawn at random
(`--random-profiles N --profile-seed S`), never the builtin ones, so the default is not
tuned to the profiles the regret benchmark reports on. Uses the regret benchmark's
worlds, dev rule (budget/10 questions) and oracles (benchmarks/regret/).

    nice -n 10 python benchmarks/bench_selection_tuning.py --random-profiles 6 --profile-seed 101 --seeds 3 --jobs 2

Writes benchmarks/results/selection_tuning.{json,md} (resumable through
selection_tuning.partial.jsonl). `--quick`: one random profile, one seed, 64 test questions.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, save_json  # noqa: E402

from regret.stats import mean_ci  # noqa: E402
from regret.world import Cell, load_splits, profile_name, resolve_profiles  # noqa: E402

#: name -> optimize options. "today" is the rule before this experiment.
VARIANTS: dict[str, dict[str, Any]] = {
    "not_worse_a0.05": {"select_rule": "not_worse", "select_alpha": 0.05},
    "ahead_a0.05": {"select_rule": "ahead", "select_alpha": 0.05},
    "ahead_a0.2": {"select_rule": "ahead", "select_alpha": 0.2},
    # rationale stage capped at 8 per exemplar slot of the largest k (5): 40, not 30% of the budget
    "not_worse_a0.05_r40": {"select_rule": "not_worse", "select_alpha": 0.05, "max_rationales": 40},
    "ahead_a0.2_r40": {"select_rule": "ahead", "select_alpha": 0.2, "max_rationales": 40},
    # added after the five above showed every choice is 1-call: costlier finalists were never confirmed
    # (no room left); the search keeps room to confirm every finalist
    "ahead_a0.2_r40_reserve": {"select_rule": "ahead", "select_alpha": 0.2, "max_rationales": 40,
                               "reserve_finalists": True},
    "not_worse_a0.05_r40_reserve": {"select_rule": "not_worse", "select_alpha": 0.05, "max_rationales": 40,
                                    "reserve_finalists": True},
    # more of the dev set confirms (24 of 40 questions), the search races on fewer
    "ahead_a0.2_r40_reserve_c0.6": {"select_rule": "ahead", "select_alpha": 0.2, "max_rationales": 40,
                                    "reserve_finalists": True, "confirm_fraction": 0.6},
    # a bound, not a candidate default: buy extra calls whenever the costlier one is ahead at all (alpha 0.5)
    "ahead_a0.5_r40_reserve": {"select_rule": "ahead", "select_alpha": 0.5, "max_rationales": 40,
                               "reserve_finalists": True},
}
REFERENCE = "not_worse_a0.05"
COMPARISON = "end_to_end"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def work(job: tuple[Any, int, argparse.Namespace, set]) -> None:
    from regret import mc_runs

    profile, seed, a, done = job
    cell = Cell(profile, seed, load_splits(a.test_n), oracle_cache=a.oracle_cache)
    for name in a.variants:
        if (cell.name, seed, name) in done:
            continue
        t0 = time.perf_counter()
        out = mc_runs.run_optimize(cell, COMPARISON, a.budget, seed, options=VARIANTS[name])
        acc = cell.expected_accuracy(out.answer, a.replicates) if out.answer is not None else None
        oracle = float(cell.oracle(COMPARISON).expected_accuracy)
        row = {"profile": cell.name, "seed": seed, "variant": name, "options": VARIANTS[name], "budget": a.budget,
               "test_accuracy": None if acc is None else round(acc, 6), "oracle_accuracy": round(oracle, 6),
               "regret": None if acc is None else round(oracle - round(acc, 6), 6),
               "calls_per_question": out.calls_per_question, "compile_calls": out.compile_calls,
               "status": out.status, "error": out.error, "chosen": out.detail.get("chosen"),
               # why the choice is what it is: the confirmed finalists' costs, and those that did not fit
               "confirmed_calls_per_question": [c["calls_per_question"] for c in
                                                (out.detail.get("selection") or {}).get("candidates", [])],
               "not_confirmed": len((out.detail.get("selection") or {}).get("not_confirmed", [])),
               "wall_s": round(time.perf_counter() - t0, 1)}
        with open(a.partial, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, default=str) + "\n")
        log(f"{cell.name:<12} s{seed} {name:<18} regret {100 * (row['regret'] or float('nan')):+6.1f} "
            f"cpq {row['calls_per_question']} ({row['wall_s']}s) {row['error'] or ''}")


def read_rows(path: Path) -> dict[tuple, dict[str, Any]]:
    rows: dict[tuple, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows[(r["profile"], r["seed"], r["variant"])] = r
    return rows


def wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    z, p = 1.96, k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def summarise(rows: list[dict[str, Any]], variants: list[str]) -> dict[str, Any]:
    ok = [r for r in rows if r["regret"] is not None]
    cells = sorted({(r["profile"], r["seed"]) for r in ok if all(
        any(x["profile"] == r["profile"] and x["seed"] == r["seed"] and x["variant"] == v for x in ok)
        for v in variants)})
    by = {(r["profile"], r["seed"], r["variant"]): r for r in ok}
    out: dict[str, Any] = {"cells": len(cells), "variants": {}}
    for v in variants:
        reg = [by[(p, s, v)]["regret"] for p, s in cells]
        one = sum(1 for p, s in cells if abs((by[(p, s, v)]["calls_per_question"] or 0) - 1.0) < 1e-9)
        m = mean_ci(reg)
        lo, hi = wilson(one, len(cells))
        d = mean_ci([by[(p, s, v)]["regret"] - by[(p, s, REFERENCE)]["regret"] for p, s in cells])
        cpq = mean_ci([by[(p, s, v)]["calls_per_question"] for p, s in cells])
        per_profile = {}
        for prof in sorted({p for p, _ in cells}):
            per_profile[prof] = mean_ci([by[(p, s, v)]["regret"] for p, s in cells if p == prof]).mean
        diag = [by[(p, s, v)] for p, s in cells if "confirmed_calls_per_question" in by[(p, s, v)]]
        out["variants"][v] = {
            "cells_with_costlier_finalist_confirmed": sum(
                1 for r in diag if any(c > 1 for c in r["confirmed_calls_per_question"])) if diag else None,
            "finalists_not_fitting": sum(r["not_confirmed"] for r in diag) if diag else None,
            "options": VARIANTS[v], "regret_mean": m.mean, "regret_ci95": [m.low, m.high],
            "one_call_share": one / len(cells) if cells else None, "one_call_ci95": [lo, hi], "one_call": one,
            "calls_per_question_mean": cpq.mean,
            "diff_vs_reference_mean": d.mean, "diff_vs_reference_ci95": [d.low, d.high],
            "per_profile_regret": per_profile}
    return out


def write_md(summary: dict[str, Any], meta: dict[str, Any], path: Path) -> None:
    def pts(x: float) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.1f}"

    lines = ["# Selection rule: chosen on random profiles", "",
             f"Command: `{meta['command']}`", "",
             f"{summary['cells']} cells (random profiles {', '.join(meta['profiles'])} x seeds {meta['seeds']}), "
             f"budget {meta['budget']}, comparison {COMPARISON}, medcompile only; test accuracy = the simulator's "
             f"expected accuracy on {meta['test_n']} test questions ({meta['replicates']} replicate(s)); regret = "
             "oracle - test, points. CIs: t 95% over cells (regret, paired difference), Wilson 95% (1-call share). "
             f"Differences are paired against `{REFERENCE}` (the rule before this experiment); negative = lower regret.",
             "", "| variant | mean regret [95% CI] | paired diff vs reference [95% CI] | 1-call choices [95% CI] | "
             "mean calls/question | cells with a costlier finalist confirmed | finalists that did not fit |",
             "|---|---|---|---|---|---|---|"]
    for v, s in summary["variants"].items():
        lo, hi = s["regret_ci95"]
        dlo, dhi = s["diff_vs_reference_ci95"]
        ol, oh = s["one_call_ci95"]
        lines.append(f"| {v} | {100 * s['regret_mean']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] | "
                     f"{pts(s['diff_vs_reference_mean'])} [{pts(dlo)}, {pts(dhi)}] | "
                     f"{s['one_call']}/{summary['cells']} [{100 * ol:.0f}%, {100 * oh:.0f}%] | "
                     f"{s['calls_per_question_mean']:.2f} | "
                     f"{'-' if s['cells_with_costlier_finalist_confirmed'] is None else s['cells_with_costlier_finalist_confirmed']} | "
                     f"{'-' if s['finalists_not_fitting'] is None else s['finalists_not_fitting']} |")
    profs = sorted(next(iter(summary["variants"].values()))["per_profile_regret"]) if summary["variants"] else []
    lines += ["", "Mean regret per random profile (points):", "",
              "| profile | " + " | ".join(summary["variants"]) + " |", "|---|" + "---|" * len(summary["variants"])]
    for p in profs:
        lines.append(f"| {p} | " + " | ".join(f"{100 * s['per_profile_regret'][p]:.1f}"
                                               for s in summary["variants"].values()) + " |")
    lines += [""] + [f"- {n}" for n in meta.get("notes", [])]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--random-profiles", type=int, default=6)
    ap.add_argument("--profile-seed", type=int, default=101)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=400)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--replicates", type=int, default=1)
    ap.add_argument("--test-n", type=int, default=127)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", default="selection_tuning")
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("--report-only", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.random_profiles, a.seeds, a.test_n, a.out = 1, 1, 64, "selection_tuning_quick"
    a.variants = [v for v in a.variants.split(",") if v]
    if REFERENCE not in a.variants or any(v not in VARIANTS for v in a.variants):
        ap.error(f"--variants: names from {list(VARIANTS)}, including {REFERENCE}")
    a.partial = RESULTS / f"{a.out}.partial.jsonl"
    a.oracle_cache = RESULTS / f"{a.out}.oracles.jsonl"
    profiles = resolve_profiles([], [], a.random_profiles, a.profile_seed)
    seeds = list(range(a.seeds))
    if not a.report_only:
        done = set(read_rows(a.partial))
        jobs = [(p, s, a, done) for s in seeds for p in profiles]
        log(f"{len(profiles)} random profile(s) x {len(seeds)} seed(s) x {len(a.variants)} variant(s)")
        if a.jobs > 1:
            import medcompile.compile.optimizer  # noqa: F401 - loaded once, before forking
            from regret import mc_runs  # noqa: F401

            with mp.get_context("fork").Pool(a.jobs, maxtasksperchild=2) as pool:
                list(pool.imap_unordered(work, jobs))
        else:
            for j in jobs:
                work(j)
    names = {profile_name(p) for p in profiles}
    rows = [r for r in read_rows(a.partial).values() if r["profile"] in names and r["seed"] in seeds]
    summary = summarise(rows, a.variants)
    command = "python benchmarks/bench_selection_tuning.py " + " ".join(sys.argv[1:])
    if a.report_only:  # keep the command that made the rows
        try:
            command = json.loads((RESULTS / f"{a.out}.json").read_text(encoding="utf-8"))["meta"]["command"]
        except (OSError, KeyError, json.JSONDecodeError):
            pass
    meta = {"command": command,
            "profiles": sorted(names), "seeds": seeds, "budget": a.budget, "test_n": a.test_n,
            "replicates": a.replicates, "reference": REFERENCE, "notes": a.note,
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    save_json(f"{a.out}.json", {"meta": meta, "summary": summary, "rows": sorted(
        rows, key=lambda r: (r["profile"], r["seed"], r["variant"]))})
    write_md(summary, meta, RESULTS / f"{a.out}.md")
    log(f"{len(rows)} rows -> {a.out}.json/.md")
    for v, s in summary["variants"].items():
        log(f"{v:<18} regret {100 * s['regret_mean']:.1f} diff {pts_(s['diff_vs_reference_mean'])} "
            f"[{pts_(s['diff_vs_reference_ci95'][0])}, {pts_(s['diff_vs_reference_ci95'][1])}] 1-call "
            f"{s['one_call']}/{summary['cells']}")
    return 0


def pts_(x: float) -> str:
    return "nan" if x is None or math.isnan(x) else f"{100 * x:+.1f}"


if __name__ == "__main__":
    raise SystemExit(main())
