"""Scoring a fixed answer set by the model's own next-token probabilities.

A question with options has a finite answer set, so a direct answer need not be
generated and parsed: read the log-probability of each option key as the text that
follows the prompt, and the answer is one of the keys by construction. A key may be
written with or without a leading space (" A" after "Answer:" is the usual token, "A"
also occurs), and may take several tokens ("maybe"); each written form is scored as a
token sequence and the forms of one key are summed (log-sum-exp). The result is
normalised over the keys, so exp() of the values sums to 1.

Backend-free: anything that can tokenise and give next-token log-probabilities after
a token prefix (`TokenScorer`) can be scored, which is also how the logic is tested.
"""
from __future__ import annotations

import math
from typing import Protocol, Sequence

import numpy as np

#: How a key may be written right after the prompt; "{}" is the key itself.
SPELLINGS = (" {}", "{}")


class TokenScorer(Protocol):
    def tokenize(self, text: str) -> list[int]:
        """Tokens of `text` as a continuation (no BOS)."""
        ...

    def next_logprobs(self, tokens: Sequence[int]) -> np.ndarray:
        """Log-probabilities over the vocabulary of the token that follows `tokens`."""
        ...


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    m = float(np.max(x))
    return x - (m + math.log(float(np.sum(np.exp(x - m)))))


def _logsumexp(values: Sequence[float]) -> float:
    finite = [v for v in values if v != -math.inf]
    if not finite:
        return -math.inf
    m = max(finite)
    return m + math.log(sum(math.exp(v - m) for v in finite))


def score_choices(prompt_tokens: Sequence[int], choices: Sequence[str], scorer: TokenScorer,
                  spellings: Sequence[str] = SPELLINGS) -> tuple[tuple[str, float], ...]:
    """(choice, normalised log-probability) for each choice, in the given order.

    Next-token distributions are memoised per token prefix, so single-token keys cost
    one forward pass over the prompt in all.
    """
    if not choices:
        raise ValueError("score_choices needs at least one choice")
    if len(set(choices)) != len(choices):
        raise ValueError(f"choices must be distinct, got {list(choices)}")
    base = tuple(prompt_tokens)
    memo: dict[tuple[int, ...], np.ndarray] = {}

    def dist(extra: tuple[int, ...]) -> np.ndarray:
        if extra not in memo:
            memo[extra] = scorer.next_logprobs(base + extra)
        return memo[extra]

    raw: list[float] = []
    for choice in choices:
        forms = {tuple(scorer.tokenize(s.format(choice))) for s in spellings}
        seq_scores = []
        for form in sorted(f for f in forms if f):
            seq_scores.append(sum(float(dist(form[:i])[tok]) for i, tok in enumerate(form)))
        raw.append(_logsumexp(seq_scores))
    total = _logsumexp(raw)
    if total == -math.inf:  # every form impossible: no information, so uniform
        return tuple((c, -math.log(len(choices))) for c in choices)
    return tuple((c, r - total) for c, r in zip(choices, raw))


def pick_choice(logprobs: Sequence[tuple[str, float]], temperature: float, seed: int) -> str:
    """The most likely choice (ties: the earlier one) at temperature 0; else a draw from
    the choice distribution sharpened or flattened by `temperature`, seeded."""
    if not logprobs:
        raise ValueError("pick_choice needs scored choices")
    if temperature <= 0:
        best = max(range(len(logprobs)), key=lambda i: (logprobs[i][1], -i))
        return logprobs[best][0]
    scaled = np.array([lp / temperature for _, lp in logprobs], dtype=np.float64)
    p = np.exp(log_softmax(scaled))
    idx = int(np.random.default_rng(seed).choice(len(p), p=p / p.sum()))
    return logprobs[idx][0]
