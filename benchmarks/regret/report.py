"""The MD table and the plot of the regret benchmark, from its rows alone.

Regret in accuracy points (oracle - test, x100). CIs: t over seeds. Paired
comparisons: per seed, (other optimizer's regret - medcompile's regret) on the same
world, mean and paired t 95% CI; a CI that includes 0 is "not resolved".
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from .stats import MeanCI, mean_ci, verdict

REF = "medcompile"
ORDER = ["medcompile", "random_search", "medprompt_fixed", "dspy_labeled", "dspy_bootstrap", "dspy_bootstrap_rs",
         "dspy_knn", "dspy_mipro", "dspy_gepa"]


def _order(names: set[str]) -> list[str]:
    known = [n for n in ORDER if n in names]
    return known + sorted(n for n in names if n not in ORDER)


def _md(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def group(rows: Sequence[dict[str, Any]]) -> dict[tuple, dict[int, dict[str, Any]]]:
    """(comparison, profile, budget, optimizer) -> seed -> row."""
    g: dict[tuple, dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        g[(r["comparison"], r["profile"], r["budget"], r["optimizer"])][r["seed"]] = r
    return g


def regret_ci(by_seed: dict[int, dict[str, Any]]) -> MeanCI:
    return mean_ci([r["regret"] for r in by_seed.values() if r["regret"] is not None])


def paired(ref: dict[int, dict[str, Any]], other: dict[int, dict[str, Any]]) -> MeanCI:
    seeds = [s for s in ref if s in other and ref[s]["regret"] is not None and other[s]["regret"] is not None]
    return mean_ci([other[s]["regret"] - ref[s]["regret"] for s in seeds])


def checks(rows: Sequence[dict[str, Any]], g: dict[tuple, dict[int, dict[str, Any]]]) -> list[str]:
    """The issue's acceptance figures, computed from the rows."""
    out: list[str] = []
    profiles = sorted({r["profile"] for r in rows})
    budgets = sorted({r["budget"] for r in rows})
    for comp in ("end_to_end", "same_space"):
        for b in budgets:
            by = g.get((comp, "nothing_helps", b, REF))
            if by:
                ok = [s for s, r in by.items() if r["calls_per_question"] is not None and r["calls_per_question"] <= 1]
                out.append(f"- nothing_helps, {comp}, budget {b}: medcompile chose a 1-call program in "
                           f"**{len(ok)} of {len(by)}** seeds (target >= 8 of 10)")
    for comp in ("end_to_end", "same_space"):
        b = 400 if 400 in budgets else (budgets[len(budgets) // 2] if budgets else None)
        if b is None:
            continue
        per = []
        for p in profiles:
            ci = regret_ci(g.get((comp, p, b, REF), {}))
            if ci.n:
                per.append((p, ci))
        if per:
            bad = [p for p, ci in per if ci.mean > 0.02]
            out.append(f"- {comp}, budget {b}: medcompile mean regret <= 2 points on "
                       f"**{len(per) - len(bad)} of {len(per)}** profiles"
                       + (f" (over: {', '.join(f'{p} {100 * ci.mean:.1f}' for p, ci in per if p in bad)})" if bad else ""))
            dspy = sorted({k[3] for k in g if k[0] == comp and k[2] == b and k[3].startswith("dspy_")})
            for d in dspy:
                wins = sum(1 for p, _ in per if g.get((comp, p, b, d))
                           and paired(g[(comp, p, b, REF)], g[(comp, p, b, d)]).low > 0)
                n = sum(1 for p, _ in per if g.get((comp, p, b, d)))
                out.append(f"  - vs {d}: medcompile's regret lower with the paired 95% CI excluding 0 on "
                           f"**{wins} of {n}** profiles (target >= 5 of 6)")
    return out


def write(rows: Sequence[dict[str, Any]], meta: dict[str, Any], md_path: Path, png_path: Path) -> None:
    g = group(rows)
    lines = ["# Does the optimizer choose well? Regret on the simulated model family", ""]
    cfg = meta.get("config", {})
    seeds = sorted({r["seed"] for r in rows})
    reps = sorted({r.get("replicates") for r in rows if r.get("replicates") is not None})
    tests = sorted({r.get("test_n") for r in rows if r.get("test_n") is not None})
    lines += ["Commands that produced these rows (resumable phases, in order):", "",
              *[f"    {c}" for c in meta.get("commands", [meta.get("command", "")])], "",
              f"Test questions per row: {tests or [cfg.get('test_n') or 254]} (a fixed seeded sample of the "
              "test split; the oracle is computed on the same questions).", "",
              *[f"Note: {n}" for n in cfg.get("note", [])], "",
              f"{len(rows)} rows; profiles: {', '.join(sorted({r['profile'] for r in rows}))}; seeds: "
              f"{seeds[0] if seeds else '-'}..{seeds[-1] if seeds else '-'} ({len(seeds)}); budgets: "
              f"{sorted({r['budget'] for r in rows})} model calls per compile, enforced at the simulator; test "
              f"accuracy = simulator's expected accuracy on the MedQA-US4 test split (mean of "
              f"{reps} replicate(s) of the model's per-prompt noise); regret = oracle - test in "
              f"accuracy points, mean over seeds with a t 95% CI [low, high].", ""]
    if cfg.get("seeds_at"):
        lines += [f"**Reduced grid:** seeds per budget {cfg['seeds_at']} (other budgets: {cfg.get('seeds')} seeds), "
                  "to fit the machine.", ""]
    lines += ["Checks from the issue:", "", *checks(rows, g), ""]
    lines += ["Coverage (seeds with a result, min-max over profiles, per budget and optimizer; end_to_end):", "",
              *coverage(g), ""]
    lines += ["medcompile's choice, calls per question of the chosen program (share of runs choosing 1 call):", "",
              *choices(g), ""]
    for comp in ("end_to_end", "same_space"):
        keys = [k for k in g if k[0] == comp]
        if not keys:
            continue
        opts = _order({k[3] for k in keys})
        cells = sorted({(k[1], k[2]) for k in keys})
        lines += [f"## {comp}: mean regret, points (95% CI over seeds)", ""]
        body = []
        for p, b in cells:
            orc = [r["oracle_accuracy"] for o in opts for r in g.get((comp, p, b, o), {}).values()]
            body.append([p, b, f"{100 * sum(orc) / len(orc):.1f}" if orc else "-"]
                        + [regret_ci(g.get((comp, p, b, o), {})).fmt() + _fails(g.get((comp, p, b, o), {}))
                           for o in opts])
        lines += [_md(["profile", "budget", "oracle acc %"] + opts, body), ""]
        lines += [f"### {comp}: paired difference against medcompile (other - medcompile regret, points; "
                  "+ = medcompile chose better)", ""]
        others = [o for o in opts if o != REF]
        body = []
        for p, b in cells:
            ref = g.get((comp, p, b, REF), {})
            row = [p, b]
            for o in others:
                d = paired(ref, g.get((comp, p, b, o), {}))
                row.append("-" if not d.n else f"{d.fmt(signed=True)} {verdict(d)}")
            body.append(row)
        lines += [_md(["profile", "budget"] + others, body), ""]
        lines += [f"### {comp}: calls per question of the chosen program / compile calls (means)", ""]
        body = []
        for p, b in cells:
            row = [p, b]
            for o in opts:
                rs = list(g.get((comp, p, b, o), {}).values())
                cpq = [r["calls_per_question"] for r in rs if r["calls_per_question"] is not None]
                cc = [r["compile_calls"] for r in rs]
                row.append(f"{sum(cpq) / len(cpq):.2f} / {sum(cc) / len(cc):.0f}" if rs and cpq else
                           (f"- / {sum(cc) / len(cc):.0f}" if cc else "-"))
            body.append(row)
        lines += [_md(["profile", "budget"] + opts, body), ""]
    fails = [r for r in rows if r["status"] != "ok"]
    over = [r for r in rows if not r.get("budget_ok", True)]
    lines += ["## Failures and budget", "",
              f"{len(fails)} failed run row(s) (no program: counted in the 'x failed' notes above, left out of the "
              f"means); {len(over)} row(s) whose compile spent more than its budget."]
    for r in fails[:30]:
        lines.append(f"- {r['profile']} s{r['seed']} b{r['budget']} {r['optimizer']} ({r['comparison']}): "
                     f"{(r.get('error') or '')[:200]}")
    lines += ["", "## Settings", "", *SETTINGS_DOC, ""]
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        plot(rows, g, png_path)
    except Exception as e:  # noqa: BLE001 - the table matters more than the picture
        print("plot failed:", e)


def coverage(g: dict[tuple, dict[int, dict[str, Any]]]) -> list[str]:
    budgets = sorted({k[2] for k in g})
    opts = _order({k[3] for k in g if k[0] == "end_to_end"})
    rows = []
    for o in opts:
        row = [o]
        for b in budgets:
            ns = [len(v) for k, v in g.items() if k[0] == "end_to_end" and k[2] == b and k[3] == o]
            row.append(f"{min(ns)}-{max(ns)} ({len(ns)} profiles)" if ns else "-")
        rows.append(row)
    return [_md(["optimizer"] + [f"budget {b}" for b in budgets], rows)]


def choices(g: dict[tuple, dict[int, dict[str, Any]]]) -> list[str]:
    out = []
    for comp in ("end_to_end", "same_space"):
        keys = sorted(k for k in g if k[0] == comp and k[3] == REF)
        rows = []
        for k in keys:
            cpq = [r["calls_per_question"] for r in g[k].values() if r["calls_per_question"] is not None]
            if cpq:
                rows.append([k[1], k[2], f"{sum(cpq) / len(cpq):.2f}", f"{sum(c <= 1 for c in cpq)}/{len(cpq)}"])
        if rows:
            out += [f"{comp}:", "", _md(["profile", "budget", "mean calls/question", "1-call choices"], rows), ""]
    return out


def _fails(by_seed: dict[int, dict[str, Any]]) -> str:
    n = sum(1 for r in by_seed.values() if r["regret"] is None)
    return f" ({n} failed)" if n else ""


SETTINGS_DOC = [
    "- Data: MedQA-US4 split by realidx % 5 (bank 765 = exemplars / DSPy trainset, dev 254, test 254). Searchers "
    "score on a seeded dev sample of budget/10 questions (at least 16): 16 / 40 / 100 at budgets 150 / 400 / 1000, "
    "the same rule for medcompile, random search, BootstrapFewShotWithRandomSearch, MIPROv2 (valset) and GEPA (valset).",
    "- medcompile: `medcompile.optimize(program, bank, dev, lm=world.lm(budget=B), budget=B, seed=seed)` with default "
    "options, temporary study storage. end_to_end program: ready-made `medprompt` "
    "(Vote(Shuffle(SelfCoT(demos=Retrieve(k=5))))); same_space program: `SelfCoT(demos=Retrieve(k=5))`.",
    "- random_search: the same preparation as optimize (rationales on 30% of the budget, 3 proposed instructions), "
    "configurations drawn uniformly from the same space, each scored on the whole dev sample, best mean kept "
    "(ties: fewer calls), at most 24 trials and within the budget.",
    "- medprompt_fixed: rationales for min(budget, 765) bank questions (wrong ones dropped), kNN k=5, CoT, 5 shuffles "
    "+ vote, default instruction, temperature 0; no search.",
    "- DSPy 3.4.1 with ChatAdapter, caches off, num_threads=1, the simulator's `dspy_lm(budget=B)`; max_errors very "
    "high so the simulator's refusals past the budget do not abort an optimizer that can keep its best-so-far. "
    "Student: dspy.ChainOfThought(question, options -> answer) (the same compiled program is scored against both "
    "comparisons' oracles); `_predict` rows use dspy.Predict. LabeledFewShot(k=16); BootstrapFewShot(4 bootstrapped, "
    "16 labeled); BootstrapFewShotWithRandomSearch(num_candidate_programs = 0.9B/(dev+8) - 3, at least 1); "
    "KNNFewShot(k=5, WordLlama vectors; it bootstraps on the neighbours at inference time, so its calls per question "
    "are > 1 and its compile costs 0); MIPROv2(auto=None, num_candidates 3/5/8 for B <300/<700/>=700, minibatch "
    "min(35, dev/2, B/20) >= 4, num_trials the largest that fits 90% of B with full evals every 5 trials); "
    "GEPA(max_metric_calls = 0.7B, reflection_lm = the same budgeted simulator, feedback = the gold letter).",
    "- Oracle: `world.oracle(declared program, bank, test)`: every configuration of the comparison's medcompile "
    "space scored by the simulator's own probabilities; DSPy programs are outside that space (other prompts, "
    "instructions, demos), so their regret can be negative.",
]


def plot(rows: Sequence[dict[str, Any]], g: dict[tuple, dict[int, dict[str, Any]]], png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comps = [c for c in ("end_to_end", "same_space") if any(k[0] == c for k in g)]
    profiles = sorted({r["profile"] for r in rows})
    if not comps or not profiles:
        return
    fig, axes = plt.subplots(len(comps), len(profiles), figsize=(3.6 * len(profiles), 3.4 * len(comps)),
                             squeeze=False, sharey="row")
    cmap = plt.get_cmap("tab10")
    opts_all = _order({k[3] for k in g})
    color = {o: cmap(i % 10) for i, o in enumerate(opts_all)}
    for i, comp in enumerate(comps):
        for j, p in enumerate(profiles):
            ax = axes[i][j]
            for o in opts_all:
                bs = sorted({k[2] for k in g if k[0] == comp and k[1] == p and k[3] == o})
                pts = [(b, regret_ci(g[(comp, p, b, o)])) for b in bs]
                pts = [(b, ci) for b, ci in pts if ci.n]
                if not pts:
                    continue
                xs = [b for b, _ in pts]
                ys = [100 * ci.mean for _, ci in pts]
                # CIs from 2 seeds (t = 12.7) would swamp the panel: bars only from 3 seeds on
                err = [[100 * (ci.mean - ci.low) if ci.n > 2 else 0 for _, ci in pts],
                       [100 * (ci.high - ci.mean) if ci.n > 2 else 0 for _, ci in pts]]
                ax.errorbar(xs, ys, yerr=err, marker="o", ms=3, lw=2.2 if o == REF else 1, capsize=2,
                            color=color[o], label=o)
            ax.axhline(0, color="gray", lw=0.8, ls="--")
            ax.set_xscale("log")
            bs_all = sorted({k[2] for k in g})
            ax.set_xticks(bs_all)
            ax.set_xticklabels([str(b) for b in bs_all], fontsize=7)
            ax.minorticks_off()
            ax.set_title(f"{p}\n{comp}", fontsize=9)
            ax.set_ylim(-5, 45)
            ax.set_xlabel("budget (model calls)", fontsize=8)
            if j == 0:
                ax.set_ylabel("regret, accuracy points")
    h, labels = axes[0][0].get_legend_handles_labels()
    seeds = {b: max(len({r["seed"] for r in rows if r["budget"] == b and r["optimizer"] == o}) for o in opts_all)
             for b in sorted({r["budget"] for r in rows})}
    fig.legend(h, labels, loc="lower center", ncol=min(9, len(labels)), fontsize=8,
               title="mean regret over seeds; bars: t 95% CI where >= 3 seeds (seeds per budget: "
                     + ", ".join(f"{b}: {n}" for b, n in seeds.items()) + ")")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
