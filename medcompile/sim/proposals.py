"""Writing instructions when a prompt asks for one (medcompile, MIPROv2, GEPA).

A proposal is a base sentence plus one to three phrases from the pool; with
`proposal_quality` > 0 better phrases are likelier (a model that has some sense of
what helps). A reflective rewrite (GEPA's, and a medcompile refinement round) keeps
the current instruction's phrases and swaps one, so reflective search walks through
the pool.
"""
from __future__ import annotations

import math
import re

from .phrases import PHRASES, phrases_in
from .rand import uniform, uniforms
from .text import norm

BASE = "Answer the multiple-choice medical question by choosing the single best option."
_FENCED = re.compile(r"```(?:[a-z]*\n)?(.*?)```", re.S)


def _weighted_pick(weights: list[float], u: float) -> int:
    total = sum(weights)
    acc = 0.0
    for i, w in enumerate(weights):
        acc += w / total
        if u <= acc:
            return i
    return len(weights) - 1


def _weights(effects: tuple[float, ...], quality: float, exclude: set[int]) -> list[float]:
    sd = max(1e-9, max((abs(e) for e in effects), default=0.0))
    return [0.0 if i in exclude else math.exp(quality * 2.0 * e / sd) for i, e in enumerate(effects)]


def propose(effects: tuple[float, ...], quality: float, *seed_parts: object) -> str:
    """A fresh instruction: the base sentence and 1-3 pool phrases."""
    us = uniforms(4, "propose", *seed_parts)
    n = 1 + int(us[0] * 3)
    chosen: list[int] = []
    for k in range(n):
        w = _weights(effects, quality, set(chosen))
        chosen.append(_weighted_pick(w, uniform("propose-pick", k, *seed_parts)))
    return " ".join([BASE, *(PHRASES[i] for i in sorted(chosen))])


def reflect(current: str, effects: tuple[float, ...], quality: float, *seed_parts: object) -> str:
    """GEPA-style mutation: keep the current phrases, drop one sometimes, add one."""
    have = list(phrases_in(norm(current)))
    us = uniforms(3, "reflect", *seed_parts)
    if have and us[0] < 0.5:
        have.pop(int(us[1] * len(have)))
    w = _weights(effects, quality, set(have))
    if any(w):
        have.append(_weighted_pick(w, us[2]))
    return " ".join([BASE, *(PHRASES[i] for i in sorted(set(have)))])


def current_instruction(text: str) -> str:
    """The instruction quoted in a GEPA reflection prompt (its first fenced block)."""
    m = _FENCED.search(text)
    return m.group(1).strip() if m else ""
