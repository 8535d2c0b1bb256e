"""The instruction phrase pool: what instruction search can find in the simulator.

Each phrase has a latent effect on skill, drawn per world seed (sd = the profile's
`instruction_sd`), so "which instruction is best" has a true answer that differs from
world to world. An instruction's effect is the sum of the effects of the pool phrases it
contains plus a small hashed effect of its whole text (`instruction_noise`), so texts
outside the pool also differ a little, as real instructions do.
"""
from __future__ import annotations

from functools import lru_cache

from .rand import normal
from .text import norm

PHRASES: tuple[str, ...] = (
    "Identify the most likely diagnosis before reading the options.",
    "Think like a board-certified physician.",
    "Eliminate options that contradict the vignette.",
    "Focus on the single most discriminating clinical finding.",
    "Pay attention to the patient's age, sex and risk factors.",
    "Consider the most common cause first.",
    "Be concise.",
    "Answer quickly without overthinking.",
    "Use the underlying pathophysiology to justify the choice.",
    "Recall first-line management from current guidelines.",
    "Choose what a senior clinician would do next.",
    "Beware of distractors that are true but irrelevant.",
    "Check for contraindications before choosing a treatment.",
    "Compare laboratory values with their normal ranges.",
    "Do not assume facts that are not stated.",
    "Weigh every option against the whole vignette.",
    "Remember that exam questions test classic presentations.",
    "Guess when unsure.",
    "Prefer the most specific option.",
    "Prefer the safest option.",
    "Look for the mechanism of action being tested.",
    "Consider the timeline of the symptoms.",
    "Rule out emergencies first.",
    "Translate the vignette into a one-line summary.",
)
_NORMED = tuple(norm(p) for p in PHRASES)


def phrase_effects(seed: int, sd: float) -> tuple[float, ...]:
    """The latent effect of each pool phrase in the world with this seed."""
    return tuple(sd * normal(seed, "phrase", p) for p in _NORMED)


@lru_cache(maxsize=4096)
def phrases_in(instruction_norm: str) -> tuple[int, ...]:
    """Indices of the pool phrases contained in a normalised instruction."""
    padded = f" {instruction_norm} "
    return tuple(i for i, p in enumerate(_NORMED) if f" {p} " in padded)


def instruction_effect(instruction: str, seed: int, effects: tuple[float, ...], noise_sd: float) -> float:
    n = norm(instruction)
    if not n:
        return 0.0
    e = sum(effects[i] for i in phrases_in(n))
    if noise_sd:
        e += noise_sd * normal(seed, "instruction", n)
    return e
