"""The compile report: every trial, the choice made, and what it cost.

Written next to the compiled program as JSON (for tools) and Markdown (for people),
with a plot of trial scores. Unlike the program file, the report may carry
wall-clock time and cache hits, which vary between runs.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import write_text_atomic


@dataclass
class TrialRow:
    number: int
    state: str
    score: float | None  # on the search questions
    n: int
    calls: int
    calls_per_question: float | None
    params: dict[str, Any]
    note: str = ""
    confirm_score: float | None = None  # on the confirmation questions, for the finalists

    @classmethod
    def from_trial(cls, t: Any, space: list[Any], label: dict[int, str] | None = None,
                   confirm_score: float | None = None) -> "TrialRow":
        """`label` maps optuna trial numbers to the numbers shown (killed trials left out)."""
        from .selection import race_note

        label = label or {}
        shown = {}
        for p in space:
            if p.key in t.params:
                v = p.value(t.params[p.key])
                shown[p.key] = p.choices.index(v) if p.name == "instruction" else v
        note = ""
        if "duplicate_of" in t.user_attrs:
            d = t.user_attrs["duplicate_of"]
            note = f"same as trial {label.get(d, d)}: no trial slot taken"
        elif "skipped" in t.user_attrs:
            note = f"skipped: {t.user_attrs['skipped']}"
        elif "pruned" in t.user_attrs:
            why = t.user_attrs["pruned"]
            note = race_note(why, label.get(why["ref"], str(why["ref"])))
        scores = t.user_attrs.get("scores") or []
        return cls(int(label.get(t.number, t.number)), t.state.name, (sum(scores) / len(scores)) if scores else None,
                   len(scores), int(t.user_attrs.get("calls", 0)), t.user_attrs.get("cpq"), shown, note,
                   confirm_score)


@dataclass
class CompileReport:
    info: dict[str, Any]
    trials: list[TrialRow]
    live_usage: dict[str, Any]
    elapsed_s: float
    storage: str
    pareto: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"compile": self.info, "trials": [asdict(t) for t in self.trials], "this_run": {
            "live_usage": self.live_usage, "elapsed_s": round(self.elapsed_s, 2)}, "storage": self.storage,
            "pareto_front": self.pareto}

    def paths(self, out: Path) -> tuple[Path, Path, Path]:
        return (out.with_name(out.stem + ".report.json"), out.with_name(out.stem + ".report.md"),
                out.with_name(out.stem + ".trials.png"))

    def markdown(self) -> str:
        i = self.info
        dev = i["dev"]
        ci = f" (95% CI {dev['ci95'][0]:.3f} to {dev['ci95'][1]:.3f})" if "ci95" in dev else ""
        lines = [
            f"# Compile report: {i['study']}", "",
            f"- dev {dev['metric']} of the chosen program on the {dev.get('questions', 'dev')} questions: "
            f"**{dev['score']:.3f}**{ci}, n = {dev['n']}",
            f"- chosen (trial {i['chosen_trial']}): " + ", ".join(f"`{k}={v}`" for k, v in i["chosen"].items()),
            f"- calls per question of the result: {i['calls_per_question']:g}",
            f"- budget: {i['budget']['spent_calls']} of {i['budget']['max_calls']} model calls spent"
            + (f", {i['budget']['preparation_calls']} on preparation " if "preparation_calls" in i["budget"] else " ")
            + f"({i['usage']['prompt_tokens']} prompt + {i['usage']['completion_tokens']} completion tokens"
            + (f", ${i['usage']['cost']:.4f}" if i["usage"].get("cost") else "") + ")",
            f"- this run: {self.live_usage.get('live_calls', 0)} live calls, "
            f"{self.live_usage.get('cached_calls', 0)} from cache, {self.elapsed_s:.1f} s",
            f"- self-generated rationales kept: {i['rationales']['kept']} of {i['rationales']['attempted']}",
            f"- instruction candidates: {len(i['instructions'])}", "",
        ]
        for n, text in enumerate(i["instructions"]):
            lines.append(f"  {n}. {text}")
        lines += self._selection_lines()
        lines += ["", "## Trials (scores on the search questions)", "",
                  "| trial | state | search score | n | confirmation | calls | calls/q | params | note |",
                  "|---:|---|---:|---:|---:|---:|---:|---|---|"]
        for t in self.trials:
            score = f"{t.score:.3f}" if t.score is not None else ""
            conf = f"{t.confirm_score:.3f}" if t.confirm_score is not None else ""
            cpq = f"{t.calls_per_question:g}" if t.calls_per_question is not None else ""
            params = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in t.params.items())
            star = " ★" if t.number == i["chosen_trial"] else ""
            lines.append(f"| {t.number}{star} | {t.state.lower()} | {score} | {t.n} | {conf} | {t.calls} | {cpq} | "
                         f"{params} | {t.note} |")
        if self.pareto:
            lines += ["", f"Pareto front (accuracy vs calls/question): trials {self.pareto}"]
        return "\n".join(lines) + "\n"

    def _selection_lines(self) -> list[str]:
        sel = self.info.get("selection") or {}
        if not sel:
            return []
        lines = ["", "## Selection", "",
                 f"- {sel.get('search_questions')} search questions (trials raced on them), "
                 f"{sel.get('confirmation_questions')} confirmation questions the search never saw"
                 + (" (dev set too small to hold any out: confirmation reuses the search questions)"
                    if sel.get("confirmation_reuses_search") else ""),
                 *([f"- rule: {sel['rule']}"] if "rule" in sel else []),
                 f"- {sel['verdict']}"]
        for why in sel.get("not_confirmed", []):
            lines.append(f"- not confirmed: {why}")
        cands = sel.get("candidates", [])
        if cands:
            lines += ["", "| trial | calls/q | search score | confirmation score (95% CI) | p vs best | note |",
                      "|---:|---:|---:|---|---:|---|"]
            for c in cands:
                note = ", ".join(x for x, on in (("chosen", c["chosen"]), ("cheapest configuration",
                                 c["cheapest_configuration"]), ("not significantly worse than the best",
                                 c["not_worse_than_best"] and not c["chosen"])) if on)
                search = f"{c['search_score']:.3f}" if c["search_score"] is not None else ""
                lines.append(f"| {c['trial']} | {c['calls_per_question']:g} | {search} | {c['score']:.3f} "
                             f"({c['ci95'][0]:.3f} to {c['ci95'][1]:.3f}), n={c['n']} | {c['p_vs_best']:.3g} | {note} |")
        return lines

    def plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for state, color in (("COMPLETE", "tab:blue"), ("PRUNED", "tab:gray")):
            pts = [(t.calls_per_question, t.score) for t in self.trials if t.state == state and t.score is not None]
            if pts:
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], c=color, label=state.lower(), alpha=0.8)
        sel = self.info.get("selection") or {}
        cands = sel.get("candidates", [])
        if cands:  # finalists on the confirmation questions, with their 95% CIs
            xs, ys = [c["calls_per_question"] for c in cands], [c["score"] for c in cands]
            err = [[c["score"] - c["ci95"][0] for c in cands], [c["ci95"][1] - c["score"] for c in cands]]
            ax.errorbar(xs, ys, yerr=err, fmt="o", mfc="none", c="tab:green", capsize=3,
                        label=f"confirmation (n={cands[0]['n']})")
        chosen = [t for t in self.trials if t.number == self.info["chosen_trial"]]
        if chosen:
            y = chosen[0].confirm_score if chosen[0].confirm_score is not None else chosen[0].score
            if y is not None:
                ax.scatter([self.info["calls_per_question"]], [y], marker="*", s=250, c="tab:red", label="chosen")
        ax.set_xlabel("model calls per question")
        n_search = sel.get("search_questions", self.info["dev"]["n"])
        ax.set_ylabel(f"{self.info['dev']['metric']} (search: n={n_search})")
        ax.set_title("compile trials")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    def write(self, out: Path) -> None:
        j, md, png = self.paths(out)
        write_text_atomic(j, json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")
        write_text_atomic(md, self.markdown())
        self.plot(png)
