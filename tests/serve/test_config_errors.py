"""A model that can never answer as configured is reported as such, once, not as a flaky backend."""
from __future__ import annotations

from fastapi.testclient import TestClient

from medcompile import Predict, Program
from medcompile.lm.base import LMConfigError, LMRequest
from medcompile.lm.registry import wrap_lm
from medcompile.lm.scripted import ScriptedLM
from medcompile.serve import create_app

Q = {"question": "Which vitamin deficiency causes scurvy?", "options": {"A": "Vitamin A", "B": "Vitamin C"}}


def test_config_error_is_502_model_config_error_and_never_retried() -> None:
    def fn(_r: LMRequest) -> str:
        raise LMConfigError("openai/x: the API key was rejected: check OPENAI_API_KEY", status=401)

    backend = ScriptedLM(fn, model="openai/x")
    app = create_app({"zs": Program(Predict(tune=False), name="zs")}, wrap_lm(backend, cache=False))
    with TestClient(app) as client:
        r = client.post("/v1/programs/zs/predict", json=Q)
        assert r.status_code == 502 and r.json()["error"]["code"] == "model_config_error", r.text
        assert "API key was rejected" in r.json()["error"]["message"]
        assert backend.calls == 1  # not retried
        r = client.post("/v1/programs/zs/batch", json={"questions": [Q, Q]})
        assert r.status_code == 502 and r.json()["error"]["code"] == "model_config_error", r.text


def test_serve_refuses_an_unknown_model_name_before_listening(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from medcompile.cli.main import main

    prog = tmp_path / "zs.json"
    Program(Predict(tune=False), name="zs").save(str(prog))
    with pytest.raises(SystemExit) as ei:
        main(["serve", str(prog), "--lm", "nosuchmodel", "--port", "0"])
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model 'nosuchmodel' is not a model litellm knows") and "Traceback" not in err
