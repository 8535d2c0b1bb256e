"""Latent properties of questions: topic, difficulty and how tempting each wrong option is.

Topics come from k-means over the same wordllama stem embeddings that medcompile's kNN
retrieval uses, so kNN exemplars share the target's topic far more often than random
ones (measured in tests/sim/test_latents.py), as real same-subject exemplars would.
Difficulty and option attractiveness are hashed from the world seed and the question's
text, so a new seed gives fresh latents over the same questions.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..question import Question
from .rand import int_seed, normal, uniform
from .text import norm, text_key, words

log = logging.getLogger(__name__)
_EMBED_CACHE: dict[str, np.ndarray] = {}


@dataclass(frozen=True)
class SimQuestion:
    """A question as the simulator knows it. Options are identified by their normalised
    text, so a shuffled display still maps to the same latents."""

    key: str
    stem_words: tuple[str, ...]
    options: tuple[str, ...]          # normalised option texts, original order
    option_keys: tuple[str, ...]      # original keys
    gold: str | None                  # normalised gold text
    topic: int
    difficulty: float                 # standard normal; the profile scales it
    attract: dict[str, float] = field(default_factory=dict)  # standard normal per option text
    registered: bool = True


def stem_text(q: Question) -> str:
    return q.question


def make_sim_question(q: Question, seed: int, topic: int, registered: bool = True) -> SimQuestion:
    key = text_key(stem_text(q))
    opts = tuple(norm(t) for t in q.options.values())
    gold = norm(q.options[q.answer]) if q.answer is not None else _hashed_gold(key, opts)
    return SimQuestion(key=key, stem_words=tuple(words(stem_text(q))), options=opts, option_keys=tuple(q.options),
                       gold=gold, topic=topic, difficulty=normal(seed, "difficulty", key),
                       attract={o: normal(seed, "attract", key, o) for o in opts}, registered=registered)


def _hashed_gold(key: str, opts: Sequence[str]) -> str | None:
    """An unknown question still gets a 'true' answer, fixed by its text, so the model is
    consistent across shuffles and calls."""
    if not opts:
        return None
    return min(opts, key=lambda o: uniform("gold", key, o))


def hashed_topic(key: str, n_topics: int) -> int:
    return int(uniform("topic", key) * n_topics) % n_topics


def embed_stems(stems: Sequence[str]) -> np.ndarray | None:
    """wordllama embeddings of the stems (the default embedder), cached per process."""
    h = hashlib.sha256("\x1e".join(stems).encode("utf-8")).hexdigest()
    if h in _EMBED_CACHE:
        return _EMBED_CACHE[h]
    try:
        from ..embed import make_embedder

        m = np.asarray(make_embedder(None).embed(list(stems)), dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - any embedder failure falls back to hashed topics
        log.warning("simulator: embedder unavailable (%s); topics are hashed from the text", exc)
        return None
    _EMBED_CACHE[h] = m
    return m


def kmeans(x: np.ndarray, k: int, seed: int, iters: int = 25) -> np.ndarray:
    """Plain k-means (k-means++ start, cosine on normalised rows): labels per row."""
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    rng = np.random.default_rng(int_seed("kmeans", seed))
    n = x.shape[0]
    k = max(1, min(k, n))
    centers = [x[rng.integers(n)]]
    for _ in range(1, k):
        d = np.min(np.stack([1.0 - x @ c for c in centers]), axis=0).clip(min=0) ** 2
        p = d / d.sum() if d.sum() > 0 else np.full(n, 1.0 / n)
        centers.append(x[rng.choice(n, p=p)])
    c = np.stack(centers)
    labels = np.zeros(n, dtype=int)
    for _ in range(iters):
        new = np.argmax(x @ c.T, axis=1)
        if np.array_equal(new, labels) and _ > 0:
            break
        labels = new
        for j in range(k):
            members = x[labels == j]
            if len(members):
                v = members.mean(axis=0)
                c[j] = v / max(np.linalg.norm(v), 1e-12)
    return labels


def assign_topics(questions: Sequence[Question], seed: int, n_topics: int, use_embeddings: bool = True) -> list[int]:
    """Topic per question: k-means clusters of the stem embeddings (hash fallback)."""
    if not questions:
        return []
    emb = embed_stems([stem_text(q) for q in questions]) if use_embeddings else None
    if emb is None:
        return [hashed_topic(text_key(stem_text(q)), n_topics) for q in questions]
    return [int(t) for t in kmeans(emb, n_topics, seed)]
