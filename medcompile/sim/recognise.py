"""Finding the questions in a prompt: the target (the last one) and the exemplars before it.

Works on any layout because questions are matched as word sequences (`text.words`):
medcompile's text and chat layouts, DSPy's ChatAdapter field blocks and JSONAdapter
prompts alike. Registry stems are indexed by their first words; a prompt is scanned
once, jumping over each stem it matched. The displayed option order is read from the
option lines (``A. text``, ``A) text``, ``"A": "text"``) after the stem, so a shuffled
display is seen as shuffled. Questions not in the registry are parsed from
``Question:`` / ``[[ ## question ## ]]`` blocks and get latents hashed from their text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from ..question import Question
from .latents import SimQuestion
from .text import WordIndex, norm, words

KEY_WORDS = 6  # stems are indexed by their first words; collisions are settled by the full stem
_OPTION_LINE = re.compile(r'^[ \t]*["\'(\[]?(?P<key>[A-Za-z]{1,7})["\')\]]?[ \t]*[.):][ \t]*(?P<text>.+?)[ \t,]*$', re.M)
_JSON_PAIR = re.compile(r'"(?P<key>[A-Za-z]{1,7})"\s*:\s*"(?P<text>(?:[^"\\]|\\.)*)"')
_ATTEMPT = re.compile(r"\(answer\s+([A-Za-z]{1,7})\)")
_BLOCK = re.compile(r"(?:Question\s*:|\[\[ ## question ## \]\])[ \t]*\n?")
_STEM_END = re.compile(r"\n\s*(?:Options\s*:|\[\[ ## |[\"'(\[]?[A-Z][\"')\]]?\s*[.):]\s)|\n\s*\{")


@dataclass(frozen=True)
class Occurrence:
    q: SimQuestion
    start: int  # character span of the stem in the prompt
    end: int


@dataclass
class Scene:
    """What the simulator sees in one prompt."""

    target: SimQuestion
    display_keys: tuple[str, ...]        # option keys as displayed, in order
    displayed: tuple[str, ...]           # normalised option texts, in displayed order
    exemplars: list[tuple[SimQuestion, bool]] = field(default_factory=list)  # (question, carries a rationale)
    head: str = ""                       # text before the first question (instruction, system text)
    tail: str = ""                       # text after the target's options (format requests)
    attempts: tuple[str, ...] = ()       # display keys answered by earlier attempts (ensemble refinement)


class Registry:
    """Stems indexed by their first words, for recognising questions in prompts."""

    def __init__(self) -> None:
        self._by_prefix: dict[tuple[str, ...], list[SimQuestion]] = {}
        self._starts: set[tuple[str, str]] = set()
        self.questions: dict[str, SimQuestion] = {}

    def __len__(self) -> int:
        return len(self.questions)

    def add(self, q: SimQuestion) -> None:
        if len(q.stem_words) < 2 or q.key in self.questions:
            return
        self.questions[q.key] = q
        self._by_prefix.setdefault(q.stem_words[:KEY_WORDS], []).append(q)
        self._starts.add(q.stem_words[:2])

    def find(self, ws: list[str]) -> list[tuple[SimQuestion, int, int]]:
        """(question, first word, end word) for every registry stem in the word list."""
        out = []
        i, n = 0, len(ws)
        starts, by_prefix = self._starts, self._by_prefix
        while i < n - 1:
            if (ws[i], ws[i + 1]) in starts:
                cands = by_prefix.get(tuple(ws[i:i + KEY_WORDS]))
                if cands:
                    best = None
                    for q in cands:
                        m = len(q.stem_words)
                        if tuple(ws[i:i + m]) == q.stem_words and (best is None or m > len(best.stem_words)):
                            best = q
                    if best is not None:
                        out.append((best, i, i + len(best.stem_words)))
                        i += len(best.stem_words)
                        continue
            i += 1
        return out


def _displayed_options(region: str, q: SimQuestion) -> tuple[tuple[str, ...], tuple[str, ...], int]:
    """(display keys, normalised texts, end offset of the options) read from `region`."""
    wanted = set(q.options)
    hits: list[tuple[int, int, str, str]] = []
    for rx in (_OPTION_LINE, _JSON_PAIR):
        for m in rx.finditer(region):
            t = norm(m.group("text"))
            if t in wanted:
                hits.append((m.start(), m.end(), m.group("key"), t))
    hits.sort()
    keys, texts, seen, end = [], [], set(), 0
    for start, stop, key, t in hits:
        if t in seen:
            continue
        seen.add(t)
        keys.append(key)
        texts.append(t)
        end = max(end, stop)
        if len(texts) == len(q.options):
            break
    if len(texts) == len(q.options) and len(set(keys)) == len(keys):
        return tuple(keys), tuple(texts), end
    return q.option_keys, q.options, 0


def _has_rationale(n_words_after: int, q: SimQuestion) -> bool:
    """An exemplar carries a rationale when much more than its options and answer follow it
    (`n_words_after`: words between its stem and the next question's)."""
    extra = n_words_after - sum(len(o.split()) + 1 for o in q.options)
    return extra > 15


def parse_blocks(text: str) -> list[tuple[Question, int, int]]:
    """Questions written as ``Question: ... / options`` blocks (for questions outside the registry)."""
    out = []
    marks = list(_BLOCK.finditer(text))
    for j, m in enumerate(marks):
        stop = marks[j + 1].start() if j + 1 < len(marks) else len(text)
        block = text[m.end():stop]
        se = _STEM_END.search(block)
        stem = (block[:se.start()] if se else block).strip()
        if not stem:
            continue
        rest = block[se.start():] if se else ""
        opts: dict[str, str] = {}
        for om in sorted([*_OPTION_LINE.finditer(rest), *_JSON_PAIR.finditer(rest)], key=lambda x: x.start()):
            k, t = om.group("key"), om.group("text").strip().strip('"').strip()
            if k.lower() in ("answer", "reasoning", "options", "question", "context", "attempt") or k in opts:
                continue
            if len(opts) >= 2 and k[0].isupper() != next(iter(opts))[0].isupper():
                break
            opts[k] = t
        if len(opts) >= 2:
            try:
                out.append((Question(id="", question=stem, options=opts), m.start(), m.end() + len(stem)))
            except ValueError:
                continue
    return out


def recognise(text: str, registry: Registry, unknown: Callable[[Question], SimQuestion]) -> Scene | None:
    """The scene in `text`, or None when no question can be found in it."""
    index = WordIndex(text) if len(registry) else None
    hits = registry.find(index.words) if index is not None else []
    if hits:
        # Only two character positions are needed: where the first stem starts (the head ends)
        # and where the target's stem ends (its options follow); the rest is counted in words.
        exemplars = [(q, _has_rationale(nxt_a - b, q)) for (q, _, b), (_, nxt_a, _) in zip(hits, hits[1:])]
        q, a, b = hits[-1]
        assert index is not None
        last = Occurrence(q, index.span(a)[0], index.span(b - 1)[1])
        head_end = index.span(hits[0][1])[0]
    else:
        found = [Occurrence(unknown(q), a, b) for q, a, b in parse_blocks(text)]
        if not found:
            return None
        exemplars = [(occ.q, _has_rationale(len(words(text[occ.end:nxt.start])), occ.q))
                     for occ, nxt in zip(found, found[1:])]
        last, head_end = found[-1], found[0].start
    region = text[last.end:]
    keys, texts, opt_end = _displayed_options(region, last.q)
    tail = region[opt_end:]
    return Scene(target=last.q, display_keys=keys, displayed=texts, exemplars=exemplars,
                 head=text[:head_end], tail=tail, attempts=tuple(_ATTEMPT.findall(tail)))
