"""The direct OpenAI-compatible transport: one shared client, same errors, per-choice log-probabilities."""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from medcompile.lm import openai_http
from medcompile.lm.base import LMConfigError, LMError, LMRequest, Message
from medcompile.lm.litellm_lm import LiteLLMLM
from medcompile.lm.openai_http import choice_logprobs, endpoint_for
from medcompile.lm.registry import lm_settings, make_lm
from medcompile.lm.retry import RetryingLM


def text_req(lm: LiteLLMLM, **kw: object) -> LMRequest:
    return LMRequest(model=lm.model, mode="text", prompt="Q?\nAnswer:", max_tokens=2, **kw)  # type: ignore[arg-type]


def test_routing_openai_compatible_with_a_base_goes_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_BASE", "OPENAI_BASE_URL", "HOSTED_VLLM_API_BASE"):
        monkeypatch.delenv(var, raising=False)
    assert endpoint_for("openai/x", "http://h:1/v1/") == "http://h:1/v1"
    assert endpoint_for("hosted_vllm/org/m", "http://h:1/v1") == "http://h:1/v1"
    assert endpoint_for("openai/gpt-4o-mini", None) is None  # api.openai.com: litellm
    assert endpoint_for("anthropic/claude", "http://h:1/v1") is None  # not OpenAI-compatible
    monkeypatch.setenv("OPENAI_API_BASE", "http://env:2/v1")
    assert endpoint_for("openai/x", None) == "http://env:2/v1"
    assert LiteLLMLM("openai/x", mode="text", api_base="http://h:1/v1").settings()["transport"] == "openai-http"
    assert LiteLLMLM("openai/x", mode="text", api_base="http://h:1/v1",
                     extra={"mock_response": "x"}).settings()["transport"] == "litellm"
    assert LiteLLMLM("openai/x", mode="text", api_base="http://h:1/v1",
                     transport="litellm").settings()["transport"] == "litellm"


def test_one_client_shared_across_calls_threads_and_instances(fake_openai, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    openai_http.close_clients()
    built: list[httpx.Client] = []
    real = httpx.Client

    class Counting(real):  # type: ignore[misc,valid-type]
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, **kw)  # type: ignore[arg-type]
            built.append(self)

    monkeypatch.setattr(openai_http.httpx, "Client", Counting)
    a = LiteLLMLM("openai/m", mode="text", api_base=fake_openai.base_url)
    b = LiteLLMLM("openai/m", mode="chat", api_base=fake_openai.base_url)
    with ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(lambda i: (a if i % 2 else b).complete(
            text_req(a, seed=i) if i % 2 else LMRequest(model=b.model, mode="chat", messages=(Message("user", "q"),),
                                                       seed=i)).text, range(40)))
    assert texts == ["Answer: B"] * 40 and len(fake_openai.requests) == 40
    assert len(built) == 1  # one pooled client for the endpoint, whatever the threads and instances
    paths = {r["path"] for r in fake_openai.requests}
    assert paths == {"/v1/completions", "/v1/chat/completions"}
    assert all(r["json"]["model"] == "m" for r in fake_openai.requests)  # provider prefix stripped
    openai_http.close_clients()


