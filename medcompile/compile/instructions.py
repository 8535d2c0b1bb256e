"""Instruction candidates: the user's own plus ones the model proposes.

In the spirit of DSPy's MIPRO and OPRO's meta-prompts: the model sees a few
solved training questions and is asked for an instruction that would help answer
them. Proposals are cleaned, bounded and de-duplicated; the search then decides.
"""
from __future__ import annotations

import re
from typing import Sequence

from ..lm.base import LM, LMError, LMRequest, Message
from ..modules.base import derive_seed
from ..question import Question

META_PROMPT = (
    "Below are questions from a medical licensing exam, each with its correct answer.\n\n"
    "{examples}\n\n"
    "A good instruction for answering questions like these, in one sentence:\n"
    "Instruction:"
)
MIN_LEN, MAX_LEN = 20, 400


def normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", re.sub(r"\s+", " ", text.lower())).strip()


def clean(text: str) -> str | None:
    """First line of a proposal, if it looks like an instruction."""
    line = next((ln.strip() for ln in text.strip().splitlines() if ln.strip()), "")
    line = re.sub(r"^(instruction\s*:\s*|[A-Za-z]\s*:\s*|[\-\*\d\.\)]+\s*)", "", line, flags=re.IGNORECASE)
    line = line.strip().strip('"\'“”').strip()
    if not MIN_LEN <= len(line) <= MAX_LEN or "{{" in line or "}}" in line:
        return None
    if sum(c.isalpha() for c in line) < len(line) * 0.6:
        return None
    return line


def dedupe(cands: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for c in cands:
        k = normalise(c)
        if k and k not in seen:
            seen.add(k)
            out.append(c)
    return out


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def consensus(proposals: Sequence[str], *, min_count: int = 2, max_sentences: int = 4) -> str | None:
    """The sentences the model proposed most often, in the order they first appeared
    (self-consistency over proposals: advice a model keeps giving is likelier to help than
    advice it gave once). None when no sentence was proposed `min_count` times."""
    counts: dict[str, int] = {}
    first: dict[str, tuple[int, str]] = {}
    for text in proposals:
        for sent in dict.fromkeys(x.strip() for x in _SENTENCE_END.split(text) if x.strip()):
            key = normalise(sent)
            if key:
                counts[key] = counts.get(key, 0) + 1
                first.setdefault(key, (len(first), sent))
    ranked = sorted((k for k, c in counts.items() if c >= min_count), key=lambda k: (-counts[k], first[k][0]))
    chosen = sorted(ranked[:max_sentences], key=lambda k: first[k][0])
    return " ".join(first[k][1] for k in chosen) or None


def propose_instructions(user_instruction: str, examples: Sequence[Question], lm: LM, *, n: int = 3,
                         seed: int = 0, temperature: float = 1.0, consensus_of: int = 0) -> tuple[list[str], int]:
    """Returns (candidates with the user's first, number of model calls made).

    `consensus_of` > n: draw that many proposals, keep the first n as candidates and add their
    `consensus` (one more candidate, no more calls than the proposals themselves)."""
    shown = "\n\n".join(
        f"Question: {q.question}\n" + "\n".join(f"{k}. {v}" for k, v in q.options.items()) + f"\nAnswer: {q.answer}"
        for q in examples
    )
    prompt = META_PROMPT.format(examples=shown)
    proposals, calls = [], 0
    for i in range(max(n, consensus_of)):
        s = derive_seed(seed, "instruction", i)
        if lm.mode == "chat":
            req = LMRequest(model=lm.model, mode="chat", messages=(Message("user", prompt),),
                            temperature=temperature, max_tokens=80, seed=s)
        else:
            req = LMRequest(model=lm.model, mode="text", prompt=prompt, temperature=temperature, max_tokens=60,
                            stop=("\n",), seed=s)
        calls += 1
        try:
            text = lm.complete(req).text
        except LMError as exc:
            if exc.fatal:
                raise
            continue
        c = clean(text)
        if c:
            proposals.append(c)
    agreed = consensus(proposals) if consensus_of > n else None
    return dedupe([user_instruction, *proposals[:n], *([agreed] if agreed else [])]), calls
