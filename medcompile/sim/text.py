"""Text normalisation shared by recognition, latents and proposals.

Prompts quote questions in many ways (plain lines, DSPy field blocks, JSON strings with
escapes), so questions are compared as sequences of lower-case alphanumeric words.
"""
from __future__ import annotations

import hashlib
import re
from bisect import bisect_right

_ESCAPES = re.compile(r"\\[ntr\"'\\/]")
_WORD = re.compile(r"[a-z0-9]+")
_SKIP: dict[int, re.Pattern[str]] = {}


def words(text: str) -> list[str]:
    return _WORD.findall(_ESCAPES.sub(" ", text.lower()))


class WordIndex:
    """The words of a text, with character spans computed only for the words asked about
    (building a match object per word is what made long prompts slow)."""

    def __init__(self, text: str) -> None:
        blanked = _ESCAPES.sub(lambda m: " " * len(m.group(0)), text.lower())
        self.words: list[str] = []
        self._lines: list[tuple[int, int, str]] = []  # (first word index, char offset, line text)
        off = 0
        for line in blanked.splitlines(keepends=True):
            ws = _WORD.findall(line)
            if ws:
                self._lines.append((len(self.words), off, line))
                self.words.extend(ws)
            off += len(line)
        self._starts = [first for first, _, _ in self._lines]

    def span(self, i: int) -> tuple[int, int]:
        j = bisect_right(self._starts, i) - 1
        first, off, line = self._lines[j]
        k = i - first
        skip = _SKIP.get(k)
        if skip is None:
            skip = _SKIP[k] = re.compile(rf"(?:[^a-z0-9]*[a-z0-9]+){{{k}}}") if k else re.compile("")
        m = _WORD.search(line, skip.match(line).end())  # type: ignore[union-attr]
        if m is None:
            raise IndexError(i)
        return off + m.start(), off + m.end()


def norm(text: str) -> str:
    return " ".join(words(text))


def text_key(text: str) -> str:
    """A short stable key for a normalised text (a question's identity in the latents)."""
    return hashlib.blake2b(norm(text).encode("utf-8"), digest_size=8).hexdigest()
