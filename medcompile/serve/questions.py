"""From a validated request body to a `Question` the program's signature accepts.

Type errors are caught by the schema; what is left needs the program or the server
settings: option counts, blank texts, and whether this signature reads a context.
Every problem names the field, so a caller can fix the request without guessing.
"""
from __future__ import annotations

import hashlib
import json

from ..question import Question, QuestionError
from .errors import ApiError
from .registry import ServedProgram
from .schemas import QuestionIn

MAX_KEY_CHARS = 64


def content_id(q: QuestionIn) -> str:
    """A default id from the content: the same question always gets the same id (and so
    the same sampling seed and cache entries), whoever sends it."""
    payload = json.dumps([q.question, list(q.options.items()), q.context], ensure_ascii=False)
    return "q-" + hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def to_question(q: QuestionIn, served: ServedProgram, *, max_options: int, where: str = "") -> Question:
    """Check `q` against the program's signature and the server limits; 422 on any problem."""
    problems: list[tuple[str, str]] = []
    if not q.question.strip():
        problems.append(("question", "must not be empty"))
    n = len(q.options)
    if n < 2:
        problems.append(("options", f"needs at least 2 options, got {n}"))
    elif n > max_options:
        problems.append(("options", f"at most {max_options} options are allowed, got {n}"))
    for key, text in q.options.items():
        if not key.strip():
            problems.append(("options", "option keys must be non-empty strings"))
        elif len(key) > MAX_KEY_CHARS:
            problems.append(("options", f"option key {key[:20]!r}... is over {MAX_KEY_CHARS} characters"))
        elif key != key.strip():
            problems.append(("options", f"option key {key!r} has leading or trailing spaces"))
        if not text.strip():
            problems.append((f"options.{key}", "option text must not be empty"))
    wants_context = "context" in served.inputs
    if wants_context and (q.context is None or not q.context.strip()):
        problems.append(("context", f"program {served.name!r} (signature '{served.info.signature}') "
                                    "requires a non-empty context"))
    if not wants_context and q.context is not None:
        problems.append(("context", f"program {served.name!r} (signature '{served.info.signature}') "
                                    "takes no context; remove the field"))
    if problems:
        details = [{"field": where + f, "problem": p} for f, p in problems]
        raise ApiError(422, "invalid_question",
                       "invalid question: " + "; ".join(f"{where}{f}: {p}" for f, p in problems), details=details)
    try:
        return Question(id=q.id if q.id is not None else content_id(q), question=q.question,
                        options=dict(q.options), context=q.context if wants_context else None)
    except QuestionError as exc:  # defensive: the checks above should cover Question's own
        raise ApiError(422, "invalid_question", f"invalid question: {where}{exc}") from None
