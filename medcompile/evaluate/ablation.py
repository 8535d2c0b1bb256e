"""The Medprompt ablation ladder, measured on the user's own model.

Medprompt's gains were measured on GPT-4; on a small model some steps may not help
at all (chain of thought in particular), so each step is re-measured here:

1. zero-shot                  Predict
2. random few-shot            Predict  + Retrieve(random, k)
3. + self-generated CoT       SelfCoT  + Retrieve(random, k)   (same exemplars as 2)
4. kNN few-shot (+CoT)        SelfCoT  + Retrieve(knn, k)
5. + choice-shuffle ensemble  Vote(Shuffle(row 4, n))

Rows 2-5 draw exemplars from the same bank: the bank questions whose zero-shot CoT
rationale (written by this model, without seeing the answer) reached the right answer.
So row 2 -> 3 changes only whether rationales are shown, and 3 -> 4 only how
exemplars are chosen. Every row runs on the same questions, with a paired test
against the row before.

Small models often keep fewer than k rationales (they answer first and explain after,
or never reach an answer). Then the few-shot rows draw from every attempted bank
question instead, and a CoT exemplar without a kept rationale shows only its answer;
the report says so, since the CoT rows then measure CoT prompting, not self-CoT.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..bank import Bank
from ..compile.rationales import generate_rationales
from ..data.splits import sample
from ..exemplar import Exemplar
from ..lm.base import LM, Usage
from ..modules.base import Module
from ..modules.predict import Predict, SelfCoT
from ..modules.retrieve import Retrieve
from ..modules.shuffle import Shuffle
from ..modules.vote import Vote
from ..program.program import Program
from ..progress import log, progress_bar
from ..prompts.templates import DEFAULT_TEMPLATES
from ..question import Question
from ..signatures import MCQ, MCQ_WITH_CONTEXT, Signature
from .compare import CompareResult, compare_evals
from .runner import EvalError, EvalResult, evaluate


@dataclass
class AblationRow:
    label: str
    result: EvalResult
    vs_previous: CompareResult | None = None

    @property
    def calls_per_question(self) -> float:
        return self.result.usage_per_question()["logical"]["calls"]


@dataclass
class AblationResult:
    rows: list[AblationRow]
    options: dict[str, Any]
    rationales: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = []
        for i, r in enumerate(self.rows, 1):
            d: dict[str, Any] = {"row": i, "label": r.label, "calls_per_question": r.calls_per_question,
                                 "eval": r.result.to_dict(records=True)}
            if r.vs_previous is not None:
                c = r.vs_previous.to_dict()
                d["vs_previous"] = {k: c[k] for k in ("diff", "mcnemar_p", "win_tie_loss", "verdict")}
            out.append(d)
        return {"options": self.options, "rationales": self.rationales, "meta": self.meta,
                "n": self.rows[0].result.n if self.rows else 0, "rows": out}

    def to_markdown(self) -> str:
        n = self.rows[0].result.n if self.rows else 0
        model = self.rows[0].result.model if self.rows else "?"
        rs = self.rationales
        lines = [f"# Medprompt ablation ladder on `{model}`", "",
                 f"n={n} questions, the same for every row; k={self.options['k']} exemplars, "
                 f"{self.options['shuffles']} shuffles; 95% bootstrap CIs; Δ is the paired difference "
                 "against the row above (paired bootstrap CI, exact McNemar p).", "",
                 "| # | row | accuracy % (95% CI) | Δ vs previous, points (95% CI) | McNemar p | calls/q | abstained |",
                 "|---:|---|---|---|---:|---:|---:|"]
        for i, r in enumerate(self.rows, 1):
            a = r.result.accuracy
            if r.vs_previous is not None:
                d = r.vs_previous.stats.diff
                delta = f"{100 * d.mean:+.1f} ({100 * d.low:+.1f} to {100 * d.high:+.1f})"
                p = f"{r.vs_previous.stats.mcnemar_p:.3g}"
            else:
                delta, p = "", ""
            lines.append(f"| {i} | {r.label} | {100 * a.mean:.1f} ({100 * a.low:.1f} to {100 * a.high:.1f}) | {delta} "
                         f"| {p} | {r.calls_per_question:.2f} | {100 * r.result.abstention_rate:.1f}% |")
        lines += ["", "Verdicts (each row against the one above):", ""]
        lines += [f"- {i}. {r.vs_previous.verdict}" for i, r in enumerate(self.rows, 1) if r.vs_previous]
        lines += ["", f"Self-generated rationales: kept {rs['kept']} of {rs['attempted']} bank questions "
                  f"({rs['abstained']} abstained); they cost {rs['usage']['calls']} calls "
                  f"({rs['usage']['live_calls']} live), not counted in calls/q above. "
                  + (f"Rows 2-5 draw exemplars from these {rs['kept']}." if not rs.get("note") else
                     f"**Note:** {rs['note']}.")]
        resumed = sum(r.result.resumed for r in self.rows)
        if resumed:
            lines += ["", f"{resumed} of {n * len(self.rows)} row results were restored from the checkpoint "
                      "(their usage and latency are from the run that made them)."]
        lines += [""] + [f"- {k}: {v}" for k, v in self.meta.items()]
        return "\n".join(lines) + "\n"

    def plot(self, path: str | Path) -> Path:
        from .plots import plot_ablation

        model = self.rows[0].result.model if self.rows else "?"
        n = self.rows[0].result.n if self.rows else 0
        return plot_ablation([(r.label, r.result.accuracy, r.calls_per_question) for r in self.rows], path,
                             title=f"Medprompt ablation on {model} (n={n})",
                             chance=self.rows[0].result.chance if self.rows else None)


def ladder(signature: Signature, bank: Bank, *, k: int, shuffles: int, seed: int,
           self_cot: bool = True) -> list[tuple[str, Module]]:
    """The five (label, module) rows, all frozen (nothing left to tune). `self_cot` False
    labels row 3 as plain CoT prompting: the exemplars lack self-generated rationales."""
    rnd = Retrieve(k=k, strategy="random", bank=bank, seed=seed, tune=False)
    knn = Retrieve(k=k, strategy="knn", bank=bank, seed=seed, tune=False)
    cot_knn = SelfCoT(signature, demos=knn, tune=False)
    return [
        ("zero-shot", Predict(signature, tune=False)),
        (f"random few-shot (k={k})", Predict(signature, demos=rnd, tune=False)),
        ("+ self-generated CoT" if self_cot else "+ CoT prompting", SelfCoT(signature, demos=rnd, tune=False)),
        (f"kNN few-shot (k={k}) + CoT", cot_knn),
        (f"+ choice-shuffle ensemble ({shuffles}, vote)", Vote(Shuffle(cot_knn, n=shuffles, seed=seed, tune=False))),
    ]


def run_ablation(bank_questions: Sequence[Question], questions: Sequence[Question], lm: LM | str = "local", *,
                 k: int = 3, shuffles: int = 5, max_rationales: int = 20, seed: int = 0, concurrency: int = 1,
                 quiet: bool = False, checkpoint: Path | None = None, embedder: Any = None) -> AblationResult:
    """Generate rationales on (a seeded sample of) the bank, then evaluate every ladder row."""
    if k < 1 or shuffles < 1 or max_rationales < 1:
        raise EvalError(f"k, shuffles and the rationale cap must be at least 1 (got {k}, {shuffles}, {max_rationales})")
    overlap = {q.id for q in bank_questions} & {q.id for q in questions}
    if overlap:
        raise EvalError(f"{len(overlap)} evaluation question(s) are also in the exemplar bank "
                        f"(e.g. id {sorted(overlap)[0]!r}): use disjoint splits")
    if any(q.answer is None for q in bank_questions):
        raise EvalError("every bank question needs an answer to serve as an exemplar")
    if isinstance(lm, str):
        from ..lm.registry import make_lm

        lm = make_lm(lm)
    t0 = time.perf_counter()
    signature = MCQ_WITH_CONTEXT if any(q.context for q in questions) else MCQ
    pool = sample(bank_questions, min(max_rationales, len(bank_questions)), seed)
    with progress_bar("self-generated CoT", len(pool), quiet=quiet) as bar:
        kept, st = generate_rationales(pool, lm, signature, dict(DEFAULT_TEMPLATES),
                                       on_result=lambda r: bar.advance(r.usage), concurrency=concurrency)
    spent: Usage = bar.usage  # the bar sums each question's usage, quiet or not
    log(f"rationales: kept {st.kept} of {st.attempted}", quiet=quiet)
    exemplars, note = _exemplars(pool, kept, k)
    if note:
        log(f"note: {note}", quiet=quiet)
    if isinstance(embedder, str):
        from ..embed import make_embedder

        embedder = make_embedder(embedder).settings()
    bank = Bank(exemplars, embedder)
    rows: list[AblationRow] = []
    for i, (label, root) in enumerate(ladder(signature, bank, k=k, shuffles=shuffles, seed=seed, self_cot=not note), 1):
        program = Program(root, name=f"ablation-{i}", signature=signature, seed=seed)
        res = evaluate(program, questions, lm, concurrency=concurrency, quiet=quiet, seed=seed,
                       checkpoint=checkpoint, name=f"{i}. {label}")
        prev = rows[-1] if rows else None
        vs = compare_evals(prev.result, res, name_a=prev.label, name_b=label, seed=seed) if prev else None
        rows.append(AblationRow(label, res, vs))
        log(f"row {i} {label}: {res.accuracy.pts()}, n={res.n}", quiet=quiet)
    rationales = {**st.to_dict(), "usage": spent.to_dict(), "note": note}
    options = {"k": k, "shuffles": shuffles, "max_rationales": max_rationales, "seed": seed,
               "bank_size": len(bank_questions), "exemplars": len(exemplars)}
    return AblationResult(rows, options, rationales, {"this_run_elapsed_s": round(time.perf_counter() - t0, 1)})


def _exemplars(pool: Sequence[Question], kept: list[Exemplar], k: int) -> tuple[list[Exemplar], str]:
    """The few-shot bank: the kept rationales, or (fewer than k kept) every attempted question."""
    if len(kept) >= k:
        return kept, ""
    by_id = {e.question.id: e.rationale for e in kept}
    return ([Exemplar(q, by_id.get(q.id)) for q in pool],
            f"only {len(kept)} self-generated rationale(s) reached the right answer (fewer than k={k}): the few-shot "
            f"rows draw from all {len(pool)} attempted bank questions, and CoT exemplars without a kept rationale "
            "show only their answer")


__all__ = ["AblationResult", "AblationRow", "ladder", "run_ablation"]
