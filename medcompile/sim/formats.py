"""Reply formats: what the simulated model writes, in the layout the prompt asks for.

medcompile text mode continues the prompt (" B" after "Answer:", or a rationale then
"Answer: B"); chat mode answers "Answer: B"; DSPy's ChatAdapter gets ``[[ ## field ## ]]``
blocks ending with ``[[ ## completed ## ]]``; its JSONAdapter gets a JSON object with the
output fields. Rationales name the option the model drew, so the reasoning and the final
answer always agree.
"""
from __future__ import annotations

import json
import re

from .text import words

_OUTPUT_FIELDS = re.compile(r"Your output fields are:\s*(.*?)(?:\n\s*\n|All interactions will be structured|$)", re.S)
_FIELD = re.compile(r"^\s*\d+\.\s*`(\w+)`", re.M)
_STOP = {"the", "and", "with", "year", "old", "which", "following", "most", "likely", "this", "that", "patient",
         "from", "presents", "because", "history", "comes", "physician", "emergency", "department", "shows"}


def kind_of(text: str, mode: str) -> str:
    """'dspy_json', 'dspy_chat', 'gepa', 'medcompile_proposal', 'medcompile_refine', or medcompile's own 'text'/'chat'."""
    if "I provided an assistant with" in text and "```" in text:
        return "gepa"
    if "Write a better instruction for these questions" in text and "```" in text:
        return "medcompile_refine"
    if "A good instruction for answering questions like these" in text:
        return "medcompile_proposal"
    if "Respond with a JSON object" in text or ("Your output fields are" in text and "JSON" in text
                                                and "[[ ## completed ## ]]" not in text):
        return "dspy_json"
    if "[[ ## completed ## ]]" in text or "Your output fields are" in text:
        return "dspy_chat"
    return "chat" if mode == "chat" else "text"


def output_fields(text: str) -> list[str]:
    m = _OUTPUT_FIELDS.search(text)
    found = _FIELD.findall(m.group(1)) if m else []
    return found or ["answer"]


def rationale(stem_words: tuple[str, ...], key: str, option_text: str, right_style: bool) -> str:
    """A short rationale that argues for the drawn option (key and text)."""
    cues = [w for w in stem_words if len(w) > 5 and w not in _STOP and not w.isdigit()]
    cues = list(dict.fromkeys(cues))[:4] or ["the findings"]
    tone = "Taken together" if right_style else "On balance"
    return (f"The vignette's key points are {', '.join(cues)}. Going through the options one by one, "
            f"{tone.lower()} option {key} ({option_text}) explains the presentation best, "
            "while the other options leave important findings unexplained.")


def medcompile_reply(kind: str, prompt: str, key: str, why: str | None) -> str:
    if kind == "text":
        if why is None:
            return f" {key}"
        return f" {why}\nAnswer: {key}"
    return f"{why}\nAnswer: {key}" if why else f"Answer: {key}"


def dspy_reply(kind: str, fields: list[str], values: dict[str, str]) -> str:
    out = {f: values.get(f, values.get("_default", "")) for f in fields}
    if kind == "dspy_json":
        return json.dumps(out, ensure_ascii=False)
    parts = [f"[[ ## {f} ## ]]\n{v}" for f, v in out.items()]
    return "\n\n".join(parts) + "\n\n[[ ## completed ## ]]"


def approx_tokens(text: str) -> int:
    return max(1, len(words(text)))
