"""Scoring answer keys by next-token log-probabilities, with a fake tokenizer and model."""
from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import numpy as np
import pytest

from medcompile.lm.choices import log_softmax, pick_choice, score_choices

VOCAB = ["<s>", "Answer", ":", " A", " B", " C", "A", "B", "C", " may", "may", "be", " yes", "yes", " no", "no", "\n"]
IDX = {t: i for i, t in enumerate(VOCAB)}


class FakeScorer:
    """Greedy longest-match tokenizer over VOCAB; next-token logits from a table keyed by
    the tokens after the prompt (what a model would compute); counts forward passes."""

    def __init__(self, prompt_len: int, table: dict[tuple[str, ...], dict[str, float]]) -> None:
        self.prompt_len = prompt_len
        self.table = table
        self.passes: list[tuple[int, ...]] = []

    def tokenize(self, text: str) -> list[int]:
        out, i = [], 0
        while i < len(text):
            tok = max((t for t in VOCAB if text.startswith(t, i)), key=len)
            out.append(IDX[tok])
            i += len(tok)
        return out

    def next_logprobs(self, tokens: Sequence[int]) -> np.ndarray:
        self.passes.append(tuple(tokens))
        after = tuple(VOCAB[t] for t in tokens[self.prompt_len:])
        logits = np.full(len(VOCAB), -30.0)
        for tok, v in self.table.get(after, {}).items():
            logits[IDX[tok]] = v
        return log_softmax(logits)


PROMPT = [IDX["<s>"], IDX["Answer"], IDX[":"]]


def probs(lps):
    return {k: math.exp(v) for k, v in lps}


def test_keys_are_normalised_and_both_spellings_count():
    # " A" and "A" are the same answer; "\n" (the usual cause of abstention) is ignored.
    s = FakeScorer(3, {(): {" A": math.log(0.2), "A": math.log(0.2), " B": math.log(0.3), "\n": math.log(5.0)}})
    p = probs(score_choices(PROMPT, ["A", "B", "C"], s))
    assert sum(p.values()) == pytest.approx(1.0)
    assert p["A"] == pytest.approx(0.4 / 0.7, rel=1e-6)
    assert p["B"] == pytest.approx(0.3 / 0.7, rel=1e-6)
    assert p["C"] < 1e-9
    assert len(s.passes) == 1  # one forward pass for single-token keys


def test_multi_token_key_is_scored_as_a_sequence():
    # " maybe" = " may" + "be": P = P(" may") * P("be" | " may").
    s = FakeScorer(3, {(): {" yes": math.log(0.3), " no": math.log(0.1), " may": math.log(0.6)},
                       (" may",): {"be": math.log(0.5), "\n": math.log(0.5)}})
    p = probs(score_choices(PROMPT, ["yes", "no", "maybe"], s))
    assert p["maybe"] / p["yes"] == pytest.approx(0.3 / 0.3, rel=1e-4)
    assert p["yes"] / p["no"] == pytest.approx(3.0, rel=1e-4)
    assert sum(p.values()) == pytest.approx(1.0)


def test_order_of_choices_is_kept_and_inputs_checked():
    s = FakeScorer(3, {(): {" C": 1.0}})
    assert [k for k, _ in score_choices(PROMPT, ["C", "A", "B"], s)] == ["C", "A", "B"]
    with pytest.raises(ValueError):
        score_choices(PROMPT, [], s)
    with pytest.raises(ValueError):
        score_choices(PROMPT, ["A", "A"], s)


def test_pick_choice_argmax_ties_and_seeded_sampling():
    lps = ((("A", math.log(0.25)), ("B", math.log(0.5)), ("C", math.log(0.25))))
    assert pick_choice(lps, 0.0, 0) == "B"
    tie = (("A", math.log(0.5)), ("B", math.log(0.5)))
    assert pick_choice(tie, 0.0, 0) == "A"  # ties go to the earlier option
    draws = [pick_choice(lps, 1.0, seed) for seed in range(2000)]
    assert draws == [pick_choice(lps, 1.0, seed) for seed in range(2000)]  # seeded
    share = Counter(draws)["B"] / len(draws)
    assert 0.45 < share < 0.55  # temperature 1 draws from the key distribution itself
    cold = Counter(pick_choice(lps, 0.2, seed) for seed in range(500))["B"] / 500
    assert cold > 0.9  # low temperature sharpens towards the best key
