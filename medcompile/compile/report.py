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
    score: float | None
    n: int
    calls: int
    calls_per_question: float | None
    params: dict[str, Any]
    note: str = ""

    @classmethod
    def from_trial(cls, t: Any, space: list[Any]) -> "TrialRow":
        shown = {}
        for p in space:
            if p.key in t.params:
                v = p.value(t.params[p.key])
                shown[p.key] = p.choices.index(v) if p.name == "instruction" else v
        note = ""
        if "duplicate_of" in t.user_attrs:
            note = f"same as trial {t.user_attrs['duplicate_of']}"
        elif "skipped" in t.user_attrs:
            note = f"skipped: {t.user_attrs['skipped']}"
        scores = t.user_attrs.get("scores") or []
        return cls(t.number, t.state.name, (sum(scores) / len(scores)) if scores else None, len(scores),
                   int(t.user_attrs.get("calls", 0)), t.user_attrs.get("cpq"), shown, note)


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
            f"- dev {dev['metric']}: **{dev['score']:.3f}**{ci}, n = {dev['n']}",
            f"- chosen (trial {i['chosen_trial']}): " + ", ".join(f"`{k}={v}`" for k, v in i["chosen"].items()),
            f"- calls per question of the result: {i['calls_per_question']:g}",
            f"- budget: {i['budget']['spent_calls']} of {i['budget']['max_calls']} model calls spent "
            f"({i['usage']['prompt_tokens']} prompt + {i['usage']['completion_tokens']} completion tokens"
            + (f", ${i['usage']['cost']:.4f}" if i["usage"].get("cost") else "") + ")",
            f"- this run: {self.live_usage.get('live_calls', 0)} live calls, "
            f"{self.live_usage.get('cached_calls', 0)} from cache, {self.elapsed_s:.1f} s",
            f"- self-generated rationales kept: {i['rationales']['kept']} of {i['rationales']['attempted']}",
            f"- instruction candidates: {len(i['instructions'])}", "",
        ]
        for n, text in enumerate(i["instructions"]):
            lines.append(f"  {n}. {text}")
        lines += ["", "| trial | state | score | n | calls | calls/q | params | note |",
                  "|---:|---|---:|---:|---:|---:|---|---|"]
        for t in self.trials:
            score = f"{t.score:.3f}" if t.score is not None else ""
            cpq = f"{t.calls_per_question:g}" if t.calls_per_question is not None else ""
            params = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in t.params.items())
            star = " ★" if t.number == i["chosen_trial"] else ""
            lines.append(f"| {t.number}{star} | {t.state.lower()} | {score} | {t.n} | {t.calls} | {cpq} | {params} | {t.note} |")
        if self.pareto:
            lines += ["", f"Pareto front (accuracy vs calls/question): trials {self.pareto}"]
        return "\n".join(lines) + "\n"

    def plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for state, color in (("COMPLETE", "tab:blue"), ("PRUNED", "tab:gray")):
            pts = [(t.calls_per_question, t.score) for t in self.trials if t.state == state and t.score is not None]
            if pts:
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], c=color, label=state.lower(), alpha=0.8)
        chosen = [t for t in self.trials if t.number == self.info["chosen_trial"]]
        if chosen and chosen[0].score is not None:
            ax.scatter([chosen[0].calls_per_question], [chosen[0].score], marker="*", s=250, c="tab:red", label="chosen")
        ax.set_xlabel("model calls per question")
        ax.set_ylabel(f"dev {self.info['dev']['metric']} (n={self.info['dev']['n']})")
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
