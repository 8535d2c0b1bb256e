"""Self-generated chain of thought (Medprompt).

The target model answers each bank question with reasoning, without seeing the
answer; a rationale is kept only when its final answer is correct. What the model
wrote is what later exemplars show, in the model's own words.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..exemplar import Exemplar
from ..lm.base import LM
from ..modules.predict import SelfCoT
from ..program.program import Program
from ..question import Question
from ..signatures import Signature


@dataclass
class RationaleStats:
    attempted: int
    kept: int
    abstained: int
    correct_without_rationale: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"attempted": self.attempted, "kept": self.kept, "abstained": self.abstained,
                "correct_without_rationale": self.correct_without_rationale}


def generate_rationales(questions: Sequence[Question], lm: LM, signature: Signature, templates: dict[str, str],
                        *, max_tokens: int | None = None, on_result=None, concurrency: int = 1
                        ) -> tuple[list[Exemplar], RationaleStats]:
    """Zero-shot CoT on each question; returns the exemplars whose answer was right."""
    prog = Program(SelfCoT(signature=signature, max_tokens=max_tokens, tune=False), name="rationales",
                   templates=templates)
    blind = [q.with_options(q.options, None) for q in questions]
    results = prog.run_many(blind, lm, concurrency=concurrency, on_result=on_result)
    kept, abstained, bare = [], 0, 0
    for q, r in zip(questions, results):
        pred = r.prediction
        if pred.answer is None:
            abstained += 1
        elif pred.answer == q.answer and pred.rationale and pred.rationale.strip():
            kept.append(Exemplar(q, pred.rationale.strip()))
        elif pred.answer == q.answer:
            bare += 1
    return kept, RationaleStats(len(questions), len(kept), abstained, bare)
