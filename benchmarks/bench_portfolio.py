"""Medprompt+ portfolio (Route) against the full ensemble and its cheapest member.

Simulated models (default): for each profile and seed (a fresh world: new latent difficulty,
topic and bias per question over MedQA-US4 bank/dev/test), three programs are compiled on the
same bank and dev split with the same seed and budget:
  - screen:   kNN 5-shot direct answer (1 call; its confidence = the option probability)
  - ensemble: Medprompt's recipe, kNN 5-shot self-generated CoT, 5 choice shuffles, vote (5 calls)
  - route:    Route([screen, ensemble]); the compiler chooses the threshold (or screen only / ensemble
              only) on dev and records the measured calls per question.
Each is run on the whole test split for several model replicates (the simulator's per-prompt noise);
accuracy and calls per question are the replicate means. Seeds are the unit of replication: mean
with a t 95% CI over seeds, and paired (same seed) differences route - ensemble.

`--lm local`: one run on the embedded real model (Gemma 3 270M, near chance on MedQA): the three
programs frozen, not compiled (rationale generation and a threshold search are out of reach at
~3 s per reasoning call), thresholds as given by --thresholds, on --limit MedQA test questions.

    python benchmarks/bench_portfolio.py [--quick] [--seeds 10] [--profiles noisy_sampler base_model]
    nice -n 10 python benchmarks/bench_portfolio.py --lm local --limit 30
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS, machine, save_json  # noqa: E402
from benchmarks.regret.stats import mean_ci  # noqa: E402

import medcompile as mc  # noqa: E402
from medcompile.modules.route import SKIP  # noqa: E402

THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, SKIP)


PROGRAMS = ("screen", "ensemble", "route", "cascade", "cascade_fixed")


def cot_votes(n: int, k: int = 5) -> mc.Module:
    return mc.Vote(mc.Shuffle(mc.SelfCoT(demos=mc.Retrieve(k=k, strategy="knn", tune=False), tune=False),
                              n=n, tune=False))


def declared(which: str, thresholds: tuple = THRESHOLDS, n: int = 5, k: int = 5) -> mc.Program:
    screen = mc.Predict(demos=mc.Retrieve(k=k, strategy="knn", tune=False), tune=False)
    if which == "screen":
        return mc.Program(screen, name="screen")
    if which == "ensemble":
        return mc.Program(cot_votes(n, k), name="ensemble")
    if which == "route":  # Medprompt+ as published: a direct answer screens, the ensemble takes the rest
        return mc.Program(mc.Route([screen, cot_votes(n, k)], tune={"threshold0": list(thresholds)}), name="route")
    # an ensemble that stops early: 2 shuffles agree -> done; else a 3rd; else all 5 (repeats cost nothing)
    members = [cot_votes(2, k), cot_votes(3, k), cot_votes(n, k)]
    if which == "cascade_fixed":  # the same, thresholds declared, not searched: stop on 2 of 2, else 3 of 3
        return mc.Program(mc.Route(members, thresholds=[1.0, 1.0], tune=False), name="cascade")
    return mc.Program(mc.Route(members, tune={"threshold0": [0.0, 1.0, SKIP], "threshold1": [0.6, 1.0, SKIP]}),
                      name="cascade")


def evaluate(prog: mc.Program, test: list, lms: list) -> dict[str, Any]:
    accs, cpqs = [], []
    for lm in lms:
        res = prog.run_many(test, lm)
        accs.append(sum(r.correct for r in res) / len(res))
        cpqs.append(sum(r.usage.calls for r in res) / len(res))
    return {"accuracy": sum(accs) / len(accs), "calls_per_question": sum(cpqs) / len(cpqs),
            "replicates": len(lms), "n": len(test)}


def sim_rows(profiles: list[str], seeds: list[int], dev_n: int, test_n: int, replicates: int, budget: int,
             log, programs: tuple[str, ...] = PROGRAMS) -> list[dict[str, Any]]:
    from medcompile.data import load_dataset, split_named
    from medcompile.sim import SimWorld

    ds = load_dataset("medqa_us4")
    bank, dev, test = (split_named(ds, s).questions for s in ("bank", "dev", "test"))
    dev, test = dev[:dev_n], test[:test_n]
    rows = []
    for profile in profiles:
        for seed in seeds:
            world = SimWorld(bank + dev + test, profile=profile, seed=seed)
            t0 = time.perf_counter()
            for which in programs:
                lm = world.lm(replicate=0)
                prog = mc.optimize(declared(which), bank, dev, lm=lm, budget=budget, seed=seed, quiet=True,
                                   max_trials=10, n_instructions=0, max_rationales=200,
                                   out=None, storage="sqlite:///:memory:")
                info = prog.compile_info or {}
                ev = evaluate(prog, test, [world.lm(replicate=1 + r) for r in range(replicates)])
                row = {"profile": profile, "seed": seed, "program": which, **ev,
                       "dev_accuracy": info.get("dev", {}).get("score"),
                       "dev_calls_per_question": info.get("calls_per_question"),
                       "compile_calls": info.get("budget", {}).get("spent_calls"),
                       "threshold": (list(prog.root.thresholds) if which in PORTFOLIOS else None)}
                rows.append(row)
            got = {r["program"]: r for r in rows[-len(programs):]}
            log(f"{profile} seed {seed}: " + ", ".join(
                f"{w} {100 * got[w]['accuracy']:.1f}% @ {got[w]['calls_per_question']:.2f} calls/q"
                + (f" {got[w]['threshold']}" if got[w]["threshold"] else "") for w in programs)
                + f" ({time.perf_counter() - t0:.0f}s)")
    return rows


LABELS = {"screen": "screen: kNN 5-shot direct answer (cheapest member)",
          "ensemble": "full ensemble: kNN 5-shot CoT x 5 shuffles + vote",
          "route": "Route [screen -> ensemble] (Medprompt+, compiled threshold)",
          "cascade": "Route [CoT x2 -> x3 -> x5] (early-stopping ensemble, compiled thresholds)",
          "cascade_fixed": "Route [CoT x2 -> x3 -> x5], thresholds declared 1.0 / 1.0 (compiled, not searched)"}
PORTFOLIOS = ("route", "cascade", "cascade_fixed")


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for profile in sorted({r["profile"] for r in rows}):
        present = [w for w in PROGRAMS if any(r["profile"] == profile and r["program"] == w for r in rows)]
        by = {w: {r["seed"]: r for r in rows if r["profile"] == profile and r["program"] == w} for w in present}
        seeds = sorted(set.intersection(*(set(by[w]) for w in present)))
        s: dict[str, Any] = {"seeds": len(seeds), "programs": present}
        for w in present:
            a = mean_ci([by[w][x]["accuracy"] for x in seeds])
            c = mean_ci([by[w][x]["calls_per_question"] for x in seeds])
            s[w] = {"accuracy": [a.mean, a.low, a.high], "calls_per_question": [c.mean, c.low, c.high]}
        for w in (p for p in PORTFOLIOS if p in present):
            d = mean_ci([by[w][x]["accuracy"] - by["ensemble"][x]["accuracy"] for x in seeds])
            d2 = mean_ci([by[w][x]["accuracy"] - by["screen"][x]["accuracy"] for x in seeds])
            ratio = mean_ci([by[w][x]["calls_per_question"] / by["ensemble"][x]["calls_per_question"] for x in seeds])
            s[w].update({"minus_ensemble": [d.mean, d.low, d.high], "minus_screen": [d2.mean, d2.low, d2.high],
                         "calls_ratio_to_ensemble": [ratio.mean, ratio.low, ratio.high],
                         "thresholds_chosen": [by[w][x]["threshold"] for x in seeds],
                         "within_1_point": d.mean >= -0.01, "ci_excludes_1_point_loss": d.low > -0.01,
                         "at_most_60pct_calls": ratio.mean <= 0.60})
        out[profile] = s
    return out


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    def f(v, scale=100.0, signed=False):
        s = "+" if signed else ""
        return f"{v[0] * scale:{s}.1f} [{v[1] * scale:{s}.1f}, {v[2] * scale:{s}.1f}]"

    lines = ["# Medprompt+ portfolio (Route) vs the full ensemble and its cheapest member", "",
             f"Simulated models, MedQA-US4 test n = {meta['test_n']} per seed x {meta['replicates']} model replicates; "
             f"compiled on dev n = {meta['dev_n']}, budget {meta['budget']} calls. Mean over seeds with t 95% CI; "
             "differences are paired by seed. Commands: " + "; ".join(f"`{c}`" for c in meta.get("commands", [meta["command"]])), ""]
    for profile, s in summary.items():
        lines += [f"## {profile} ({s['seeds']} seeds)", "",
                  "| program | test accuracy % | calls/question |", "|---|---:|---:|"]
        for w in s["programs"]:
            lines.append(f"| {LABELS[w]} | {f(s[w]['accuracy'])} | {f(s[w]['calls_per_question'], 1.0)} |")
        lines.append("")
        for w in (p for p in PORTFOLIOS if p in s["programs"]):
            p = s[w]
            lines += [f"- **{w}**: - ensemble {f(p['minus_ensemble'], signed=True)} points, - screen "
                      f"{f(p['minus_screen'], signed=True)} points; calls {f(p['calls_ratio_to_ensemble'])}% of the "
                      f"ensemble's; within 1 point (mean) **{p['within_1_point']}** (95% CI above -1: "
                      f"{p['ci_excludes_1_point_loss']}), <= 60% of its calls **{p['at_most_60pct_calls']}**; "
                      f"thresholds chosen: {p['thresholds_chosen']}"]
        lines.append("")
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], path: Path, real: dict[str, Any] | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(summary) + (["real: gemma3-270m"] if real else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), squeeze=False)
    colors = {"screen": "tab:gray", "ensemble": "tab:blue", "route": "tab:red", "cascade": "tab:green",
              "cascade_fixed": "tab:olive"}
    for ax, name in zip(axes[0], panels):
        if name in summary:
            s = summary[name]
            for w in s["programs"]:
                a, c = s[w]["accuracy"], s[w]["calls_per_question"]
                ax.errorbar([c[0]], [100 * a[0]], xerr=[[c[0] - c[1]], [c[2] - c[0]]],
                            yerr=[[100 * (a[0] - a[1])], [100 * (a[2] - a[0])]], fmt="o", color=colors[w], label=w,
                            capsize=3)
            ax.set_title(f"sim {name} ({s['seeds']} seeds, 95% CI)")
        else:
            for r in real["rows"]:  # type: ignore[index]
                w = "route" if r["program"].startswith("route") else r["program"]
                ax.errorbar([r["calls_per_question"]], [100 * r["accuracy"]],
                            yerr=[[100 * (r["accuracy"] - r["ci95"][0])], [100 * (r["ci95"][1] - r["accuracy"])]],
                            fmt="o", color=colors.get(w, "black"), capsize=3)
                ax.annotate(r["program"], (r["calls_per_question"], 100 * r["accuracy"]), fontsize=7)
            ax.set_title(f"{name} (n={real['n']}, 95% CI)")  # type: ignore[index]
        ax.set_xlabel("model calls per question")
        ax.set_ylabel("test accuracy %")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def real_run(limit: int, thresholds: list[float], n: int, log) -> dict[str, Any]:
    """The embedded model, frozen programs (no compile), random 3-shot exemplars from the bank."""
    from medcompile.bank import Bank
    from medcompile.data import load_dataset, split_named
    from medcompile.evaluate.stats import accuracy_ci
    from medcompile.exemplar import Exemplar

    ds = load_dataset("medqa_us4")
    bank = Bank([Exemplar(q) for q in split_named(ds, "bank").questions[:60]])
    test = split_named(ds, "test").questions[:limit]
    lm = mc.make_lm("local")

    def members():
        screen = mc.Predict(demos=mc.Retrieve(k=3, strategy="random", bank=bank, seed=0, tune=False), tune=False)
        ens = mc.Vote(mc.Shuffle(mc.SelfCoT(demos=mc.Retrieve(k=3, strategy="random", bank=bank, seed=0, tune=False),
                                            tune=False), n=n, seed=0, tune=False))
        return screen, ens

    screen, ens = members()
    progs = [("screen", mc.Program(screen, name="screen")), ("ensemble", mc.Program(ens, name="ensemble"))]
    progs += [(f"route@{t:g}", mc.Program(mc.Route([screen, ens], thresholds=[t], tune=False), name="route"))
              for t in thresholds]
    rows = []
    for name, prog in progs:  # the ensemble first: routes then reuse its cached calls (same requests)
        t0 = time.perf_counter()
        res = prog.run_many(test, lm)
        correct = [r.correct for r in res]
        ci = accuracy_ci(correct, seed=0)
        row = {"program": name, "n": len(res), "accuracy": sum(correct) / len(res), "ci95": [ci.low, ci.high],
               "calls_per_question": sum(r.usage.calls for r in res) / len(res),
               "abstentions": sum(r.prediction.answer is None for r in res),
               "screen_confidence": [round(r.prediction.confidence, 4) for r in res] if name == "screen" else None,
               "seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        log(f"real {name}: {100 * row['accuracy']:.1f}% [{100 * ci.low:.1f}, {100 * ci.high:.1f}] n={len(res)}, "
            f"{row['calls_per_question']:.2f} calls/q, {row['seconds']}s")
    return {"model": lm.model, "n": len(test), "rows": rows, "shuffles": n, "exemplars": "random 3-shot from 60 bank items"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one profile, 2 seeds, small dev/test (under 2 minutes)")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--profiles", nargs="+", default=["noisy_sampler", "base_model"])
    ap.add_argument("--dev", type=int, default=254)
    ap.add_argument("--test", type=int, default=254)
    ap.add_argument("--replicates", type=int, default=3)
    ap.add_argument("--budget", type=int, default=20000)
    ap.add_argument("--programs", nargs="+", default=list(PROGRAMS), choices=PROGRAMS,
                    help="sim: programs to (re)run; rows of the others are kept from the last run")
    ap.add_argument("--lm", default="sim", help="'sim' (default) or 'local' for the real-model run")
    ap.add_argument("--limit", type=int, default=30, help="real-model run: MedQA test questions")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.7, 0.9], help="real-model run")
    ap.add_argument("--shuffles", type=int, default=3, help="real-model run: ensemble size")
    a = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, flush=True)

    out_json = RESULTS / "portfolio.json"

    def previous() -> dict[str, Any]:  # read at save time: a real-model run and a sim run may overlap
        return json.loads(out_json.read_text()) if out_json.exists() else {}

    if a.lm == "local":
        real = real_run(a.limit, a.thresholds, a.shuffles, log)
        real["command"] = "python benchmarks/bench_portfolio.py " + " ".join(argv or sys.argv[1:])
        data = {**previous(), "real_model": real, "machine_real": machine()}
    else:
        if a.quick:
            a.profiles, a.seeds, a.dev, a.test, a.replicates = a.profiles[:1], 2, 60, 80, 2
        rows = sim_rows(a.profiles, list(range(a.seeds)), a.dev, a.test, a.replicates, a.budget, log,
                        tuple(a.programs))
        meta = {"dev_n": a.dev, "test_n": a.test, "replicates": a.replicates, "budget": a.budget,
                "seeds": a.seeds, "command": "python benchmarks/bench_portfolio.py " + " ".join(argv or sys.argv[1:])}
        prev = previous()
        # rows of profiles not rerun here are kept (several profiles may run as separate processes)
        redone = {(r["profile"], r["seed"], r["program"]) for r in rows}
        rows = [r for r in prev.get("sim", {}).get("rows", [])
                if (r["profile"], r["seed"], r["program"]) not in redone] + rows
        meta_prev = prev.get("sim", {}).get("meta", {})
        earlier = meta_prev.get("commands") or ([meta_prev["command"]] if meta_prev.get("command") else [])
        meta["commands"] = list(dict.fromkeys(earlier + [meta["command"]]))
        data = {**prev, "sim": {"meta": meta, "summary": summarise(rows), "rows": rows}, "machine": machine()}
    save_json("portfolio.json", data)
    if "sim" in data:
        md = markdown(data["sim"]["summary"], data["sim"]["meta"])
        if "real_model" in data:
            r = data["real_model"]
            md += (f"## Real model: {r['model']} (n = {r['n']} MedQA-US4 test questions, frozen programs, "
                   f"{r['exemplars']}, {r['shuffles']}-shuffle CoT ensemble)\n\n| program | accuracy % [95% CI] | "
                   "calls/question | abstentions |\n|---|---:|---:|---:|\n")
            for row in r["rows"]:
                md += (f"| {row['program']} | {100 * row['accuracy']:.1f} [{100 * row['ci95'][0]:.1f}, "
                       f"{100 * row['ci95'][1]:.1f}] | {row['calls_per_question']:.2f} | {row['abstentions']} |\n")
            conf = next((x["screen_confidence"] for x in r["rows"] if x["program"] == "screen"), None)
            if conf:
                md += (f"\nThe screen's option probability on this model ranged {min(conf):.2f}-{max(conf):.2f}; a "
                       "route escalates every question below its threshold. Intervals this wide resolve nothing.\n")
        (RESULTS / "portfolio.md").write_text(md, encoding="utf-8")
        plot(data["sim"]["summary"], RESULTS / "portfolio.png", data.get("real_model"))
        print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
