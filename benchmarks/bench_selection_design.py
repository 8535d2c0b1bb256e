"""Benchmark: which search design should `optimize` use by default? Chosen on random profiles.

Runs `optimize` (end_to_end: the Medprompt program) with each variant of the search
design on the same cells (a random simulated profile x a seed: a fresh world) and reports
mean regret (oracle - expected test accuracy, points), the paired regret difference
against the first variant (mean, +-2 standard errors over cells) and the share of
one-call programs. Profiles are drawn at random (`--profile-seed`), never the builtin
ones the regret benchmark reports on, so defaults are not tuned to them.

    python benchmarks/bench_selection_design.py --variants variants.json --random-profiles 8 \
        --profile-seed 505 --seeds 2 --budget 400 --out selection_design_505

`--variants`: a JSON object {name: optimize options}; without it, `before` (the options
of the previous release) against `default` (today's defaults). Rows go to
benchmarks/results/<out>.jsonl as they finish (resumable); the summary to <out>.md.
`--quick`: two random profiles, one seed, budget 150.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS  # noqa: E402

#: The search design of the release before the design options (what "before" means).
BEFORE = {"screen": False, "patient_racing": False, "select_on": "confirmation", "select_rule": "not_worse",
          "select_alpha": 0.05, "max_rationales": "30%"}
DEFAULT_VARIANTS = {"before": BEFORE, "default": {}}
_CFG: dict[str, Any] = {}


def _options(opts: dict[str, Any], budget: int) -> dict[str, Any]:
    out = dict(opts)
    if out.get("max_rationales") == "30%":
        out["max_rationales"] = max(1, int(budget * 0.3))
    return out


def job(args: tuple[int, int, str]) -> dict[str, Any]:
    pi, seed, name = args
    from regret.mc_runs import _answers
    from regret.programs import declared
    from regret.world import Cell, dev_for_budget, load_splits, resolve_profiles

    from medcompile.compile import optimize

    prof = resolve_profiles([], [], _CFG["n_profiles"], _CFG["profile_seed"])[pi]
    budget = _CFG["budget"]
    cell = Cell(prof, seed, load_splits(127), oracle_cache=RESULTS / "selection_design.oracles.jsonl")
    lm = cell.world.lm(mode="text", replicate=0, budget=budget)
    dev = dev_for_budget(cell.splits.dev, budget, seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="seldesign_") as tmp:
        try:
            prog = optimize(declared("end_to_end"), cell.splits.bank, dev, lm=lm, budget=budget, seed=seed,
                            out=Path(tmp) / "p.json", quiet=True, **_options(_CFG["variants"][name], budget))
        except Exception as e:  # noqa: BLE001 - a failed compile is a row, not a crash
            return {"profile": cell.name, "seed": seed, "variant": name, "error": f"{type(e).__name__}: {e}"[:300]}
    acc = cell.expected_accuracy(_answers(cell, prog, "text"), 1)
    oracle = cell.oracle("end_to_end").expected_accuracy
    return {"profile": cell.name, "seed": seed, "variant": name, "budget": budget, "test": round(acc, 6),
            "oracle": round(oracle, 6), "regret": round(100 * (oracle - acc), 4), "cpq": prog.calls_per_question(),
            "chosen": prog.compile_info.get("chosen"), "wall_s": round(time.perf_counter() - t0, 1)}


def summarise(rows: list[dict[str, Any]], names: list[str]) -> list[str]:
    ok = [r for r in rows if "regret" in r and r["variant"] in names]
    ref = {(r["profile"], r["seed"]): r["regret"] for r in ok if r["variant"] == names[0]}
    out = ["| variant | cells | mean regret (points) | paired diff vs " + names[0] + " [+-2 SE] | one-call programs | "
           "mean calls/question |", "|---|---:|---:|---|---:|---:|"]
    for v in names:
        rs = [r for r in ok if r["variant"] == v]
        if not rs:
            continue
        d = [r["regret"] - ref[(r["profile"], r["seed"])] for r in rs if (r["profile"], r["seed"]) in ref]
        dm = statistics.mean(d) if d else 0.0
        se = statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else 0.0
        out.append(f"| {v} | {len(rs)} | {statistics.mean(r['regret'] for r in rs):.1f} | {dm:+.1f} "
                   f"[{dm - 2 * se:+.1f}, {dm + 2 * se:+.1f}] | {sum(r['cpq'] == 1.0 for r in rs)}/{len(rs)} | "
                   f"{statistics.mean(r['cpq'] for r in rs):.2f} |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="", help="JSON file {name: optimize options}; default: before vs default")
    ap.add_argument("--random-profiles", type=int, default=8)
    ap.add_argument("--profile-seed", type=int, default=505)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--budget", type=int, default=400)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="selection_design")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    if a.quick:
        a.random_profiles, a.seeds, a.budget, a.out = 2, 1, 150, a.out + "_quick"
    variants = json.loads(Path(a.variants).read_text()) if a.variants else DEFAULT_VARIANTS
    _CFG.update(n_profiles=a.random_profiles, profile_seed=a.profile_seed, budget=a.budget, variants=variants)
    path = RESULTS / f"{a.out}.jsonl"
    done = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            done[(r["profile"], r["seed"], r["variant"])] = r
    from regret.world import profile_name, resolve_profiles

    names = [profile_name(p) for p in resolve_profiles([], [], a.random_profiles, a.profile_seed)]
    todo = [(pi, s, v) for pi in range(len(names)) for s in range(a.seeds) for v in variants
            if (names[pi], s, v) not in done]
    t0 = time.perf_counter()
    with mp.Pool(a.jobs, initializer=_CFG.update, initargs=(dict(_CFG),)) as pool, path.open("a") as f:
        for i, r in enumerate(pool.imap_unordered(job, todo), 1):
            f.write(json.dumps(r) + "\n")
            f.flush()
            done[(r["profile"], r["seed"], r["variant"])] = r
            print(f"[{i}/{len(todo)} {time.perf_counter() - t0:.0f}s] {r['profile']} s{r['seed']} {r['variant']}: "
                  + (f"regret {r['regret']:.1f} cpq {r['cpq']}" if "regret" in r else r["error"]), flush=True)
    table = summarise(list(done.values()), list(variants))
    md = [f"# Search design on random profiles ({a.out})", "",
          f"Command: `python benchmarks/bench_selection_design.py {' '.join(argv or sys.argv[1:])}`", "",
          f"{a.random_profiles} random profiles (profile seed {a.profile_seed}) x {a.seeds} seeds, budget {a.budget}, "
          "end_to_end (Medprompt program), dev = budget/10 questions, test = expected accuracy on 127 MedQA test "
          "questions. Variants:", "", *[f"- `{k}`: `{json.dumps(v)}`" for k, v in variants.items()], "", *table, ""]
    (RESULTS / f"{a.out}.md").write_text("\n".join(md), encoding="utf-8")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
