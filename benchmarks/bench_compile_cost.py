"""Benchmark: what a compile costs (model calls, tokens, wall time) and whether the budget holds.

A ScriptedLM stands in for the model (instant, deterministic: a hash of the prompt
picks the letter), so the figures are the compiler's own accounting. One factor
varies at a time around a base setting (bank 80, dev 16, 8 trials, budget 300):

    bank size   20, 80, 320, 765 (all of the MedQA 'bank' split)
    dev size    8, 16, 32, 64
    trials      4, 8, 16, 32
    budget      40, 100, 300, 1000 (tight budgets must stop the search, not overrun it)

for the ready-made `medprompt` and `few_shot` programs. Every row asserts
spent <= budget, both as the compiler reports it (logical calls) and as the model saw
it (live calls). Then cache and resume: compile once with a cold on-disk cache
(ScriptedLM with 20 ms latency standing in for a fast model), again into a new study
with the warm cache (live calls must be 0; wall-time ratio warm/cold; the program
must be byte-identical), and once more with the same output path (the finished study
is resumed: no new trials).

    python benchmarks/bench_compile_cost.py [--quick]

Writes benchmarks/results/compile_cost.json and compile_cost.png.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, md_table, save_json  # noqa: E402

from medcompile.compile import optimize  # noqa: E402
from medcompile.compile.optimizer import CompileError  # noqa: E402
from medcompile.data import load_dataset, sample, split_named  # noqa: E402
from medcompile.lm.base import LMRequest  # noqa: E402
from medcompile.lm.registry import wrap_lm  # noqa: E402
from medcompile.lm.scripted import ScriptedLM, request_text  # noqa: E402

BASE = {"bank": 80, "dev": 16, "trials": 8, "budget": 300}
GRID = {"bank": [20, 80, 320, 765], "dev": [8, 16, 32, 64], "trials": [4, 8, 16, 32], "budget": [40, 100, 300, 1000]}
QUICK = {"bank": [20, 80], "dev": [8, 16], "trials": [4, 8], "budget": [40, 300]}


def reply(req: LMRequest) -> str:
    text = request_text(req)
    if "A good instruction" in text:  # instruction proposals
        return f"Read the vignette, weigh each option and pick the single best answer (style {req.seed % 4})."
    letter = "ABCD"[int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 4]
    if req.max_tokens > 16:  # chain of thought
        return f"The history and findings are most consistent with option {letter}.\nAnswer: {letter}"
    return f" {letter}"


def compile_once(name: str, bank, dev, lm, budget: int, trials: int, out: Path) -> tuple[Any, float]:  # noqa: ANN001
    build = importlib.import_module(f"programs.{name}").build
    t0 = time.perf_counter()
    prog = optimize(build(), bank, dev, lm=lm, budget=budget, seed=0, out=out, max_trials=trials, minibatch=8,
                    n_instructions=3, quiet=True)
    return prog, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smaller grid (CI smoke run)")
    ap.add_argument("--latency", type=float, default=0.02, help="ScriptedLM latency for the cache experiment, s")
    ap.add_argument("--profile-warm", action="store_true", help="cProfile a warm-cache recompile (hotspots)")
    args = ap.parse_args()
    grid = QUICK if args.quick else GRID
    ds = load_dataset("medqa_us4")
    bank_all = sample(split_named(ds, "bank").questions, 765, seed=0)
    dev_all = sample(split_named(ds, "dev").questions, 64, seed=0)
    out: dict[str, Any] = {"machine": machine(), "base": BASE, "grid": grid, "rows": [], "cache": {}}
    rows_print = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        k = 0
        for factor, values in grid.items():
            for v in values:
                cfg = dict(BASE, **{factor: v})
                for name in ("medprompt", "few_shot"):
                    k += 1
                    lm = ScriptedLM(reply)
                    err = None
                    t0 = time.perf_counter()
                    try:
                        prog, wall = compile_once(name, bank_all[:cfg["bank"]], dev_all[:cfg["dev"]], lm,
                                                  cfg["budget"], cfg["trials"], tmpd / f"r{k}.json")
                        info = prog.compile_info or {}
                        spent = info["budget"]["spent_calls"]
                        u = info["usage"]
                    except CompileError as e:  # a budget too small to score anything: say so, check the spend
                        wall, err = time.perf_counter() - t0, str(e)
                        info = {"trials": {}}
                        spent = lm.calls  # bare ScriptedLM, no cache: logical == live
                        u = {"prompt_tokens": sum(len(request_text(r).split()) for r in lm.requests),
                             "completion_tokens": None}
                    assert spent <= cfg["budget"], f"budget exceeded: {spent} > {cfg['budget']} ({cfg})"
                    assert lm.calls <= cfg["budget"], f"live calls exceeded the budget: {lm.calls} > {cfg['budget']}"
                    row = {"vary": factor, "program": name, **cfg, "spent_calls": spent, "live_calls": lm.calls,
                           "prompt_tokens": u.get("prompt_tokens"), "completion_tokens": u.get("completion_tokens"),
                           "prep_calls": (info.get("rationales") or {}).get("attempted", 0),
                           "trial_states": info.get("trials"), "wall_s": round(wall, 2),
                           "calls_per_question_chosen": info.get("calls_per_question"),
                           "within_budget": spent <= cfg["budget"], "error": err}
                    out["rows"].append(row)
                    rows_print.append([factor, name, cfg["bank"], cfg["dev"], cfg["trials"], cfg["budget"], spent,
                                       lm.calls, u.get("prompt_tokens"), u.get("completion_tokens"),
                                       "/".join(str(info["trials"].get(s, 0)) for s in ("COMPLETE", "PRUNED", "FAIL")),
                                       f"{wall:.2f}", (err or "ok")[:70]])
                    print(f"{factor}={v:<5} {name:10} spent {spent:>4}/{cfg['budget']:<5} live {lm.calls:>4} "
                          f"tokens {u.get('prompt_tokens')}+{u.get('completion_tokens')} wall {wall:.2f}s", flush=True)

        # ---- cache and resume ----------------------------------------------------------------------
        cache_dir = tmpd / "cache"
        bank, dev = bank_all[:BASE["bank"]], dev_all[:BASE["dev"]]
        res: dict[str, Any] = {"latency_s": args.latency, "program": "medprompt", **BASE}
        lm_cold = wrap_lm(ScriptedLM(reply, latency=args.latency), cache_dir=cache_dir)
        p_cold, w_cold = compile_once("medprompt", bank, dev, lm_cold, BASE["budget"], BASE["trials"], tmpd / "cold.json")
        cold_live = layers_live(lm_cold)
        lm_warm = wrap_lm(ScriptedLM(reply, latency=args.latency), cache_dir=cache_dir)
        p_warm, w_warm = compile_once("medprompt", bank, dev, lm_warm, BASE["budget"], BASE["trials"], tmpd / "warm.json")
        warm_live = layers_live(lm_warm)
        if args.profile_warm:  # where a compile with zero live calls spends its time
            import cProfile
            import pstats

            pr = cProfile.Profile()
            lm_prof = wrap_lm(ScriptedLM(reply, latency=args.latency), cache_dir=cache_dir)
            pr.enable()
            compile_once("medprompt", bank, dev, lm_prof, BASE["budget"], BASE["trials"], tmpd / "prof.json")
            pr.disable()
            out["warm_profile_top"] = _top(pstats.Stats(pr), 18)
        lm_res = wrap_lm(ScriptedLM(reply, latency=args.latency), cache_dir=cache_dir)
        p_res, w_res = compile_once("medprompt", bank, dev, lm_res, BASE["budget"], BASE["trials"], tmpd / "cold.json")
        res_live = layers_live(lm_res)
        same = _program_bytes(p_cold) == _program_bytes(p_warm) == _program_bytes(p_res)
        assert warm_live == 0, f"warm-cache recompile made {warm_live} live calls"
        res.update({"cold": {"wall_s": round(w_cold, 3), "live_calls": cold_live,
                             "logical_calls": p_cold.compile_info["budget"]["spent_calls"]},
                    "warm_new_study": {"wall_s": round(w_warm, 3), "live_calls": warm_live,
                                       "logical_calls": p_warm.compile_info["budget"]["spent_calls"]},
                    "resume_same_study": {"wall_s": round(w_res, 3), "live_calls": res_live},
                    "ratio_warm_over_cold": round(w_warm / w_cold, 4),
                    "ratio_resume_over_cold": round(w_res / w_cold, 4),
                    "programs_byte_identical": same})
        out["cache"] = res
    save_json("compile_cost.json", out)
    print()
    print(md_table(["vary", "program", "bank", "dev", "trials", "budget", "spent (logical)", "live calls",
                    "prompt tok", "completion tok", "trials C/P/F", "wall s", "status"], rows_print))
    c = out["cache"]
    print(f"\ncache: cold {c['cold']['wall_s']}s ({c['cold']['live_calls']} live calls), warm new study "
          f"{c['warm_new_study']['wall_s']}s ({c['warm_new_study']['live_calls']} live), resume "
          f"{c['resume_same_study']['wall_s']}s ({c['resume_same_study']['live_calls']} live); warm/cold "
          f"{c['ratio_warm_over_cold']}, resume/cold {c['ratio_resume_over_cold']}, byte-identical: "
          f"{c['programs_byte_identical']} (ScriptedLM latency {args.latency * 1000:.0f} ms)")
    if "warm_profile_top" in out:
        print("\nwarm-cache recompile, top cumulative / self time:")
        for r in out["warm_profile_top"]:
            print(f"  cum {r['cum_s']:7.3f}s self {r['self_s']:7.3f}s calls {r['calls']:>7}  {r['where']} {r['function']}")
    plot(out)
    return 0


def _top(st: Any, n: int) -> list[dict[str, Any]]:
    from _common import REPO

    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in st.stats.items():
        f = str(file)
        f = f[len(str(REPO)) + 1:] if f.startswith(str(REPO)) else f[f.find("site-packages/") + 14:] if "site-packages/" in f else f
        rows.append({"where": f"{f}:{line}", "function": func, "calls": nc, "self_s": round(tt, 3), "cum_s": round(ct, 3)})
    return sorted(rows, key=lambda r: -r["cum_s"])[:n] + sorted(rows, key=lambda r: -r["self_s"])[:n]


def layers_live(lm: Any) -> int:
    """Calls that reached the ScriptedLM at the bottom of the stack."""
    x = lm
    while hasattr(x, "inner"):
        x = x.inner
    return x.calls


def _program_bytes(p: Any) -> str:
    d = p.to_dict()
    d.pop("compile", None)  # compile metadata holds wall times and study names
    import json

    return json.dumps(d, sort_keys=True)


def plot(out: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    factors = list(out["grid"])
    fig, axes = plt.subplots(1, len(factors), figsize=(4 * len(factors), 3.6))
    for ax, f in zip(axes, factors):
        for name, m in (("medprompt", "o"), ("few_shot", "s")):
            rows = [r for r in out["rows"] if r["vary"] == f and r["program"] == name]
            ax.plot([r[f] for r in rows], [r["spent_calls"] for r in rows], marker=m, label=f"{name} spent")
        rows = [r for r in out["rows"] if r["vary"] == f and r["program"] == "medprompt"]
        ax.plot([r[f] for r in rows], [r["budget"] for r in rows], ls="--", c="red", label="budget")
        ax.set_xscale("log")
        vals = sorted({r[f] for r in out["rows"] if r["vary"] == f})
        ax.minorticks_off()
        ax.set_xticks(vals, [str(v) for v in vals])
        ax.set_xlabel(f)
        ax.set_ylabel("model calls per compile")
        ax.legend(fontsize=7)
    fig.suptitle("Compile cost vs one factor at a time (base: " + ", ".join(f"{k} {v}" for k, v in out["base"].items())
                 + "); spent <= budget in every row")
    fig.tight_layout()
    fig.savefig(RESULTS / "compile_cost.png", dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
