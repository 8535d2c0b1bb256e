from __future__ import annotations

import json
from pathlib import Path

import pytest

from medcompile.lm.cache import CachedLM
from medcompile.lm.litellm_lm import LiteLLMLM
from medcompile.lm.meter import MeteredLM
from medcompile.lm.registry import layers, lm_settings, make_lm, wrap_lm
from medcompile.lm.retry import LimitedLM, RetryingLM
from medcompile.lm.scripted import ConstantLM


def test_remote_stack_shape_and_options(tmp_path: Path) -> None:
    lm = make_lm("openai/gpt-4o-mini", cache_dir=tmp_path, max_retries=2, base_delay=0.1, timeout=5)
    kinds = [type(x) for x in layers(lm)]
    assert kinds == [MeteredLM, CachedLM, LimitedLM, RetryingLM, LiteLLMLM]
    s = lm_settings(lm)
    json.dumps(s)
    assert s["model"] == "openai/gpt-4o-mini" and s["mode"] == "chat" and s["spec"] == "openai/gpt-4o-mini"
    assert s["retry"]["max_retries"] == 2 and s["max_concurrency"] == 8 and s["cache"] is True
    assert s["backend"]["timeout"] == 5


def test_no_cache_and_explicit_concurrency() -> None:
    lm = make_lm("text-completion-openai/foo", cache=False, max_concurrency=3, api_base="http://127.0.0.1:1/v1")
    assert CachedLM not in [type(x) for x in layers(lm)]
    s = lm_settings(lm)
    assert s["cache"] is False and s["max_concurrency"] == 3 and s["mode"] == "text"
    assert s["backend"]["api_base"] == "http://127.0.0.1:1/v1"


def test_unknown_local_model_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown local model"):
        make_lm("local/llama-9000")
    with pytest.raises(FileNotFoundError, match="GGUF model file not found"):
        make_lm("gguf:/no/such/file.gguf")


def test_settings_of_a_hand_built_stack() -> None:
    s = lm_settings(MeteredLM(ConstantLM("x", model="const", mode="chat")))
    assert s == {"model": "const", "mode": "chat", "cache": False,
                 "backend": {"backend": "scripted", "model": "const", "mode": "chat"}}


def test_wrap_lm_gives_the_standard_stack_around_any_backend(tmp_path: Path) -> None:
    from medcompile.lm.base import LMRequest
    from medcompile.lm.faults import FaultyLM
    from medcompile.lm.scripted import EchoLM

    faulty = FaultyLM(EchoLM(), ["server_error", None])
    lm = wrap_lm(faulty, cache_dir=tmp_path, base_delay=0.0)
    r = LMRequest(model="echo", mode="text", prompt="hello")
    assert lm.complete(r).text == "hello" and lm.complete(r).cached
    assert faulty.calls == 2 and lm.snapshot().calls == 2
    assert lm_settings(lm)["retry"]["base_delay"] == 0.0
