"""The printed tables, breakdowns and profile, and the PNG of ms per question by bank size."""
from __future__ import annotations

from typing import Any

from _common import RESULTS, md_table


def report(out: dict[str, Any], target: float, stem: str = "overhead") -> None:
    rows = []
    for r in out["rows"]:
        rows.append([r["bank"], r["queries"], f"{r['medcompile_bare']['median_ms']:.2f} / {r['medcompile_bare']['p90_ms']:.2f}",
                     f"{r['medcompile_stack']['median_ms']:.2f} / {r['medcompile_stack']['p90_ms']:.2f}",
                     f"{r['dspy']['median_ms']:.2f} / {r['dspy']['p90_ms']:.2f}" if "dspy" in r else "-",
                     r.get("ratio_dspy_over_medcompile_bare_median", "-"), "yes" if r["meets_target"] else "NO"])
    print()
    print(md_table(["bank", "n questions", "medcompile bare ms median/p90", "medcompile + LM stack ms",
                    "DSPy ms median/p90", "DSPy / medcompile", f"< {target} ms"], rows))
    for r in out["rows"]:
        print(f"\nbreakdown at bank {r['bank']} (ms/question, instrumented):")
        print("  medcompile:", r["breakdown_medcompile_ms_per_q"])
        if "breakdown_dspy_ms_per_q" in r:
            print("  dspy:      ", r["breakdown_dspy_ms_per_q"])
    for key in sorted(k for k in out if k.startswith("profile_")):
        print(f"\n{key}: n=100 questions (top cumulative, medcompile files):")
        for x in out[key][1]["top_cumulative_medcompile"][:12]:
            print(f"  {x['cum_ms_per_q']:8.3f} ms/q cum {x['self_ms_per_q']:8.3f} self  {x['calls_per_q']:7.1f} calls/q  "
                  f"{x['where']} {x['function']}")
        print("top self time (any file):")
        for x in out[key][0]["top_self_time_any"][:10]:
            print(f"  {x['self_ms_per_q']:8.3f} ms/q self {x['calls_per_q']:9.1f} calls/q  {x['where']} {x['function']}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.2))
        xs = [r["bank"] for r in out["rows"]]
        for key, label in (("medcompile_bare", "medcompile (bare)"), ("medcompile_stack", "medcompile + LM stack"),
                           ("dspy", "DSPy")):
            ys = [r[key]["median_ms"] for r in out["rows"] if key in r]
            p90 = [r[key]["p90_ms"] for r in out["rows"] if key in r]
            if ys:
                ax.plot(xs[:len(ys)], ys, marker="o", label=f"{label} median")
                ax.fill_between(xs[:len(ys)], ys, p90, alpha=0.15)
        ax.axhline(target, ls="--", c="red", lw=1, label=f"target {target} ms")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("exemplar bank size")
        ax.set_ylabel(f"ms per question (n={out['rows'][0]['queries']}; band to p90)")
        ax.set_title("Framework overhead per question, 5-call Medprompt program, zero-latency model")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(RESULTS / f"{stem}.png", dpi=110)
    except Exception as e:  # noqa: BLE001
        print("plot failed:", e)
