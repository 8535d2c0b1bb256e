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

`--rule additive` adds a second pick from the same scores: the best configuration by an
additive (main effects) model fitted to all configurations' dev scores, so each choice's
effect is estimated from every configuration that differs in it (pooled), not from one
configuration's own n questions. It measures what pooling across configurations buys.
`--budget B` takes the free scoring away: only B calls of it (see `budgeted_picks`).

Dev scores are the simulator's own answers on n dev questions (the oracle's vectorised
mirror, `replicates` independent realisations of the model's per-prompt noise, each a
separate dev draw); test accuracy is the expected accuracy on the same 127 test
questions as `bench_optimizer_regret.py`.

    python benchmarks/bench_selection_floor.py                 # 6 builtin profiles x 5 seeds, n = 40, 100, 254
    python benchmarks/bench_selection_floor.py --instructions user   # the user's instruction only
    python benchmarks/bench_selection_floor.py --rule additive --dev 40,100   # + pick by an additive model
    python benchmarks/bench_selection_floor.py --budget 250 --dev 40   # only 250 calls to score with
    python benchmarks/bench_selection_floor.py --quick         # 1 profile, 1 seed, n = 40

Writes benchmarks/results/selection_floor.{json,md,png} (selection_floor_user_instruction.* with
--instructions user, selection_floor_additive.* with --rule additive; --quick adds _quick).
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, save_json  # noqa: E402

from medcompile.compile.pooled import main_effect_design, question_and_main_effects  # noqa: E402


def dev_outcomes(ev: Any, module: Any) -> np.ndarray:
    """Right (1) or wrong (0) on each of the evaluator's questions, per replicate: (R, Q)."""
    ident = np.tile(np.arange(ev.O), (len(ev.qs), 1))
    out = ev.run(module, ident, "", {})
    winner = np.argmax(ev.counts(out.leaves), axis=2)
    ok = ev.true >= 0
    return ((winner == ev.true[None, :]) & ok[None, :]).astype(float)


def dev_scores(ev: Any, module: Any) -> np.ndarray:
    """Accuracy on the evaluator's questions, one value per replicate (a realised dev score)."""
    return dev_outcomes(ev, module).mean(axis=1)


def budgeted_picks(outcomes: np.ndarray, design: np.ndarray, cost: np.ndarray, budget: int, per_config: int,
                   rng: random.Random) -> dict[str, int]:
    """One replicate's picks when only `budget` calls may be spent: configurations in random
    order, each scored on `per_config` random dev questions, while they fit. `argmax`: the best
    mean among those scored; `additive`: the best of all configurations by an additive model
    (question effects + main effects) fitted to every observation; `additive_scored`: the
    same model's best among those scored. outcomes: (configs, Q)."""
    n_conf, n_q = outcomes.shape
    order = list(range(n_conf))
    rng.shuffle(order)
    spent, seen, obs = 0.0, [], []
    for c in order:
        if spent + cost[c] * per_config <= budget:
            spent += cost[c] * per_config
            seen.append(c)
            obs += [(c, q) for q in rng.sample(range(n_q), min(per_config, n_q))]
    beta = question_and_main_effects([(c, q, outcomes[c, q]) for c, q in obs], design, n_q)
    pred = design @ beta[n_q:]
    raw = {c: float(np.mean([outcomes[c, q] for cc, q in obs if cc == c])) for c in seen}
    return {"argmax": max(seen, key=lambda c: (raw[c], -cost[c], -c)),
            "additive": int(np.lexsort((cost, -pred))[0]),
            "additive_scored": max(seen, key=lambda c: (pred[c], -cost[c], -c))}


def main_effects(rows: list[Any]) -> np.ndarray:
    """Design matrix of an additive model over configurations: intercept + the compiler's
    main-effect indicators (`medcompile.compile.pooled.main_effect_design`)."""
    design = main_effect_design([r.params for r in rows])[1]
    return np.hstack([np.ones((len(rows), 1)), design])


