"""Benchmark: how low can regret go when the choice is made on n dev questions? (a floor)

The regret benchmark's optimizers choose on budget/10 dev questions (40 at budget 400).
This measures what that sample size alone costs, for a generous idealised optimizer:
it has the best reachable instruction among its candidates (the oracle's own set), it
scores *every* configuration of the end-to-end search space on all n dev questions for
free, and it picks the best dev score (ties: fewer calls). Its regret (oracle minus the
expected test accuracy of its pick) comes only from choosing on n questions; no budget,
search order or instruction discovery is involved. A real optimizer spends its budget
to score only some configurations, so where this floor is above a target, no choice
rule that reads n dev questions can be expected to meet it.

Dev scores are the simulator's own answers on n dev questions (the oracle's vectorised
mirror, `replicates` independent realisations of the model's per-prompt noise, each a
separate dev draw); test accuracy is the expected accuracy on the same 127 test
questions as `bench_optimizer_regret.py`.

    python benchmarks/bench_selection_floor.py                 # 6 builtin profiles x 5 seeds, n = 40, 100, 254
    python benchmarks/bench_selection_floor.py --instructions user   # the user's instruction only
    python benchmarks/bench_selection_floor.py --quick         # 1 profile, 1 seed, n = 40

Writes benchmarks/results/selection_floor.{json,md} (selection_floor_user_instruction.* with
--instructions user; --quick adds _quick).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, save_json  # noqa: E402


def dev_scores(ev: Any, module: Any) -> np.ndarray:
    """Accuracy on the evaluator's questions, one value per replicate (a realised dev score)."""
    ident = np.tile(np.arange(ev.O), (len(ev.qs), 1))
    out = ev.run(module, ident, "", {})
    winner = np.argmax(ev.counts(out.leaves), axis=2)
    ok = ev.true >= 0
    return ((winner == ev.true[None, :]) & ok[None, :]).mean(axis=1)


def floor_cell(profile: Any, seed: int, dev_sizes: list[int], replicates: int, instructions: str
               ) -> list[dict[str, Any]]:
    from regret.programs import declared
    from regret.world import Cell, load_splits, oracle_kwargs, profile_name

    from medcompile.compile.space import apply
    from medcompile.data import sample
    from medcompile.sim.oracle import _Evaluator, rationale_banks

    cell = Cell(profile, seed, load_splits(127))
    w, prog = cell.world, declared("end_to_end")
    kw = oracle_kwargs(w, prog.signature.instruction)
    banks, _ = rationale_banks(w, prog, cell.splits.bank)
    o = w.oracle(prog, banks, cell.splits.test, **kw)
    best = o.expected_accuracy  # regret is always against the full oracle (best reachable instruction)
    if instructions == "user":  # the idealised optimizer holds only the user's instruction
        o = w.oracle(prog, banks, cell.splits.test, instructions=[prog.signature.instruction])
    rows = []
    for n in dev_sizes:
        dev = sample(list(cell.splits.dev), min(n, len(cell.splits.dev)), seed=seed)
        ev = _Evaluator(w, dev, replicates)
        scores = np.stack([dev_scores(ev, apply(prog.root, r.params, banks)) for r in o.rows])  # (configs, R)
        cost = np.array([r.calls_per_question for r in o.rows])
        test = np.array([r.expected_accuracy for r in o.rows])
        picks = [int(np.lexsort((cost, -scores[:, j]))[0]) for j in range(replicates)]
        regrets = [100 * (best - test[i]) for i in picks]
        rows.append({"profile": profile_name(profile), "seed": seed, "dev_n": len(dev), "configurations": len(o.rows),
                     "oracle": round(best, 6), "instructions": instructions, "regret_mean": round(statistics.mean(regrets), 3),
                     "regrets": [round(r, 3) for r in regrets],
                     "one_call_picks": sum(cost[i] == 1.0 for i in picks), "replicates": replicates})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--dev", default="40,100,254", help="dev sample sizes (40 = budget 400's dev in the regret benchmark)")
    ap.add_argument("--replicates", type=int, default=8, help="independent dev draws per cell")
    ap.add_argument("--profiles", default="", help="comma list of builtin profiles (default: all six)")
    ap.add_argument("--instructions", choices=("oracle", "user"), default="oracle",
                    help="the idealised optimizer's instruction candidates: the user's and the best reachable one "
                         "(oracle), or the user's only (user: adds what instruction discovery would have found)")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    from regret.stats import mean_ci
    from regret.world import profile_name, resolve_profiles

    names = [p for p in a.profiles.split(",") if p]
    if a.quick:
        names, a.seeds, a.dev, a.replicates = names or ["strong_chat"], 1, "40", 2
    profiles = resolve_profiles(names, [], 0, 0)
    sizes = [int(x) for x in a.dev.split(",")]
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for p in profiles:
        for s in range(a.seeds):
            got = floor_cell(p, s, sizes, a.replicates, a.instructions)
            rows.extend(got)
            print(f"[{time.perf_counter() - t0:.0f}s] {profile_name(p)} seed {s}: "
                  + ", ".join(f"n={r['dev_n']} regret {r['regret_mean']:.1f}" for r in got), flush=True)
    name = "selection_floor" + ("_user_instruction" if a.instructions == "user" else "") + ("_quick" if a.quick else "")
    md = ["# Regret floor of choosing on n dev questions (idealised optimizer)", "",
          f"Command: `python benchmarks/bench_selection_floor.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
          "", "Every configuration of the end-to-end space (instruction candidates: "
          + ("the user's and the best reachable one" if a.instructions == "oracle" else "the user's only")
          + ") scored on n dev questions for free; the best dev score is chosen (ties: fewer calls). "
          "Regret = oracle - expected test accuracy of the pick, points; mean over seeds (each the mean of "
          f"{a.replicates} dev draws) with a t 95% CI over seeds.", "",
          "| profile | " + " | ".join(f"n = {n}" for n in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for p in profiles:
        cells = []
        for n in sizes:
            xs = [r["regret_mean"] for r in rows if r["profile"] == profile_name(p) and r["dev_n"] == min(n, 254)]
            c = mean_ci(xs)
            m, lo, hi = (c.mean, c.low, c.high) if c.n > 1 else (c.mean, c.mean, c.mean)
            cells.append(f"{m:.1f} [{lo:.1f}, {hi:.1f}] ({len(xs)} seeds)")
        md.append(f"| {profile_name(p)} | " + " | ".join(cells) + " |")
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    save_json(f"{name}.json", {"rows": rows, "dev_sizes": sizes, "replicates": a.replicates, "seeds": a.seeds})
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
