"""Stable pseudo-random numbers from hashes, so every draw is a pure function of its inputs.

The simulator never keeps a random state: a latent (a question's difficulty) or a
draw (a sampled answer) is a hash of the world seed and of what it belongs to. The
same inputs give the same numbers in any process, in any order of calls.
"""
from __future__ import annotations

import hashlib
import math
from typing import Sequence

_SCALE = 1.0 / float(1 << 53)


def uniforms(n: int, *parts: object) -> list[float]:
    """`n` uniforms in (0, 1) from the parts (blake2b, 8 numbers per 64-byte digest)."""
    out: list[float] = []
    block = 0
    base = "\x1f".join(str(p) for p in parts).encode("utf-8")
    while len(out) < n:
        d = hashlib.blake2b(base + b"\x1e" + str(block).encode(), digest_size=64).digest()
        for i in range(0, 64, 8):
            x = int.from_bytes(d[i:i + 8], "little") >> 11
            out.append((x + 0.5) * _SCALE)
        block += 1
    return out[:n]


def uniform(*parts: object) -> float:
    return uniforms(1, *parts)[0]


def gumbels(n: int, *parts: object) -> list[float]:
    """Standard Gumbel draws: argmax(logits + Gumbel) samples from softmax(logits)."""
    return [-math.log(-math.log(u)) for u in uniforms(n, *parts)]


def normal(*parts: object) -> float:
    """A standard normal draw (Box-Muller on two hashed uniforms)."""
    u1, u2 = uniforms(2, *parts)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def int_seed(*parts: object) -> int:
    """A 63-bit integer seed (for numpy generators) from the parts."""
    d = hashlib.blake2b("\x1f".join(str(p) for p in parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(d, "little") >> 1


def softmax(z: Sequence[float]) -> list[float]:
    m = max(z)
    e = [math.exp(v - m) for v in z]
    s = sum(e)
    return [v / s for v in e]


def log_softmax(z: Sequence[float]) -> list[float]:
    m = max(z)
    lse = m + math.log(sum(math.exp(v - m) for v in z))
    return [v - lse for v in z]
