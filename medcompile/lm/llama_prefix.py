"""Prompt evaluation for in-process llama.cpp whose result does not depend on history.

llama.cpp's CPU kernels compute a token's activations differently depending on how it
was batched (a tile of several tokens, a remainder row, a one-token replay), so the
same prompt evaluated fresh, or after a prompt sharing part of it, gave logits that
differed in the last bits, and a seeded sampled reply that differed in its text (2 of
70 repeated ensemble-refinement questions did). A resumed or reordered run then wrote
different replies than an uninterrupted one.

`ChunkedPrompt` makes the batching a function of the tokens alone. A prompt is cut
into chunks of `chunk` tokens aligned to position 0; the KV cache is reused only in
whole chunks the same tokens filled before; the last (partial) chunk is always decoded
on its own. The whole chunks before it are decoded together, in as few batches as
llama.cpp allows, if this build computes a whole chunk the same way alone and inside a
larger batch; `calibrate` checks that once per model on a probe prompt, and otherwise
every chunk gets its own decode (slower on long fresh prompts, never different).
Every prompt therefore reaches the same KV cache and logits as if it were the first,
at the cost of re-evaluating at most `chunk - 1` shared tokens per call
(`benchmarks/bench_llama_prefix.py` measures it).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medcompile.lm.base import LMError
from medcompile.lm.choices import log_softmax

#: Tokens per decode. Small enough that little shared prefix is re-evaluated, large
#: enough that prompt evaluation keeps its batch speed (see the benchmark).
DEFAULT_CHUNK = 64


def shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` have in common."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class ChunkedPrompt:
    """Owns the KV cache of one `Llama`: evaluates prompts chunk by chunk and remembers
    which tokens the cache holds in canonical form."""

    def __init__(self, llm: Any, n_ctx: int, chunk: int = DEFAULT_CHUNK, label: str = "llama.cpp",
                 merge: bool | None = None) -> None:
        n_batch = int(getattr(llm, "n_batch", chunk))
        if chunk < 1 or n_batch % chunk:
            raise ValueError(f"chunk must be at least 1 token and divide n_batch={n_batch}, got {chunk}")
        self.llm = llm
        self.n_ctx = n_ctx
        self.label = label  # names the model in error messages
        self.chunk = chunk
        self.merge = merge  # whole chunks share decodes; None: calibrate() on first use
        self._tokens: list[int] = []  # KV positions [0, len) hold these, chunk-evaluated
        self._logits_current = False  # the context's last logits are those of _tokens[-1]

    def prompt_tokens(self, prompt: str) -> list[int]:
        """The tokens `create_completion` would feed for `prompt` (BOS + text)."""
        llm = self.llm
        bos = [llm.token_bos()] if llm._model.add_bos_token() and llm.token_bos() != -1 else []
        return bos + llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)

    def reusable(self, tokens: Sequence[int]) -> int:
        """How many leading tokens of `tokens` need no evaluation: whole chunks shared
        with what the cache holds, or all of them if they are exactly what was last
        evaluated (their logits are still current)."""
        common = shared_prefix(self._tokens, tokens)
        if self._logits_current and common == len(tokens) == len(self._tokens):
            return common
        # the chunk holding the last token is decoded again: its logits are needed
        return (min(common, len(tokens) - 1) // self.chunk) * self.chunk

    def evaluate(self, tokens: Sequence[int]) -> None:
        """Leave the context holding `tokens`, with the logits of the last one."""
        tokens = list(tokens)
        if not tokens:
            raise LMError(f"{self.label}: cannot evaluate an empty prompt")
        self.check_fits(tokens)
        if self.merge is None:  # before `reusable`: calibrating empties the cache
            self.merge = self.calibrate()
        keep = self.reusable(tokens)
        if keep == len(tokens):
            return
        self._tokens, self._logits_current = tokens[:keep], False  # until the decodes succeed
        self._decode(tokens, keep, self.merge)
        self._tokens, self._logits_current = tokens, True

    def _decode(self, tokens: list[int], keep: int, merge: bool) -> None:
        """Decode tokens[keep:] after the cached tokens[:keep] (keep is a chunk boundary)."""
        llm = self.llm
        last = (len(tokens) - 1) // self.chunk * self.chunk  # where the final chunk starts
        llm.n_tokens = keep  # eval() drops the KV cache beyond n_tokens first
        if merge and keep < last:
            llm.eval(tokens[keep:last])  # batches of n_batch, a multiple of chunk
            keep = last
        for start in range(keep, len(tokens), self.chunk):
            llm.eval(tokens[start:start + self.chunk])

    def calibrate(self) -> bool:
        """True if whole chunks decoded together give bit-identical logits to chunks
        decoded one by one, on a probe prompt of three chunks and a bit (checked once
        per model: it is a property of the build, the weights' format and the CPU)."""
        vocab = max(2, min(1000, int(self.llm.n_vocab()) - 1))
        probe = [(7 * i + 3) % vocab + 1 for i in range(3 * self.chunk + 5)]
        if len(probe) >= self.n_ctx:
            return False  # too small a context to tell: decode chunk by chunk
        self.forget()
        try:
            self._decode(probe, 0, merge=True)
            merged = self.last_logprobs()
            self._decode(probe, 0, merge=False)
            return bool(np.array_equal(merged, self.last_logprobs()))
        finally:
            self.forget()

    def check_fits(self, tokens: Sequence[int]) -> None:
        if len(tokens) >= self.n_ctx:
            raise LMError(f"{self.label}: prompt of {len(tokens)} tokens exceeds the context window "
                          f"(n_ctx={self.n_ctx}); shorten the prompt or raise n_ctx")

    def extend(self, extra: Sequence[int]) -> None:
        """Evaluate `extra` after the last evaluated prompt in one decode (always the
        same decode for the same prompt and extra, so still history-free); the prompt's
        KV stays canonical, its logits no longer current."""
        llm = self.llm
        self._logits_current = False
        llm.n_tokens = len(self._tokens)
        llm.eval(list(extra))

    def generated(self) -> None:
        """Note that a completion sampled from the current logits: the positions after the
        prompt hold generated tokens and the logits are no longer the prompt's."""
        self._logits_current = False

    def forget(self) -> None:
        """Trust nothing in the cache (after an error, or when someone else used it)."""
        self._tokens, self._logits_current = [], False

    def last_logprobs(self) -> np.ndarray:
        llm = self.llm
        ptr = llm._ctx.get_logits_ith(-1)
        return log_softmax(np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).copy())


class ChunkedScorer:
    """`TokenScorer` for one prompt: next-token log-probabilities after the prompt and
    after the prompt plus a few answer tokens, all history-free."""

    def __init__(self, prompt: ChunkedPrompt, prompt_tokens: Sequence[int]) -> None:
        self.prompt = prompt
        self.base = list(prompt_tokens)

    def tokenize(self, text: str) -> list[int]:
        return list(self.prompt.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def next_logprobs(self, tokens: Sequence[int]) -> np.ndarray:
        tokens = list(tokens)
        n = len(self.base)
        if tokens[:n] != self.base:
            raise ValueError("ChunkedScorer scores continuations of its own prompt only")
        self.prompt.check_fits(tokens)
        self.prompt.evaluate(self.base)
        if len(tokens) > n:
            self.prompt.extend(tokens[n:])
        return self.prompt.last_logprobs()
