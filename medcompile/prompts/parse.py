"""Reading an answer out of whatever a model wrote.

Base models ramble, repeat the few-shot pattern, or stop early; chat models wrap the
answer in prose. The parser never raises: when no single option can be read, it
returns an abstention with the reason, which reports count.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class ParsedAnswer:
    key: str | None
    rationale: str
    reason: str  # how the answer was found, or why it was not

    @property
    def abstained(self) -> bool:
        return self.key is None


_SURROGATES = re.compile("[\ud800-\udfff]")


def _key_pattern(keys: Sequence[str]) -> str:
    alts = sorted((re.escape(k) for k in keys), key=len, reverse=True)
    return "(?:" + "|".join(alts) + ")"


def _is_letter_keys(keys: Sequence[str]) -> bool:
    return all(len(k) == 1 and k.isalpha() for k in keys)


def _match_key(token: str, keys: Sequence[str]) -> str | None:
    for k in keys:
        if token == k or (not _is_letter_keys(keys) and token.lower() == k.lower()):
            return k
    return None


def parse_answer(text: str, options: dict[str, str], *, direct: bool) -> ParsedAnswer:
    """Extract one option key from `text`.

    `direct` means the prompt already ended with the answer prefix, so the key is
    expected at the very start. Otherwise look for an explicit answer statement
    (``Answer: B``, ``the answer is (B)``); the first one wins, since later ones are
    the model continuing the few-shot pattern with questions of its own.
    """
    if not isinstance(text, str):
        return ParsedAnswer(None, "", "no text")
    # Undecodable model bytes arrive as lone surrogates; they would break cache keys, the
    # prompts that quote this text (exemplar rationales, refine paths) and UTF-8 files.
    text = _SURROGATES.sub("\ufffd", text.replace("\x00", ""))
    keys = list(options)
    if not text.strip():
        return ParsedAnswer(None, "", "empty output")
    kp = _key_pattern(keys)
    if direct:
        flags = 0 if _is_letter_keys(keys) else re.IGNORECASE
        m = re.match(rf"\s*[\(\[\*]*\s*({kp})(?![A-Za-z0-9])", text, flags)
        if m:
            return ParsedAnswer(_match_key(m.group(1), keys), "", "direct")
    # The words around the answer are case-free; letter keys must be capitals so that
    # the article "a" is not read as option A.
    key_group = kp if _is_letter_keys(keys) else f"(?i:{kp})"
    stmt = re.compile(
        rf"(?i:answer\s*(?:is\s*:?|:)|correct\s+(?:option|answer|choice)\s*(?:is\s*:?|:)?)"
        rf"\s*[\-]?\s*(?i:option\s+)?[\(\[\*]*\s*({key_group})(?![A-Za-z0-9])"
    )
    m = stmt.search(text)
    if m:
        key = _match_key(m.group(1), keys)
        if key is not None:
            before = _clean_rationale(text[: m.start()])
            # Small base models often state the answer first and explain after it.
            return ParsedAnswer(key, before or _explanation_after(text[m.end():]), "answer statement")
    # An option's full text, stated alone, names it.
    lowered = text.lower()
    hits = [k for k, t in options.items() if t and len(t) > 3 and t.lower() in lowered]
    if len(hits) == 1:
        return ParsedAnswer(hits[0], _clean_rationale(text), "option text")
    if direct:
        return ParsedAnswer(None, "", "no option key at the start")
    return ParsedAnswer(None, _clean_rationale(text), "no answer statement")


def _explanation_after(text: str) -> str:
    """The explanation that follows an answer statement, up to the next question or answer."""
    text = re.split(r"\n\s*(?:Question|Answer|Options)\s*:", text, maxsplit=1, flags=re.IGNORECASE)[0]
    text = re.sub(r"^[\s.):\-]*(?:[^\n]*\n)?", "", text, count=1) if text.lstrip()[:1] not in ("", "\n") else text
    text = re.sub(r"^\s*(?:explanation|because|reasoning|rationale)\s*:\s*", "", text.strip(), flags=re.IGNORECASE)
    return text.strip()


def _clean_rationale(text: str) -> str:
    text = re.sub(r"^\s*(?:reasoning|rationale)\s*:\s*", "", text, flags=re.IGNORECASE)
    return text.strip()
