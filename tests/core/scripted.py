"""Scripted LMs that behave like the models the tests are about."""
from __future__ import annotations

import hashlib
import re

from medcompile.lm.base import LMRequest
from medcompile.lm.scripted import ScriptedLM


def last_question(req: LMRequest) -> tuple[str, dict[str, str]]:
    text = req.prompt if req.mode == "text" else req.messages[-1].content
    block = text.rsplit("Question: ", 1)[1]
    stem, rest = block.split("\nOptions:\n", 1)
    opts = dict(re.findall(r"^([A-E])\. (.*)$", rest, flags=re.M))
    return stem, opts


def is_cot(req: LMRequest) -> bool:
    text = req.prompt if req.mode == "text" else req.messages[-1].content
    return text.rstrip().endswith("step by step.")


def unit(*parts: object) -> float:
    h = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "little") / 2**64


def reply(req: LMRequest, key: str, rationale: str = "Reasoned.") -> str:
    return f" {rationale}\nAnswer: {key}" if is_cot(req) else f" {key}"


def proposes_instruction(req: LMRequest) -> str | None:
    """Scripted answer to the compiler's instruction meta-prompt (None for other prompts)."""
    text = req.prompt if req.mode == "text" else req.messages[-1].content
    if text.rstrip().endswith("Instruction:") or "A good instruction" in text:
        return f" Consider the mechanism of disease {req.seed % 5}, then pick the single best option."
    if "Write a better instruction" in text:  # a refinement round
        return f" Weigh the vignette's findings ({req.seed % 5}), then pick the single best option."
    return None


def knows_text(correct_text_of, skill: float = 1.0, cot_skill: float | None = None) -> ScriptedLM:
    """Picks the option whose text is correct with probability `skill` (else option A)."""

    def fn(req: LMRequest) -> str:
        stem, opts = last_question(req)
        good = correct_text_of(stem)
        s = cot_skill if (cot_skill is not None and is_cot(req)) else skill
        key = next((k for k, v in opts.items() if v == good), "A")
        if unit(stem, tuple(opts.values()), req.seed) >= s:
            key = "A" if key != "A" else "B"
        return reply(req, key)

    return ScriptedLM(fn)
