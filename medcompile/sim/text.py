"""Text normalisation shared by recognition, latents and proposals.

Prompts quote questions in many ways (plain lines, DSPy field blocks, JSON strings with
escapes), so questions are compared as sequences of lower-case alphanumeric words.
"""
from __future__ import annotations

import hashlib
import re

_ESCAPES = re.compile(r"\\[ntr\"'\\/]")
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(_ESCAPES.sub(" ", text.lower()))


def word_spans(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Words of `text` and their character spans in it (escapes are blanked, not removed,
    so spans index the original text)."""
    blanked = _ESCAPES.sub(lambda m: " " * len(m.group(0)), text.lower())
    ws, spans = [], []
    for m in _WORD.finditer(blanked):
        ws.append(m.group(0))
        spans.append(m.span())
    return ws, spans


def norm(text: str) -> str:
    return " ".join(words(text))


def text_key(text: str) -> str:
    """A short stable key for a normalised text (a question's identity in the latents)."""
    return hashlib.blake2b(norm(text).encode("utf-8"), digest_size=8).hexdigest()
