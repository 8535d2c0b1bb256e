"""Which provider failures are configuration (fatal, never retried) and which are transient."""
from __future__ import annotations

import socket

import httpx
import pytest

from medcompile.lm.base import LMConfigError, LMError, LMRequest, LMUnavailable, Message
from medcompile.lm.errors import key_variable, map_exception, unreachable_reason
from medcompile.lm.litellm_lm import LiteLLMLM
from medcompile.lm.retry import RetryingLM
from medcompile.lm.scripted import ScriptedLM

KEY = "sk-test-SECRET-errors-0123456789"


def chat(lm: LiteLLMLM) -> LMRequest:
    return LMRequest(model=lm.model, mode=lm.mode, prompt="hi", messages=(Message("user", "hi"),))


def raising(exc: BaseException) -> ScriptedLM:
    def fn(_r: LMRequest) -> str:
        raise exc
    return ScriptedLM(fn, model="m")


def test_unknown_model_is_config_and_names_the_fix() -> None:
    lm = LiteLLMLM("scripted")
    sleeps: list[float] = []
    with pytest.raises(LMConfigError) as ei:
        RetryingLM(lm, sleep=sleeps.append).complete(chat(lm))
    msg = str(ei.value)
    assert msg.startswith("model 'scripted' is not a model litellm knows (no provider prefix): use --lm local, sim")
    assert ei.value.fatal and not ei.value.retryable and sleeps == []


@pytest.mark.parametrize("model,var", [("openai/gpt-4o-mini", "OPENAI_API_KEY"),
                                       ("anthropic/claude-3-haiku-20240307", "ANTHROPIC_API_KEY")])
def test_missing_provider_key_is_config_not_an_outage(monkeypatch: pytest.MonkeyPatch, model: str, var: str) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    lm = LiteLLMLM(model)
    sleeps: list[float] = []
    with pytest.raises(LMConfigError, match=f"no API key: set {var}") as ei:
        RetryingLM(lm, sleep=sleeps.append).complete(chat(lm))
    assert sleeps == [] and not isinstance(ei.value, LMUnavailable)


def test_missing_key_env_var_is_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_KEY_VAR", raising=False)
    lm = LiteLLMLM("openai/x", api_key_env="NOT_SET_KEY_VAR")
    with pytest.raises(LMConfigError, match="NOT_SET_KEY_VAR is not set"):
        lm.complete(chat(lm))


@pytest.mark.parametrize("status,code", [(401, "rejected"), (403, "not allowed"), (404, "not found")])
def test_401_403_404_from_a_server_are_config_and_sent_once(fake_openai, monkeypatch, status, code) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MEDCOMPILE_TEST_KEY", KEY)
    lm = LiteLLMLM("openai/fake-model", api_base=fake_openai.base_url, api_key_env="MEDCOMPILE_TEST_KEY")
    fake_openai.script += [(status, {"error": {"message": f"bad key {KEY}"}}, {}, 0.0)] * 3
    with pytest.raises(LMConfigError, match=code) as ei:
        RetryingLM(lm, sleep=lambda s: None).complete(chat(lm))
    assert ei.value.status == status and len(fake_openai.requests) == 1
    assert KEY not in str(ei.value)


def test_refused_connection_is_config_reset_and_timeout_are_transient() -> None:
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    assert isinstance(map_exception(refused, "m", api_base="http://127.0.0.1:9/v1"), LMConfigError)
    assert "cannot reach http://127.0.0.1:9/v1 (connection refused)" in str(map_exception(refused, "m",
                                                                                         api_base="http://127.0.0.1:9/v1"))
    for transient in (httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("peer closed"),
                      ConnectionResetError(104, "Connection reset by peer"), TimeoutError("t")):
        err = map_exception(transient, "m")
        assert type(err) is LMError and err.retryable, transient
    assert unreachable_reason(socket.gaierror(socket.EAI_NONAME, "Name or service not known")) == "host not found"
    assert unreachable_reason(socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")) is None


def test_retrying_lm_never_retries_config_but_retries_resets() -> None:
    sleeps: list[float] = []
    with pytest.raises(LMConfigError, match="connection refused"):
        RetryingLM(raising(ConnectionRefusedError(111, "Connection refused")), sleep=sleeps.append).complete(
            LMRequest(model="m", mode="text", prompt="q"))
    assert sleeps == []
    inner = raising(ConnectionResetError(104, "reset"))
    with pytest.raises(LMUnavailable):
        RetryingLM(inner, max_retries=2, sleep=sleeps.append).complete(LMRequest(model="m", mode="text", prompt="q"))
    assert inner.calls == 3 and len(sleeps) == 2


def test_key_variable_names() -> None:
    assert key_variable("openai/gpt-4o") == "OPENAI_API_KEY"
    assert key_variable("text-completion-openai/x") == "OPENAI_API_KEY"
    assert key_variable("gpt-4o") == "OPENAI_API_KEY"
    assert key_variable("together_ai/x") == "TOGETHER_AI_API_KEY"
