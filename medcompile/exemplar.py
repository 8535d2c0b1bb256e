"""Exemplars: solved questions shown to the model as few-shot demonstrations."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .question import Question


@dataclass(frozen=True)
class Exemplar:
    """A training question with its answer and, for chain of thought, a rationale
    the target model wrote itself (kept only when it reached the right answer)."""

    question: Question
    rationale: str | None = None

    def __post_init__(self) -> None:
        if self.question.answer is None:
            raise ValueError(f"exemplar {self.question.id!r} has no answer")

    def to_dict(self) -> dict[str, Any]:
        d = self.question.to_dict()
        if self.rationale is not None:
            d["rationale"] = self.rationale
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Exemplar":
        return cls(Question.from_dict(d), d.get("rationale"))
