"""How a multiple-choice question travels between medcompile and DSPy field values.

DSPy programs pass plain field values: the options are usually one text ("A. ...\\nB. ...")
but may be a dict or a list, and the answer may be a key ("B"), a key with its text
("B. Aspirin") or the option text itself. medcompile's `Question` is stricter: keyed
options and an answer that is one of the keys. These helpers convert both ways and
say exactly what they could not read.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Mapping

from ..question import Question

#: Medcompile's names for a multiple-choice question's parts.
INPUTS = ("question", "options", "context")
OUTPUTS = ("answer", "reasoning", "rationale")


class InteropError(ValueError):
    """A DSPy program (or a medcompile program) cannot be converted; the message says what and why."""


_LINE = re.compile(r"^\s*\(?([A-Za-z])[\.\):]\s*(.+?)\s*$")
_INLINE = re.compile(r"\(([A-Z])\)\s*(.+?)(?=\s*\([A-Z]\)|$)", re.S)


def options_text(options: Mapping[str, str]) -> str:
    """The DSPy-side rendering of options: one ``KEY. text`` per line."""
    return "\n".join(f"{k}. {v}" for k, v in options.items())


def parse_options(value: Any, where: str) -> dict[str, str]:
    """Keyed options from a dict, a list (keys A, B, ...) or a text of ``A. text`` lines."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in "[{":
            try:
                return parse_options(json.loads(stripped), where)
            except (ValueError, InteropError):
                pass
        lines = [_LINE.match(line) for line in stripped.splitlines() if line.strip()]
        if lines and all(lines):
            out = {m.group(1).upper(): m.group(2) for m in lines if m}
        else:
            out = {m.group(1): m.group(2).strip() for m in _INLINE.finditer(stripped)}
    elif isinstance(value, Mapping):
        out = {str(k): str(v) for k, v in value.items()}
    elif isinstance(value, (list, tuple)):
        if len(value) > 26:
            raise InteropError(f"{where}: {len(value)} options, at most 26 can be keyed A..Z")
        out = {chr(ord("A") + i): str(v) for i, v in enumerate(value)}
    else:
        raise InteropError(f"{where}: options must be text, a dict or a list, got {type(value).__name__}")
    if len(out) < 2:
        raise InteropError(f"{where}: could not read at least 2 options from {str(value)[:120]!r}; "
                           "give them as 'A. text' lines, a dict or a list")
    return out


def answer_key(value: Any, options: Mapping[str, str], where: str) -> str:
    """The option key an answer value names: the key itself, 'B. text', '(B)', or the option's text."""
    if value is None:
        raise InteropError(f"{where}: has no answer")
    text = str(value).strip()
    if text in options:
        return text
    m = re.match(r"^\(?([A-Za-z])[\.\):]?(?:\s|$)", text)
    if m and m.group(1).upper() in options:
        return m.group(1).upper()
    by_text = [k for k, v in options.items() if v.strip().lower() == text.lower()]
    if len(by_text) == 1:
        return by_text[0]
    raise InteropError(f"{where}: answer {text[:80]!r} is not one of the option keys {list(options)} "
                       "nor one option's text")


def question_from_values(values: Mapping[str, Any], where: str, *, need_answer: bool) -> Question:
    """A medcompile Question from field values already named question/options/context/answer."""
    if not isinstance(values.get("question"), str) or not values["question"].strip():
        raise InteropError(f"{where}: needs a non-empty 'question' text")
    if "options" not in values:
        raise InteropError(f"{where}: has no 'options'")
    opts = parse_options(values["options"], where)
    answer = answer_key(values.get("answer"), opts, where) if (need_answer or values.get("answer")) else None
    context = values.get("context")
    qid = values.get("id")
    if not isinstance(qid, str) or not qid:
        qid = "dspy-" + hashlib.sha256(json.dumps([values["question"], opts], sort_keys=True).encode()).hexdigest()[:12]
    return Question(qid, values["question"], opts, answer=answer, context=str(context) if context else None)


def dspy_inputs(q: Question, *, context: bool | None = None) -> dict[str, str]:
    """Keyword arguments for calling an exported DSPy program on a medcompile question."""
    d = {"question": q.question, "options": options_text(q.options)}
    if context or (context is None and q.context):
        d["context"] = q.context or ""
    return d
