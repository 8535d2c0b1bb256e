"""The simulated model's decision: a logit per displayed option, then a draw.

See `profile.py` for the formula. Everything here is a pure function of the world
(profile, seed, latents), the prompt's features and, for sampled calls, the request
seed; `replicate` re-draws the per-prompt noise (another "instance" of the model).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .latents import SimQuestion
from .phrases import instruction_effect
from .profile import Profile
from .rand import gumbels, log_softmax
from .recognise import Scene

_HINT_LINE = re.compile(r"^\s*Think step by step if asked to reason.*$", re.M | re.I)
_TRAILING_MARK = re.compile(r"(?:Question|Context)\s*:\s*$|\[\[ ## \w+ ## \]\]\s*$")
_COT = re.compile(r"step by step|\breason(?:ing)?\b|\bthink\b|chain of thought|\brationale\b", re.I)
ROLE_MARK = "\x00"


@dataclass(frozen=True)
class Features:
    """What decides the answer distribution of one call."""

    q: SimQuestion
    display_keys: tuple[str, ...]
    displayed: tuple[str, ...]
    instruction: str
    demos: tuple[tuple[str, int, bool], ...]   # (question key, topic, carries a rationale)
    cot: bool
    attempts: tuple[int, ...] = ()             # votes per displayed position from shown attempts
    temperature: float = 0.0

    def fingerprint(self) -> str:
        return "|".join((self.q.key, "/".join(self.displayed), self.instruction,
                         ",".join(k for k, _, _ in self.demos), str(int(self.cot)),
                         ",".join(map(str, self.attempts))))


def instruction_of(head: str) -> str:
    """The instruction part of the text before the first question."""
    if "your objective is:" in head:
        head = head.split("your objective is:", 1)[1]
    head = head.split(f"{ROLE_MARK}user{ROLE_MARK}", 1)[0]
    head = head.replace(f"{ROLE_MARK}system{ROLE_MARK}", "")
    head = _HINT_LINE.sub("", head)
    head = _TRAILING_MARK.sub("", head.strip())
    return head.strip()


def features(scene: Scene, temperature: float) -> Features:
    cot = bool(_COT.search(scene.tail))
    pos = {k: i for i, k in enumerate(scene.display_keys)}
    votes = [0] * len(scene.displayed)
    for a in scene.attempts:
        if a in pos:
            votes[pos[a]] += 1
    return Features(q=scene.target, display_keys=scene.display_keys, displayed=scene.displayed,
                    instruction=instruction_of(scene.head),
                    demos=tuple((e.key, e.topic, r) for e, r in scene.exemplars), cot=cot,
                    attempts=tuple(votes) if scene.attempts else (), temperature=float(temperature))


def skill(p: Profile, q: SimQuestion, instr_effect: float, n_demos: int, n_same: int, n_rationale: int,
          cot: bool, temperature: float) -> float:
    s = p.base_skill - p.difficulty_sd * q.difficulty + instr_effect + p.temperature_effect * temperature
    if cot:
        s += p.cot_effect
        if n_demos:
            s += p.rationale_demo_effect * n_rationale / n_demos
    if n_demos:
        s += p.demo_effect * (1.0 - math.exp(-n_demos / p.demo_scale))
        s += p.relevance_effect * (1.0 - math.exp(-n_same / p.demo_scale))
    return s


def bias_vector(p: Profile, n: int, preferred: int) -> list[float]:
    return [p.position_bias if j == preferred % n else 0.0 for j in range(n)]


def base_logits(p: Profile, f: Features, instr_effect: float, preferred: int) -> list[float]:
    """Noise-free logits over the displayed options."""
    q = f.q
    n_same = sum(1 for _, t, _ in f.demos if t == q.topic)
    n_rat = sum(1 for _, _, r in f.demos if r)
    s = skill(p, q, instr_effect, len(f.demos), n_same, n_rat, f.cot, f.temperature)
    bias = bias_vector(p, len(f.displayed), preferred)
    total = sum(f.attempts) if f.attempts else 0
    z = []
    for j, t in enumerate(f.displayed):
        v = p.distractor_sd * q.attract.get(t, 0.0) + bias[j]
        if t == q.gold:
            v += s
        if total:
            v += p.refine_effect * f.attempts[j] / total
        z.append(v)
    return z


@dataclass(frozen=True)
class Draw:
    index: int                 # displayed position chosen
    logits: tuple[float, ...]  # the model's logits for this prompt (with its per-prompt noise)

    def logprobs(self) -> list[float]:
        return log_softmax(self.logits)


def draw(p: Profile, f: Features, world_seed: int, replicate: int, instr_effect: float, preferred: int,
         request_seed: int) -> Draw:
    z = base_logits(p, f, instr_effect, preferred)
    n = len(z)
    fp = f.fingerprint()
    if p.prompt_noise:
        g = gumbels(n, world_seed, replicate, "prompt", fp)
        z = [v + p.prompt_noise * gi for v, gi in zip(z, g)]
    chosen = z
    if f.temperature > 0 and p.sampling_noise:
        g = gumbels(n, world_seed, replicate, "sample", fp, request_seed)
        tau = p.sampling_noise * f.temperature
        chosen = [v + tau * gi for v, gi in zip(z, g)]
    idx = max(range(n), key=lambda j: (chosen[j], -j))
    return Draw(idx, tuple(z))


def effect_of(p: Profile, instruction: str, world_seed: int, effects: tuple[float, ...]) -> float:
    return instruction_effect(instruction, world_seed, effects, p.instruction_noise)
