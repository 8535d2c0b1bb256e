"""Constrained answers on the embedded Gemma 3 270M: keys scored by next-token log-probabilities."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from medcompile.lm.base import LMError, LMRequest
from medcompile.lm.llamacpp import LlamaCppLM
from medcompile.lm.local_model import DEFAULT_LOCAL_MODEL_ID, default_gguf_path

pytestmark = pytest.mark.real_model

PROMPT = ("Question: Which vitamin deficiency causes scurvy?\nOptions:\nA. Vitamin A\nB. Vitamin C\n"
          "C. Vitamin D\nD. Vitamin K\nAnswer:")
KEYS = ("A", "B", "C", "D")


@pytest.fixture(scope="module")
def lm() -> LlamaCppLM:
    m = LlamaCppLM(default_gguf_path(), n_ctx=512, model_name=DEFAULT_LOCAL_MODEL_ID)
    yield m
    m.close()


def req(prompt: str = PROMPT, **kw: object) -> LMRequest:
    return LMRequest(model=DEFAULT_LOCAL_MODEL_ID, mode="text", prompt=prompt, max_tokens=8, **kw)  # type: ignore[arg-type]


def probs(resp) -> dict[str, float]:
    return {k: math.exp(v) for k, v in resp.choice_logprobs}


def test_reply_is_a_key_with_normalised_probabilities(lm: LlamaCppLM) -> None:
    r = lm.complete(req(choices=KEYS))
    p = probs(r)
    assert list(p) == list(KEYS) and r.text in KEYS
    assert sum(p.values()) == pytest.approx(1.0, abs=1e-9)
    assert r.text == max(KEYS, key=lambda k: (p[k], -KEYS.index(k)))
    assert r.prompt_tokens > 20 and r.completion_tokens == 1


def test_scores_do_not_depend_on_what_the_kv_cache_held(lm: LlamaCppLM) -> None:
    first = probs(lm.complete(req(choices=KEYS)))
    lm.complete(req("Question: What is the normal adult resting heart rate?\nAnswer:"))  # other prefix
    again = probs(lm.complete(req(choices=KEYS)))
    with lm._loaded() as llm:
        llm.reset()  # cold context
    cold = probs(lm.complete(req(choices=KEYS)))
    for k in KEYS:
        assert again[k] == pytest.approx(first[k], abs=1e-4) and cold[k] == pytest.approx(first[k], abs=1e-4)


def test_generation_after_scoring_is_unchanged(lm: LlamaCppLM) -> None:
    with lm._loaded() as llm:
        llm.reset()
    before = lm.complete(req()).text
    lm.complete(req(choices=KEYS))  # leaves the prompt in the KV cache
    lm.complete(req(choices=("yes", "no", "maybe")))  # multi-token forms evaluate past the prompt
    assert lm.complete(req()).text == before


def test_word_keys_and_sampling(lm: LlamaCppLM) -> None:
    r = lm.complete(req(PROMPT.replace("Answer:", "Is vitamin C the answer? Answer:"),
                        choices=("yes", "no", "maybe")))
    assert r.text in ("yes", "no", "maybe") and sum(probs(r).values()) == pytest.approx(1.0)
    draws = {lm.complete(req(choices=KEYS, temperature=1.0, seed=s)).text for s in range(12)}
    assert draws <= set(KEYS) and len(draws) >= 2  # near-uniform model: several keys get drawn
    assert lm.complete(req(choices=KEYS, temperature=1.0, seed=3)).text == \
        lm.complete(req(choices=KEYS, temperature=1.0, seed=3)).text


def test_prompt_over_the_context_is_a_clear_error(lm: LlamaCppLM) -> None:
    with pytest.raises(LMError, match=r"context window.*n_ctx") as ei:
        lm.complete(req("word " * 1000, choices=KEYS))
    assert not ei.value.retryable
