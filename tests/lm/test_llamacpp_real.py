"""A few real calls to the embedded Gemma 3 270M (CPU, ~0.1 s per short call once loaded)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from medcompile.lm.base import LMError, LMRequest
from medcompile.lm.llamacpp import LlamaCppLM, has_chat_template
from medcompile.lm.local_model import DEFAULT_LOCAL_MODEL_ID, GGUF_FILENAME, default_gguf_path
from medcompile.lm.registry import lm_settings, make_backend, make_lm

pytestmark = pytest.mark.real_model

PROMPT = ("Question: Which vitamin deficiency causes scurvy?\nA) Vitamin A\nB) Vitamin C\n"
          "C) Vitamin D\nD) Vitamin K\nAnswer:")


@pytest.fixture(scope="module")
def gguf() -> Path:
    return default_gguf_path()


@pytest.fixture(scope="module")
def lm(gguf: Path) -> LlamaCppLM:
    m = LlamaCppLM(gguf, n_ctx=512, model_name=DEFAULT_LOCAL_MODEL_ID)
    yield m
    m.close()


def req(prompt: str = PROMPT, **kw: object) -> LMRequest:
    return LMRequest(model=DEFAULT_LOCAL_MODEL_ID, mode="text", prompt=prompt, **{"max_tokens": 8, **kw})  # type: ignore[arg-type]


def test_greedy_is_deterministic_across_prefix_cache_reuse(lm: LlamaCppLM) -> None:
    a = lm.complete(req())
    lm.complete(req("Question: What is the normal adult resting heart rate?\nAnswer:"))
    b = lm.complete(req())
    assert a.text == b.text and a.text.strip() != ""
    assert a.prompt_tokens > 20 and 0 < a.completion_tokens <= 8
    assert (a.prompt_tokens, a.completion_tokens) == (b.prompt_tokens, b.completion_tokens)


def test_seed_changes_sampled_output_and_is_reproducible(lm: LlamaCppLM) -> None:
    outs = [lm.complete(req(temperature=1.0, seed=s)).text for s in range(5)]
    assert len(set(outs)) >= 2
    assert lm.complete(req(temperature=1.0, seed=0)).text == outs[0]


def test_a_reply_depends_on_its_request_not_on_the_calls_before_it(gguf: Path) -> None:
    """Before chunked prompt evaluation, 8 of these 18 replies differed from a fresh model's."""
    cot = PROMPT.replace("Answer:", "Let's think step by step.")
    sampled = req(cot, temperature=0.7, max_tokens=30, seed=1234)
    scored = req(temperature=0.0, choices=("A", "B", "C", "D"))
    fresh = LlamaCppLM(gguf, n_ctx=512, n_threads=1)
    want_text, want_scores = fresh.complete(sampled).text, fresh.complete(scored).choice_logprobs
    fresh.close()
    used = LlamaCppLM(gguf, n_ctx=512, n_threads=1)
    for before in (cot, cot[:40], cot + " First,", "Unrelated words about kidneys.", PROMPT + " B"):
        used.complete(req(before, max_tokens=6))
        assert used.complete(sampled).text == want_text, before
        used.complete(req(before, max_tokens=6))
        assert used.complete(scored).choice_logprobs == want_scores, before
    used.close()


def test_prompt_longer_than_context_is_a_clear_error(lm: LlamaCppLM) -> None:
    with pytest.raises(LMError, match=r"exceeds the context window.*raise n_ctx") as ei:
        lm.complete(req("word " * 1000))
    assert not ei.value.retryable and DEFAULT_LOCAL_MODEL_ID in str(ei.value)


def test_make_lm_local_stack_caches(tmp_path: Path) -> None:
    lm = make_lm("local", cache_dir=tmp_path, n_ctx=512)
    assert (lm.model, lm.mode) == (DEFAULT_LOCAL_MODEL_ID, "text")
    r1, r2 = lm.complete(req()), lm.complete(req())
    assert not r1.cached and r2.cached and r1.text == r2.text
    s = lm_settings(lm)
    assert s["spec"] == "local" and s["backend"]["backend"] == "llamacpp" and s["max_concurrency"] == 1
    assert str(tmp_path) not in json.dumps(s)


def test_gguf_spec_detects_base_model_as_text(gguf: Path) -> None:
    assert has_chat_template(gguf) is False  # Gemma 3 270M base ships no chat template
    b = make_backend(f"gguf:{gguf}")
    assert b.mode == "text" and b.model.startswith("local/gemma3-270m-q4_k_m-") and "/" not in b.model[6:]
    with pytest.raises(FileNotFoundError):
        make_backend("gguf:/nonexistent/model.gguf")


def test_default_gguf_is_assembled_atomically_and_reused(tmp_path: Path) -> None:
    p = default_gguf_path(tmp_path)
    assert p == tmp_path / GGUF_FILENAME and p.stat().st_size > 100_000_000
    assert [x.name for x in p.parent.iterdir() if x.name.endswith(".tmp")] == []
    mtime = p.stat().st_mtime_ns
    assert default_gguf_path(tmp_path) == p and p.stat().st_mtime_ns == mtime  # reused, not rewritten
    with p.open("r+b") as f:  # a truncated file (e.g. from an older crash) is replaced
        f.truncate(1000)
    os.utime(p, ns=(mtime, mtime))
    assert default_gguf_path(tmp_path).stat().st_size > 100_000_000


def test_stacks_share_one_loaded_model(tmp_path: Path) -> None:
    a, b = make_lm("local", cache=False, n_ctx=512), make_lm("local", cache_dir=tmp_path, n_ctx=512)
    assert a.inner.inner.inner is b.inner.inner.inner.inner  # type: ignore[attr-defined]


def test_a_model_follows_the_cpu_share_and_threads_do_not_change_answers(
        gguf: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Alone a call runs on every CPU; while another call to a local model runs, the next
    call takes its share, and all of them again after; replies are the same at any count."""
    import llama_cpp

    from medcompile.lm import cpu_share
    from medcompile.lm.llamacpp import THREADS_ENV

    monkeypatch.setenv(cpu_share.SHARE_DIR_ENV, str(tmp_path))
    monkeypatch.delenv(THREADS_ENV, raising=False)
    cpus = cpu_share.usable_cpus()
    greedy = req(max_tokens=24)
    sampled = req(PROMPT.replace("Answer:", "Let's think step by step."), temperature=0.7,
                  max_tokens=24, seed=7)
    shared = LlamaCppLM(gguf, n_ctx=512, model_name=DEFAULT_LOCAL_MODEL_ID)
    one = LlamaCppLM(gguf, n_ctx=512, n_threads=1, model_name=DEFAULT_LOCAL_MODEL_ID)
    try:
        full = shared.complete(greedy).text, shared.complete(sampled).text
        assert shared.threads == cpus
        with cpu_share.CpuShare(tmp_path).running():  # stands in for another process's call
            halved = shared.complete(greedy).text, shared.complete(sampled).text
            assert shared.threads == llama_cpp.llama_n_threads(shared._llm.ctx) == max(1, cpus // 2)
        shared.complete(greedy)
        assert shared.threads == cpus
        assert halved == full == (one.complete(greedy).text, one.complete(sampled).text)
        assert one.threads == 1  # a fixed count is not shared
    finally:
        shared.close()
        one.close()