def test_retry_after_and_status_mapping_on_the_shared_client(fake_openai, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MEDCOMPILE_TEST_KEY", "sk-test-abcdefghijklmnop")
    lm = LiteLLMLM("openai/m", mode="text", api_base=fake_openai.base_url, api_key_env="MEDCOMPILE_TEST_KEY")
    fake_openai.script += [(429, {"error": {"message": "slow"}}, {"retry-after-ms": "1500"}, 0.0),
                           (502, {"error": {"message": "gateway"}}, {}, 0.0)]
    sleeps: list[float] = []
    r = RetryingLM(lm, base_delay=0.25, sleep=sleeps.append).complete(text_req(lm))
    assert r.text == "Answer: B" and sleeps == [1.5, 0.5] and len(fake_openai.requests) == 3
    assert fake_openai.requests[-1]["headers"]["authorization"] == "Bearer sk-test-abcdefghijklmnop"
    fake_openai.script.append((401, {"error": {"message": "Incorrect API key provided: sk-test-abcdefghijklmnop"}},
                               {}, 0.0))
    with pytest.raises(LMConfigError) as ei:
        lm.complete(text_req(lm))
    assert "abcdefghijklmnop" not in str(ei.value) and not ei.value.retryable
    fake_openai.script.append((400, {"error": {"message": "prompt too long"}}, {}, 0.0))
    with pytest.raises(LMError) as e400:
        lm.complete(text_req(lm))
    assert e400.value.status == 400 and not e400.value.retryable and "prompt too long" in str(e400.value)


def test_timeout_is_retryable_on_the_direct_path(fake_openai, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    lm = LiteLLMLM("openai/m", mode="text", api_base=fake_openai.base_url, timeout=0.3)
    fake_openai.script.append((200, {}, {}, 1.0))
    with pytest.raises(LMError) as ei:
        lm.complete(text_req(lm))
    assert ei.value.retryable and not ei.value.fatal


def _completion_with_logprobs(tokens: list[str], tops: list[dict[str, float]]) -> dict:
    return {"choices": [{"index": 0, "text": "".join(tokens), "finish_reason": "stop",
                         "logprobs": {"tokens": tokens, "top_logprobs": tops}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": len(tokens)}}


def test_choices_ask_for_logprobs_and_return_normalised_choice_logprobs(fake_openai, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    lm = LiteLLMLM("openai/m", mode="text", api_base=fake_openai.base_url)
    tops = [{" B": math.log(0.5), " A": math.log(0.2), "B": math.log(0.1), " the": math.log(0.05)}]
    fake_openai.script.append((200, _completion_with_logprobs([" B"], tops), {}, 0.0))
    r = lm.complete(text_req(lm, choices=("A", "B", "C", "D")))
    body = fake_openai.requests[-1]["json"]
    assert body["logprobs"] == openai_http.TEXT_LOGPROBS and "guided_choice" not in body
    got = dict(r.choice_logprobs)
    assert list(got) == ["A", "B", "C", "D"]
    assert math.isclose(sum(math.exp(v) for v in got.values()), 1.0)
    # B = 0.5 + 0.1 (both spellings), A = 0.2, C and D unseen: at most the smallest listed (0.05)
    total = 0.6 + 0.2 + 0.05 + 0.05
    assert math.isclose(math.exp(got["B"]), 0.6 / total) and math.isclose(math.exp(got["C"]), 0.05 / total)
    # No choice asked: no logprobs requested, none returned.
    r2 = lm.complete(text_req(lm))
    assert "logprobs" not in fake_openai.requests[-1]["json"] and r2.choice_logprobs == ()


def test_chat_logprobs_and_guided_choice(fake_openai, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    lm = LiteLLMLM("hosted_vllm/org/m", mode="chat", api_base=fake_openai.base_url, guided_choice=True)
    content = [{"token": "Answer", "logprob": -0.1, "top_logprobs": [{"token": "Answer", "logprob": -0.1}]},
               {"token": ":", "logprob": -0.01, "top_logprobs": []},
               {"token": " C", "logprob": math.log(0.7),
                "top_logprobs": [{"token": " C", "logprob": math.log(0.7)}, {"token": " A", "logprob": math.log(0.3)}]}]
    fake_openai.script.append((200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Answer: C"},
                                                   "logprobs": {"content": content}}]}, {}, 0.0))
    r = lm.complete(LMRequest(model=lm.model, mode="chat", messages=(Message("user", "q"),), choices=("A", "C")))
    body = fake_openai.requests[-1]["json"]
    assert body["logprobs"] is True and body["top_logprobs"] == openai_http.TOP_LOGPROBS
    assert body["guided_choice"] == ["A", "C"] and body["model"] == "org/m"
    assert r.text == "Answer: C" and [k for k, _ in r.choice_logprobs] == ["A", "C"]
    assert math.isclose(math.exp(dict(r.choice_logprobs)["C"]), 0.7)


def test_choice_logprobs_without_a_choice_token_is_empty() -> None:
    choice = {"logprobs": {"tokens": [" maybe"], "top_logprobs": [{" maybe": -0.1, " A": -3.0}]}}
    assert choice_logprobs(choice, ("A", "B"), "text") == ()
    assert choice_logprobs({"logprobs": None}, ("A", "B"), "text") == ()


def test_full_stack_settings_name_the_transport(fake_openai, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    lm = make_lm("openai/m", mode="text", api_base=fake_openai.base_url, cache_dir=tmp_path)
    assert lm.complete(text_req(lm)).text == "Answer: B"
    assert lm_settings(lm)["backend"]["transport"] == "openai-http"
    assert any(k[1] == fake_openai.base_url for k in openai_http._clients)  # one shared client, kept


@pytest.mark.parametrize("transport", ["http", "litellm"])
@pytest.mark.parametrize("status,retryable,config", [(429, True, False), (503, True, False), (400, False, False),
                                                     (401, False, True), (404, False, True)])
def test_both_transports_map_errors_alike(fake_openai, monkeypatch, transport, status, retryable, config) -> None:  # type: ignore[no-untyped-def]
    """The direct client and litellm (kept for other providers) classify the same replies the same way."""
    monkeypatch.setenv("MEDCOMPILE_TEST_KEY", "sk-test-abcdefghijklmnop")
    lm = LiteLLMLM("openai/m", mode="text", api_base=fake_openai.base_url, api_key_env="MEDCOMPILE_TEST_KEY",
                   transport=transport)
    assert lm.settings()["transport"] == ("openai-http" if transport == "http" else "litellm")
    fake_openai.script.append((status, {"error": {"message": "nope"}}, {"retry-after": "3"}, 0.0))
    with pytest.raises(LMError) as ei:
        lm.complete(text_req(lm))
    assert ei.value.retryable is retryable and isinstance(ei.value, LMConfigError) is config
    assert ei.value.status == status and len(fake_openai.requests) == 1
    if status == 429:
        assert ei.value.retry_after == 3.0
    assert lm.complete(text_req(lm)).text == "Answer: B"
