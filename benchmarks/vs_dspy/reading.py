"""Reading an option letter out of a reply: DSPy's parsed `answer` field, and its raw
completion read leniently with medcompile's own parser (so parsing is not the whole story)."""
from __future__ import annotations

import re
from typing import Any

LETTER = re.compile(r"\b([A-E])\b")


def options_text(q) -> str:  # noqa: ANN001
    return "\n".join(f"{k}. {v}" for k, v in q.options.items())


def extract_letter(text: Any, keys) -> str | None:  # noqa: ANN001
    """Lenient: the first standalone option letter in DSPy's parsed `answer` field."""
    if not isinstance(text, str):
        return None
    m = LETTER.search(text.strip())
    return m.group(1) if m and m.group(1) in keys else None


ANSWER_FIELD = re.compile(r"\[\[\s*##\s*answer\s*##\s*\]\]", re.IGNORECASE)


def lenient_from_raw(raw: str | None, q) -> str | None:  # noqa: ANN001
    """DSPy's raw completion read as medcompile reads its own replies: the text after
    ChatAdapter's answer marker as a direct answer, else an answer statement or a lone
    option text anywhere (medcompile.prompts.parse.parse_answer)."""
    from medcompile.prompts.parse import parse_answer

    if not isinstance(raw, str) or not raw.strip():
        return None
    opts = dict(q.options)
    parts = ANSWER_FIELD.split(raw, maxsplit=1)
    if len(parts) == 2:
        key = parse_answer(parts[1], opts, direct=True).key
        if key is not None:
            return key
    return parse_answer(raw, opts, direct=False).key


def raw_completions(lm) -> list[str]:  # noqa: ANN001
    """The completion texts in a dspy.LM's history, oldest first."""
    out = []
    for entry in lm.history:
        for o in entry.get("outputs") or []:
            out.append(o.get("text", "") if isinstance(o, dict) else str(o))
    return out
