"""Text normalisation shared by recognition, latents and proposals.

Prompts quote questions in many ways (plain lines, DSPy field blocks, JSON strings with
escapes), so questions are compared as sequences of lower-case alphanumeric words.
"""
from __future__ import annotations

import hashlib
import re

import numpy as np

_ESCAPES = re.compile(r"\\[ntr\"'\\/]")
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(_ESCAPES.sub(" ", text.lower()))


class WordIndex:
    """The words of a text and their character spans, found in one vectorised pass (a
    match object per word is what made long prompts slow)."""

    def __init__(self, text: str) -> None:
        blanked = _ESCAPES.sub(lambda m: " " * len(m.group(0)), text.lower())
        self.words: list[str] = _WORD.findall(blanked)
        cp = np.frombuffer(blanked.encode("utf-32-le"), dtype=np.uint32)
        alnum = ((cp >= 97) & (cp <= 122)) | ((cp >= 48) & (cp <= 57))
        edges = np.diff(np.concatenate(([False], alnum, [False])).astype(np.int8))
        self._starts = np.flatnonzero(edges == 1)
        self._ends = np.flatnonzero(edges == -1)

    def span(self, i: int) -> tuple[int, int]:
        return int(self._starts[i]), int(self._ends[i])


def norm(text: str) -> str:
    return " ".join(words(text))


def text_key(text: str) -> str:
    """A short stable key for a normalised text (a question's identity in the latents)."""
    return hashlib.blake2b(norm(text).encode("utf-8"), digest_size=8).hexdigest()
