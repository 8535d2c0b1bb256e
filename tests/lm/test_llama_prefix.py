"""ChunkedPrompt's bookkeeping against a fake llama context that records its decodes."""
from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
import pytest

from medcompile.lm.base import LMError
from medcompile.lm.choices import score_choices
from medcompile.lm.llama_prefix import ChunkedPrompt, ChunkedScorer

VOCAB = 8


class FakeLlama:
    """Records every decode as (first position, tokens); logits favour token (sum % VOCAB)."""

    n_batch = 512

    def __init__(self) -> None:
        self.n_tokens = 0
        self.ids: list[int] = []
        self.decodes: list[tuple[int, list[int]]] = []
        self._logits = (ctypes.c_float * VOCAB)()
        self._ctx = self

    def eval(self, tokens: list[int]) -> None:
        self.ids = self.ids[: self.n_tokens] + list(tokens)
        self.decodes.append((self.n_tokens, list(tokens)))
        self.n_tokens += len(tokens)
        for i in range(VOCAB):
            self._logits[i] = 5.0 if i == sum(self.ids) % VOCAB else 0.0

    def get_logits_ith(self, i: int) -> Any:
        return ctypes.cast(self._logits, ctypes.POINTER(ctypes.c_float))

    def n_vocab(self) -> int:
        return VOCAB

    def tokenize(self, text: bytes, add_bos: bool = False, special: bool = False) -> list[int]:
        return [b % VOCAB for b in text]


def chunks(fake: FakeLlama) -> list[tuple[int, int]]:
    return [(start, len(toks)) for start, toks in fake.decodes]


def test_a_fresh_prompt_is_decoded_in_chunks_aligned_to_position_zero() -> None:
    fake = FakeLlama()
    ChunkedPrompt(fake, n_ctx=512, chunk=4, merge=False).evaluate(list(range(10)))
    assert chunks(fake) == [(0, 4), (4, 4), (8, 2)]
    assert fake.ids == list(range(10))


def test_a_shared_prefix_is_reused_in_whole_chunks_only() -> None:
    fake = FakeLlama()
    p = ChunkedPrompt(fake, n_ctx=512, chunk=4, merge=False)
    p.evaluate([1, 2, 3, 4, 5, 6, 7, 0, 1, 2])
    fake.decodes.clear()
    p.evaluate([1, 2, 3, 4, 5, 6, 9, 9, 9])  # shares 6 tokens: one whole chunk
    assert chunks(fake) == [(4, 4), (8, 1)]  # exactly what a fresh evaluation decodes there
    fresh = FakeLlama()
    ChunkedPrompt(fresh, n_ctx=512, chunk=4, merge=False).evaluate([1, 2, 3, 4, 5, 6, 9, 9, 9])
    assert fresh.decodes[1:] == fake.decodes


def test_the_same_prompt_again_costs_nothing_until_something_else_ran() -> None:
    fake = FakeLlama()
    p = ChunkedPrompt(fake, n_ctx=512, chunk=4, merge=False)
    prompt = list(range(1, 10))
    p.evaluate(prompt)
    fake.decodes.clear()
    p.evaluate(prompt)
    assert fake.decodes == []
    p.generated()  # sampling moved the logits on: the last chunk is decoded again
    p.evaluate(prompt)
    assert chunks(fake) == [(8, 1)]


def test_a_prefix_of_the_last_prompt_decodes_its_last_chunk_again() -> None:
    fake = FakeLlama()
    p = ChunkedPrompt(fake, n_ctx=512, chunk=4, merge=False)
    p.evaluate(list(range(1, 13)))
    fake.decodes.clear()
    p.evaluate(list(range(1, 9)))  # ends on a chunk boundary; its logits were overwritten
    assert chunks(fake) == [(4, 4)]


def test_forget_trusts_nothing_and_extend_keeps_the_prompt() -> None:
    fake = FakeLlama()
    p = ChunkedPrompt(fake, n_ctx=512, chunk=4, merge=False)
    p.evaluate([1, 2, 3, 4, 5])
    p.extend([6, 7])
    assert chunks(fake)[-1] == (5, 2) and fake.ids == [1, 2, 3, 4, 5, 6, 7]
    fake.decodes.clear()
    p.evaluate([1, 2, 3, 4, 5])
    assert chunks(fake) == [(4, 1)]
    p.forget()
    fake.decodes.clear()
    p.evaluate([1, 2, 3, 4, 5])
    assert chunks(fake) == [(0, 4), (4, 1)]


def test_over_long_and_empty_prompts_are_clear_errors() -> None:
    p = ChunkedPrompt(FakeLlama(), n_ctx=8, chunk=4, label="local/tiny")
    with pytest.raises(LMError, match=r"local/tiny: prompt of 8 tokens exceeds the context window \(n_ctx=8\)"):
        p.evaluate(list(range(8)))
    with pytest.raises(LMError, match="empty prompt"):
        p.evaluate([])
    with pytest.raises(ValueError, match="at least 1"):
        ChunkedPrompt(FakeLlama(), n_ctx=8, chunk=0)


def test_scorer_reads_the_prompt_and_multi_token_keys_from_the_fake() -> None:
    fake = FakeLlama()
    p = ChunkedPrompt(fake, n_ctx=512, chunk=4, merge=False)
    base = [1, 1, 1]  # sum 3: the favoured next token is 3
    scored = dict(score_choices(base, ["\x03", "\x05"], ChunkedScorer(p, base), spellings=("{}",)))
    assert scored["\x03"] > scored["\x05"]
    assert np.isclose(np.exp(list(scored.values())).sum(), 1.0)
    with pytest.raises(ValueError, match="continuations of its own prompt"):
        ChunkedScorer(p, base).next_logprobs([2, 2])


class BatchSensitiveLlama(FakeLlama):
    """Like a llama.cpp build whose kernels round differently in larger batches: the
    logits shift if any cached position was decoded in a batch of more than 4."""

    def __init__(self) -> None:
        super().__init__()
        self.big: list[bool] = []

    def eval(self, tokens: list[int]) -> None:
        self.big = self.big[: self.n_tokens] + [len(tokens) > 4] * len(tokens)
        super().eval(tokens)
        self._logits[0] += 1e-3 * any(self.big)


def test_whole_chunks_share_a_decode_only_where_calibration_shows_it_changes_nothing() -> None:
    fake = FakeLlama()
    p = ChunkedPrompt(fake, n_ctx=512, chunk=4)
    p.evaluate(list(range(1, 15)))
    assert p.merge is True
    assert chunks(fake)[-2:] == [(0, 12), (12, 2)]  # after the probe: whole chunks, then the last
    sensitive = BatchSensitiveLlama()
    q = ChunkedPrompt(sensitive, n_ctx=512, chunk=4)
    q.evaluate(list(range(1, 15)))
    assert q.merge is False
    assert chunks(sensitive)[-4:] == [(0, 4), (4, 4), (8, 4), (12, 2)]
    assert ChunkedPrompt(FakeLlama(), n_ctx=16, chunk=4).calibrate() is False  # probe does not fit


def test_chunk_must_divide_the_batch_size() -> None:
    with pytest.raises(ValueError, match="divide n_batch=512"):
        ChunkedPrompt(FakeLlama(), n_ctx=512, chunk=48)