def additive_fit(design: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Fitted dev scores (configs, R) of the additive model, one least-squares fit per replicate."""
    beta = np.linalg.lstsq(design, scores, rcond=None)[0]
    return design @ beta


def floor_cell(profile: Any, seed: int, dev_sizes: list[int], replicates: int, instructions: str,
               rule: str = "argmax", budget: int = 0, per_config: int = 8) -> list[dict[str, Any]]:
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
        outcomes = np.stack([dev_outcomes(ev, apply(prog.root, r.params, banks)) for r in o.rows])  # (C, R, Q)
        scores = outcomes.mean(axis=2)
        cost = np.array([r.calls_per_question for r in o.rows])
        test = np.array([r.expected_accuracy for r in o.rows])
        chosen: dict[str, list[int]] = {}
        if budget:
            design = main_effects(o.rows)[:, 1:]  # the question effects replace the intercept
            for j in range(replicates):
                got = budgeted_picks(outcomes[:, j, :], design, cost, budget, per_config,
                                     random.Random(1000 * seed + j))
                for name, c in got.items():
                    chosen.setdefault(name, []).append(c)
        else:
            ranked = {"argmax": scores}
            if rule == "additive":
                ranked["additive"] = additive_fit(main_effects(o.rows), scores)
            chosen = {name: [int(np.lexsort((cost, -v[:, j]))[0]) for j in range(replicates)]
                      for name, v in ranked.items()}
        for name, picks in chosen.items():
            regrets = [100 * (best - test[i]) for i in picks]
            rows.append({"profile": profile_name(profile), "seed": seed, "dev_n": len(dev), "rule": name,
                         "configurations": len(o.rows), "oracle": round(best, 6), "instructions": instructions,
                         **({"budget": budget, "per_config": per_config} if budget else {}),
                         "regret_mean": round(statistics.mean(regrets), 3), "regrets": [round(r, 3) for r in regrets],
                         "one_call_picks": sum(cost[i] == 1.0 for i in picks), "replicates": replicates})
    return rows


Cell = tuple[float, float, float, int]  # mean, CI low, CI high, seeds


def summarise(rows: list[dict[str, Any]], profiles: list[str], sizes: list[int], rules: list[str]
              ) -> dict[str, dict[tuple[int, str], Cell]]:
    """{profile: {(n, rule): mean regret over seeds with its t 95% CI}}, in table order."""
    from regret.stats import mean_ci

    out: dict[str, dict[tuple[int, str], Cell]] = {}
    for prof in profiles:
        out[prof] = {}
        for n in sizes:
            for rule in rules:
                xs = [r["regret_mean"] for r in rows if r["profile"] == prof and r["dev_n"] == min(n, 254)
                      and r["rule"] == rule]
                c = mean_ci(xs)
                out[prof][(n, rule)] = (c.mean, c.low, c.high, len(xs)) if c.n > 1 else (c.mean, c.mean, c.mean, len(xs))
    return out


def plot(table: dict[str, dict[tuple[int, str], Cell]], path: Path, title: str) -> None:
    """Grouped bars: one group per profile, one bar per (n, rule), with the CI as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    profiles = list(table)
    columns = list(next(iter(table.values())))
    width = 0.8 / max(1, len(columns))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(profiles)), 4.0))
    for j, col in enumerate(columns):
        ms = [table[p][col][0] for p in profiles]
        err = [[table[p][col][0] - table[p][col][1] for p in profiles],
               [table[p][col][2] - table[p][col][0] for p in profiles]]
        ax.bar([i + j * width for i in range(len(profiles))], ms, width, yerr=err, capsize=2,
               label=f"n = {col[0]}, {col[1]}")
    ax.axhline(2.0, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xticks([i + width * (len(columns) - 1) / 2 for i in range(len(profiles))], profiles, rotation=20, fontsize=8)
    ax.set_ylabel("regret, accuracy points")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--dev", default="40,100,254", help="dev sample sizes (40 = budget 400's dev in the regret benchmark)")
    ap.add_argument("--replicates", type=int, default=8, help="independent dev draws per cell")
    ap.add_argument("--profiles", default="", help="comma list of builtin profiles (default: all six)")
    ap.add_argument("--instructions", choices=("oracle", "user"), default="oracle",
                    help="the idealised optimizer's instruction candidates: the user's and the best reachable one "
                         "(oracle), or the user's only (user: adds what instruction discovery would have found)")
    ap.add_argument("--rule", choices=("argmax", "additive"), default="argmax",
                    help="additive: also pick by an additive (main effects) model of the dev scores")
    ap.add_argument("--budget", type=int, default=0,
                    help="spend only this many calls scoring configurations (random order, --per-config questions "
                         "each) and compare argmax with the additive model's picks (implies --rule additive)")
    ap.add_argument("--per-config", type=int, default=8, help="dev questions per configuration with --budget")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
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
            got = floor_cell(p, s, sizes, a.replicates, a.instructions, a.rule, a.budget, a.per_config)
            rows.extend(got)
            print(f"[{time.perf_counter() - t0:.0f}s] {profile_name(p)} seed {s}: "
                  + ", ".join(f"n={r['dev_n']} {r['rule']} regret {r['regret_mean']:.1f}" for r in got), flush=True)
    rules = (["argmax", "additive", "additive_scored"] if a.budget
             else ["argmax"] + (["additive"] if a.rule == "additive" else []))
    name = ("selection_floor" + ("_user_instruction" if a.instructions == "user" else "")
            + (f"_budget{a.budget}" + (f"_m{a.per_config}" if a.per_config != 8 else "") if a.budget else "_additive" if a.rule == "additive" else "")
            + ("_quick" if a.quick else ""))
    md = ["# Regret floor of choosing on n dev questions (idealised optimizer)", "",
          f"Command: `python benchmarks/bench_selection_floor.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
          "", "Every configuration of the end-to-end space (instruction candidates: "
          + ("the user's and the best reachable one" if a.instructions == "oracle" else "the user's only")
          + ") scored on n dev questions for free; the best dev score is chosen (ties: fewer calls). "
          "Regret = oracle - expected test accuracy of the pick, points; mean over seeds (each the mean of "
          f"{a.replicates} dev draws) with a t 95% CI over seeds."
          + (" `additive`: the pick of an additive (main effects) model least-squares fitted to every "
             "configuration's dev score, from the same scores." if a.rule == "additive" and not a.budget else "")
          + (f" Budgeted: only {a.budget} calls are spent scoring configurations, drawn in random order, each on "
             f"{a.per_config} random dev questions while they fit; `argmax` = best mean among those scored, "
             "`additive` = best of all configurations by an additive model (question effects + main effects) "
             "fitted to every observation, `additive_scored` = that model's best among those scored."
             if a.budget else ""), "",
          "| profile | " + " | ".join(f"n = {n}" + (f", {r}" if len(rules) > 1 else "") for n in sizes for r in rules)
          + " |", "|---|" + "---|" * (len(sizes) * len(rules))]
    table = summarise(rows, [profile_name(p) for p in profiles], sizes, rules)
    for prof, cells in table.items():
        md.append(f"| {prof} | " + " | ".join(f"{m:.1f} [{lo:.1f}, {hi:.1f}] ({k} seeds)"
                                            for (m, lo, hi, k) in cells.values()) + " |")
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    plot(table, RESULTS / f"{name}.png", "idealised optimizer: regret of its pick (points, t 95% CI over seeds)")
    save_json(f"{name}.json", {"rows": rows, "dev_sizes": sizes, "replicates": a.replicates, "seeds": a.seeds})
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
