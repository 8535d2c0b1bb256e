"""The run's Markdown table (accuracies with CIs, paired comparisons, adapter check, setup)
and the PNG of accuracy and compile calls per program."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from _common import RESULTS, md_table

from .context import Run


def write_reports(run: Run) -> None:
    r = run.results
    rows = []
    for name, c in r["compile"].items():
        t = r["test"].get(name, {})
        acc = t.get("accuracy")
        accs = f"{100 * acc['mean']:.1f} ({100 * acc['low']:.1f}-{100 * acc['high']:.1f})" if acc else "-"
        px = c.get("proxy", {})
        status = c.get("skipped") or (c.get("error", "")[:90] if c.get("error") else "ok")
        la = t.get("lenient", {}).get("accuracy")
        lenient = (f"{100 * la['mean']:.1f} ({100 * la['low']:.1f}-{100 * la['high']:.1f}); no answer "
                   f"{t['lenient']['no_answer']}") if la else "-"
        rows.append([name, px.get("calls", "-"), px.get("refused", "-"), c.get("wall_s", "-"), accs, lenient,
                     t.get("n", "-"), t.get("calls_per_question", "-"), t.get("abstained_or_unparsed", "-"), status])
    lines = [
        "# medcompile vs DSPy on MedQA (same llama_cpp.server endpoint, Gemma 3 270M base)",
        "",
        f"Run {r['machine']['when']}, {r.get('elapsed_s')} s. Data: MedQA-US 4-option, bank {r['data']['bank']}, "
        f"dev {r['data']['dev']}, test n = {r['data'].get('test_done') or 0} (planned {r['data']['test_planned']}). "
        f"Compile budget {r['config']['budget']} model calls each (counted at the HTTP proxy; refused beyond). "
        f"Machine load average at start {r['machine'].get('loadavg_1_5_15')} on {r['machine']['cpu_count']} cores.",
        "",
        md_table(["program", "compile calls", "refused (over budget)", "compile wall s", "test acc % (95% CI)",
                  "DSPy read leniently from raw completions: acc % (95% CI)", "n",
                  "inference calls/q", "no answer", "status"], rows),
        "",
        "## Paired comparisons (medcompile - DSPy, same questions)",
        "",
    ]
    crow = [[c["name_b"], c["name_a"], f"{100 * c['diff']['mean']:+.1f}",
             f"{100 * c['diff']['low']:+.1f} to {100 * c['diff']['high']:+.1f}", f"{c['mcnemar_p']:.3g}",
             f"{c['wtl']['wins']}/{c['wtl']['ties']}/{c['wtl']['losses']}", c["diff"]["n"]] for c in r["comparisons"]]
    lines.append(md_table(["medcompile", "DSPy", "diff pts", "95% CI", "McNemar p", "win/tie/loss", "n"], crow))
    if r["chat_check"]:
        lines += ["", "## DSPy adapters on this base model (LabeledFewShot program)", ""]
        lines.append(md_table(["mode+adapter", "questions", "no answer", "calls", "adapter parse failures"],
                              [[k, v.get("questions", "-"), v.get("no_answer", "-"), v.get("calls", "-"),
                                v.get("adapter_parse_failures", "-")] for k, v in r["chat_check"].items()]))
    c = r["config"]
    lines += ["", "## Setup", "",
              f"- One `llama_cpp.server` ({r.get('server', {}).get('cmd', '?')}); both frameworks reach it through "
              "benchmarks/_proxy.py, which counts every HTTP call per phase and answers HTTP 400 once a compile's "
              f"budget ({c['budget']} calls) or wall-clock cap ({c['compile_wall']:.0f} s) is spent.",
              "- medcompile: ready-made `few_shot` and `medprompt`, `optimize(..., budget, max_trials="
              f"{c['mc_trials']}, minibatch={c['minibatch']}, n_instructions=2, max_rationales=30% of budget)`, "
              "`make_lm('openai/gemma', api_base=..., mode='text')`, fresh on-disk cache.",
              "- DSPy: `dspy.Predict(question, options -> answer)`, `dspy.LM('openai/gemma', model_type='text', "
              f"max_tokens={c['dspy_max_tokens']}, cache=False)`, default ChatAdapter; LabeledFewShot(k=4), "
              "BootstrapFewShot(4 bootstrapped, 4 labeled), KNNFewShot(k=3, WordLlama vectors, bootstraps on the "
              "neighbours at inference time), "
              f"MIPROv2(auto=None, num_candidates={c.get('mipro_candidates')}, num_trials={c.get('mipro_trials')}, "
              f"minibatch_size={c.get('mipro_minibatch')}, labeled demos only, tip-aware proposer only, num_threads=1; "
              "a proposer reply ChatAdapter cannot parse is taken whole as the proposed instruction, since its "
              "JSONAdapter fallback sends `response_format` to the text endpoint, which refuses it, and MIPROv2 "
              "does not guard its proposer: the whole compile failed at its first proposal). "
              f"max_errors={c['dspy_max_errors']}: with DSPy's default (10) BootstrapFewShot aborts on this model.",
              "- 'no answer': no option letter could be read (DSPy: adapter parse failure, failed JSON fallback, "
              "or an empty/letterless answer field; medcompile: abstention).",
              "- Accuracy CI: percentile bootstrap; comparisons: paired bootstrap CI of the difference and exact "
              "McNemar (medcompile.evaluate.stats.compare)."]
    if r["notes"]:
        lines += ["", "Notes:", *[f"- {n}" for n in r["notes"]]]
    (RESULTS / f"{run.stem}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        plot(r, RESULTS / f"{run.stem}.png")
    except Exception as e:  # noqa: BLE001 - the numbers matter more than the picture
        print("plot failed:", e)
    print("\n".join(lines))


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in r["compile"] if r["test"].get(n, {}).get("accuracy")]
    if not names:
        return
    acc = [100 * r["test"][n]["accuracy"]["mean"] for n in names]
    lo = [a - 100 * r["test"][n]["accuracy"]["low"] for a, n in zip(acc, names)]
    hi = [100 * r["test"][n]["accuracy"]["high"] - a for a, n in zip(acc, names)]
    calls = [r["compile"][n].get("proxy", {}).get("calls", 0) for n in names]
    cpq = [r["test"][n].get("calls_per_question", 0) for n in names]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = ["tab:blue" if n.startswith("mc_") else "tab:orange" for n in names]
    axes[0].bar(names, acc, yerr=[lo, hi], capsize=4, color=colors)
    axes[0].axhline(25, ls="--", c="gray", lw=1, label="chance (4 options)")
    axes[0].set_ylabel(f"test accuracy % (95% CI), n={r['data'].get('test_done')}")
    axes[0].legend()
    axes[0].tick_params(axis="x", rotation=30)
    axes[1].bar(names, calls, color=colors, label="compile calls")
    axes[1].axhline(r["config"]["budget"], ls="--", c="red", lw=1, label="budget")
    for i, c in enumerate(cpq):
        axes[1].text(i, calls[i] + 0.5, f"{c:g}/q", ha="center", fontsize=8)
    axes[1].set_ylabel("model calls during compile (label: inference calls/question)")
    axes[1].legend()
    axes[1].tick_params(axis="x", rotation=30)
    fig.suptitle("medcompile (blue) vs DSPy (orange), Gemma 3 270M via llama_cpp.server")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
