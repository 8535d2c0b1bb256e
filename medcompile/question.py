"""The unit of work: one multiple-choice question.

Every loader produces `Question`s and every module consumes them, so this is the
one data type the whole package agrees on. It is immutable so that it can be
hashed, cached and shared between threads without copies.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping


class QuestionError(ValueError):
    """A question is malformed (empty text, answer not among the options, ...)."""


@dataclass(frozen=True)
class Question:
    """A multiple-choice question.

    `options` maps option keys (``"A"``..``"E"`` or ``"yes"/"no"/"maybe"``) to
    option texts, in display order. `answer` is the correct key when known.
    """

    id: str
    question: str
    options: Mapping[str, str]
    answer: str | None = None
    context: str | None = None
    subject: str | None = None
    meta: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", dict(self.options))
        object.__setattr__(self, "meta", dict(self.meta))
        if not isinstance(self.question, str) or not self.question.strip():
            raise QuestionError(f"question {self.id!r}: empty question text")
        if len(self.options) < 2:
            raise QuestionError(f"question {self.id!r}: needs at least 2 options, got {len(self.options)}")
        for key, text in self.options.items():
            if not isinstance(key, str) or not key:
                raise QuestionError(f"question {self.id!r}: option keys must be non-empty strings")
            if not isinstance(text, str):
                raise QuestionError(f"question {self.id!r}: option {key!r} text must be a string")
        if self.answer is not None and self.answer not in self.options:
            raise QuestionError(
                f"question {self.id!r}: answer {self.answer!r} is not among options {list(self.options)}"
            )

    @property
    def keys(self) -> list[str]:
        return list(self.options)

    def with_options(self, options: Mapping[str, str], answer: str | None) -> "Question":
        return replace(self, options=dict(options), answer=answer)

    def to_dict(self) -> dict:
        d: dict = {"id": self.id, "question": self.question, "options": dict(self.options)}
        if self.answer is not None:
            d["answer"] = self.answer
        if self.context is not None:
            d["context"] = self.context
        if self.subject is not None:
            d["subject"] = self.subject
        if self.meta:
            d["meta"] = dict(self.meta)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "Question":
        """Build from the canonical dict form (the one `to_dict` writes)."""
        if not isinstance(d, Mapping):
            raise QuestionError(f"a question must be a JSON object, got {type(d).__name__}")
        for req in ("question", "options"):
            if req not in d:
                raise QuestionError(f"question {d.get('id')!r}: missing field {req!r}")
        opts = d["options"]
        if isinstance(opts, list):
            opts = {chr(ord("A") + i): str(t) for i, t in enumerate(opts)}
        if not isinstance(opts, Mapping):
            raise QuestionError(f"question {d.get('id')!r}: 'options' must be an object or a list")
        return cls(
            id=str(d.get("id", "")),
            question=d["question"],
            options={str(k): v for k, v in opts.items()},
            answer=d.get("answer"),
            context=d.get("context"),
            subject=d.get("subject"),
            meta={str(k): str(v) for k, v in (d.get("meta") or {}).items()},
        )
