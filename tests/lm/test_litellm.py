"""Real litellm calls against a fake OpenAI server on 127.0.0.1 (see conftest.py)."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest

from medcompile.lm.base import LMConfigError, LMError, LMRequest, LMUnavailable, Message
from medcompile.lm.litellm_lm import LiteLLMLM, guess_mode, scrub
from medcompile.lm.registry import lm_settings, make_lm
from medcompile.lm.retry import RetryingLM

KEY = "sk-test-SECRET-0123456789abcdef"
ENV = "MEDCOMPILE_TEST_API_KEY"


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(ENV, KEY)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return ENV


def chat(lm: LiteLLMLM, text: str = "hi", **kw: object) -> LMRequest:
    return LMRequest(model=lm.model, mode="chat", messages=(Message("user", text),), **kw)  # type: ignore[arg-type]


def error_body(msg: str) -> dict:
    return {"error": {"message": msg, "type": "invalid_request_error"}}


def test_chat_call_reaches_server_with_key_from_env(fake_openai, key_env) -> None:  # type: ignore[no-untyped-def]
    lm = LiteLLMLM("openai/fake-model", api_base=fake_openai.base_url, api_key_env=key_env)
    assert lm.mode == "chat"
    r = lm.complete(chat(lm, max_tokens=5, stop=("\n",), temperature=0.0, seed=3))
    assert (r.text, r.prompt_tokens, r.completion_tokens, r.cached) == ("Answer: B", 11, 3, False)
    sent = fake_openai.requests[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == f"Bearer {KEY}"
    body = sent["json"]
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert (body["max_tokens"], body["stop"], body["temperature"], body["seed"]) == (5, ["\n"], 0.0, 3)


def test_text_mode_uses_completions_endpoint(fake_openai, key_env) -> None:  # type: ignore[no-untyped-def]
    lm = LiteLLMLM("text-completion-openai/fake-model", api_base=fake_openai.base_url, api_key_env=key_env)
    assert lm.mode == "text"
    r = lm.complete(LMRequest(model=lm.model, mode="text", prompt="Question: ...\nAnswer:", max_tokens=2))
    assert r.text == "Answer: B"
    sent = fake_openai.requests[-1]
    assert sent["path"] == "/v1/completions" and sent["json"]["prompt"] == "Question: ...\nAnswer:"


@pytest.mark.parametrize("status,retryable", [(429, True), (500, True), (502, True), (503, True),
                                              (400, False), (401, False), (403, False), (404, False)])
def test_status_mapping_and_no_hidden_litellm_retries(fake_openai, key_env, status, retryable) -> None:  # type: ignore[no-untyped-def]
    lm = LiteLLMLM("openai/fake-model", api_base=fake_openai.base_url, api_key_env=key_env)
    fake_openai.script.append((status, error_body("nope"), {}, 0.0))
    with pytest.raises(LMError) as ei:
        lm.complete(chat(lm))
    assert ei.value.retryable is retryable and ei.value.status == status
    assert len(fake_openai.requests) == 1  # litellm/openai internal retries are off


def test_429_retry_after_is_honoured_end_to_end(fake_openai, key_env) -> None:  # type: ignore[no-untyped-def]
    lm = LiteLLMLM("openai/fake-model", api_base=fake_openai.base_url, api_key_env=key_env)
    fake_openai.script += [(429, error_body("slow down"), {"retry-after": "2"}, 0.0),
                           (503, error_body("busy"), {}, 0.0)]
    sleeps: list[float] = []
    r = RetryingLM(lm, base_delay=0.25, sleep=sleeps.append).complete(chat(lm))
    assert r.text == "Answer: B" and sleeps == [2.0, 0.5] and len(fake_openai.requests) == 3


def test_persistent_5xx_becomes_lm_unavailable(fake_openai, key_env) -> None:  # type: ignore[no-untyped-def]
    lm = LiteLLMLM("openai/fake-model", api_base=fake_openai.base_url, api_key_env=key_env)
    fake_openai.script += [(503, error_body("down"), {}, 0.0)] * 3
    with pytest.raises(LMUnavailable, match="openai/fake-model") as ei:
        RetryingLM(lm, max_retries=2, sleep=lambda s: None).complete(chat(lm))
    assert ei.value.status == 503 and len(fake_openai.requests) == 3


def test_timeout_is_retryable_refused_connection_is_config(fake_openai, key_env) -> None:  # type: ignore[no-untyped-def]
    lm = LiteLLMLM("openai/fake-model", api_base=fake_openai.base_url, api_key_env=key_env, timeout=0.5)
    fake_openai.script.append((200, {}, {}, 2.0))
    with pytest.raises(LMError) as ei:
        lm.complete(chat(lm))
    assert ei.value.retryable
    dead = LiteLLMLM("openai/fake-model", api_base="http://127.0.0.1:9/v1", api_key_env=key_env, timeout=2)
    with pytest.raises(LMConfigError, match="connection refused") as ei2:  # nothing listens there: never retried
        dead.complete(chat(dead))
    assert not ei2.value.retryable and ei2.value.fatal


def test_missing_key_env_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_KEY_VAR", raising=False)
    lm = LiteLLMLM("openai/fake-model", api_key_env="NOT_SET_KEY_VAR")
    with pytest.raises(LMError, match="NOT_SET_KEY_VAR is not set") as ei:
        lm.complete(chat(lm))
    assert not ei.value.retryable


def test_key_never_in_settings_errors_cache_or_logs(fake_openai, key_env, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                    caplog: pytest.LogCaptureFixture, capfd) -> None:
    caplog.set_level(logging.DEBUG)
    lm = make_lm("openai/fake-model", api_base=fake_openai.base_url, api_key_env=key_env,
                 cache_dir=tmp_path, max_retries=1, base_delay=0.0)
    r1 = lm.complete(chat(lm, "q1"))
    r2 = lm.complete(chat(lm, "q1"))
    assert (r1.cached, r2.cached) == (False, True) and len(fake_openai.requests) == 1
    # The provider echoes the key in its error body: it must be scrubbed from our error.
    fake_openai.script += [(401, error_body(f"Incorrect API key provided: {KEY}"), {}, 0.0)]
    with pytest.raises(LMError) as ei:
        lm.complete(chat(lm, "q2"))
    assert fake_openai.requests[-1]["headers"]["authorization"] == f"Bearer {KEY}"
    assert KEY not in str(ei.value) and KEY not in repr(ei.value) and ei.value.__cause__ is None
    settings = lm_settings(lm)
    dumped = json.dumps(settings)
    assert KEY not in dumped and settings["backend"]["api_key_env"] == ENV
    assert settings["model"] == "openai/fake-model" and settings["cache"] is True
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"Answer: B" in raw and KEY.encode() not in raw
    out, err = capfd.readouterr()
    assert KEY not in caplog.text and KEY not in out and KEY not in err
    assert KEY not in repr(lm.inner.inner.inner.inner.__dict__)  # the backend object itself


def test_credentials_refused_in_extra() -> None:
    with pytest.raises(ValueError, match="api_key_env"):
        LiteLLMLM("openai/x", extra={"api_key": KEY})


def test_mock_response_and_cost_for_a_priced_model() -> None:
    lm = LiteLLMLM("openai/gpt-4o-mini", extra={"mock_response": "Answer: D"})
    r = lm.complete(chat(lm))
    assert r.text == "Answer: D" and r.completion_tokens > 0 and r.cost > 0
    free = LiteLLMLM("openai/unpriced-model-xyz", extra={"mock_response": "x"})
    assert free.complete(chat(free)).cost == 0.0


def test_guess_mode() -> None:
    assert guess_mode("text-completion-openai/anything") == "text"
    assert guess_mode("gpt-3.5-turbo-instruct") == "text"
    assert guess_mode("openai/gpt-4o-mini") == "chat"
    assert guess_mode("nobody/unknown-model") == "chat"
    assert LiteLLMLM("openai/gpt-4o-mini", mode="text").mode == "text"


def test_scrub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_PROVIDER_API_KEY", "abcdefghijklmnop")
    s = scrub("key abcdefghijklmnop and sk-live-1234567890 and Bearer xyz.123456 and api_key=hunter2hunter")
    assert "abcdefghijklmnop" not in s and "sk-live-1234567890" not in s
    assert "xyz.123456" not in s and "hunter2hunter" not in s
    assert scrub("nothing secret here") == "nothing secret here"


def test_local_openai_compatible_server_needs_no_key(fake_openai, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    lm = LiteLLMLM("openai/local-model", api_base=fake_openai.base_url, mode="text")
    r = lm.complete(LMRequest(model=lm.model, mode="text", prompt="Q?\nAnswer:", max_tokens=4))
    assert r.text and fake_openai.requests[-1]["path"].endswith("/completions")


def test_litellm_transport_asks_for_logprobs_and_reads_choice_logprobs(fake_openai, key_env) -> None:  # type: ignore[no-untyped-def]
    """Providers reached through litellm get constrained answers too when they send logprobs."""
    lm = LiteLLMLM("openai/m", mode="chat", api_base=fake_openai.base_url, api_key_env=key_env,
                   transport="litellm")
    content = [{"token": " C", "logprob": math.log(0.6), "bytes": None,
                "top_logprobs": [{"token": " C", "logprob": math.log(0.6), "bytes": None},
                                 {"token": " A", "logprob": math.log(0.2), "bytes": None}]}]
    fake_openai.script.append((200, {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                                     "choices": [{"index": 0, "finish_reason": "stop",
                                                  "message": {"role": "assistant", "content": "C"},
                                                  "logprobs": {"content": content}}],
                                     "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}},
                               {}, 0.0))
    r = lm.complete(chat(lm, choices=("A", "B", "C")))
    body = fake_openai.requests[-1]["json"]
    assert body["logprobs"] is True and body["top_logprobs"] == 20
    got = dict(r.choice_logprobs)
    assert list(got) == ["A", "B", "C"] and max(got, key=got.get) == "C"
    assert math.isclose(sum(math.exp(v) for v in got.values()), 1.0)
    assert math.isclose(math.exp(got["C"]) / math.exp(got["A"]), 3.0)
    # No choices: nothing asked, nothing returned; a reply without logprobs leaves parsing to the caller.
    r2 = lm.complete(chat(lm))
    assert "logprobs" not in fake_openai.requests[-1]["json"] and r2.choice_logprobs == ()
    r3 = lm.complete(chat(lm, "again", choices=("A", "B")))
    assert r3.choice_logprobs == () and r3.text


def test_litellm_transport_reads_completion_logprobs(fake_openai, key_env) -> None:  # type: ignore[no-untyped-def]
    lm = LiteLLMLM("text-completion-openai/m", mode="text", api_base=fake_openai.base_url,
                   api_key_env=key_env, transport="litellm")
    tops = [{" B": math.log(0.5), " A": math.log(0.25)}]
    fake_openai.script.append((200, {"id": "x", "object": "text_completion", "created": 0, "model": "m",
                                     "choices": [{"index": 0, "finish_reason": "stop", "text": " B",
                                                  "logprobs": {"tokens": [" B"], "token_logprobs": [math.log(0.5)],
                                                               "top_logprobs": tops, "text_offset": [0]}}],
                                     "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}},
                               {}, 0.0))
    r = lm.complete(LMRequest(model=lm.model, mode="text", prompt="Answer:", choices=("A", "B")))
    assert fake_openai.requests[-1]["json"]["logprobs"] == 5
    got = dict(r.choice_logprobs)
    assert list(got) == ["A", "B"] and math.isclose(math.exp(got["B"]), 2 / 3)
