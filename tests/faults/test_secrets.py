"""An API key set in the environment never lands in a file, a log line or the terminal.

A litellm model (``openai/fake-model``) talks to a fake OpenAI server on 127.0.0.1 with
``OPENAI_API_KEY=sk-test-SECRET-...`` set. The server checks the key arrives, and now
and then answers with errors that echo it back (a 400 for some questions, a 500 that
is retried, a 429), as real providers do. A tiny program is compiled and evaluated,
once through the Python API with DEBUG logging on every logger, once through the real
`medcompile optimize` / `medcompile eval` processes with ``LITELLM_LOG=DEBUG``. The key
(and its random tail alone) must not appear in the compiled JSON, the report files, the
LM cache or study SQLite files (with their WAL/SHM), the eval outputs and checkpoint,
or anything logged or printed.
"""
from __future__ import annotations

import io
import json
import logging
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.jsonhttp import json_handler

from medcompile import Predict, Program, Retrieve
from medcompile.bank import Bank
from medcompile.compile import optimize
from medcompile.exemplar import Exemplar
from medcompile.lm.base import LMRequest, Message
from medcompile.lm.registry import make_lm
from tests.faults.faultkit import (COMPILE_KW, declared_program, dev_set, eval_set, oracle, oracle_reply, train_set,
                                   work, write_jsonl)

__all__ = ["work"]

TAIL = secrets.token_hex(16)
SECRET = f"sk-test-SECRET-{TAIL}"
POISON = ("Patient 105 ", "Patient 203 ")  # questions the server refuses with a 400 that echoes the key
# (a 400, not a 401: a rejected key is a configuration error that stops the whole run, see lm/errors.py)


class FakeOpenAI:
    """Answers chat completions like `faultkit.oracle`; checks and records the key."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.n = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def answer(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, dict[str, Any], dict]:
        with self.lock:
            self.n += 1
            n = self.n
            self.requests.append({"path": path, "auth": headers.get("authorization", ""), "body": body})
        if headers.get("authorization") != f"Bearer {SECRET}":
            return 401, {"error": {"message": "no key", "type": "invalid_request_error"}}, {}
        if not path.endswith("/chat/completions"):
            return 404, {"error": {"message": f"unknown path {path}"}}, {}
        msgs = tuple(Message(m["role"], m["content"]) for m in body.get("messages", []))
        last = msgs[-1].content if msgs else ""
        if any(p in last for p in POISON):
            return 400, {"error": {"message": f"Prompt rejected by policy for api_key={SECRET}.",
                                   "type": "invalid_request_error", "code": "prompt_rejected"}}, {}
        if n in (3, 11):
            return 500, {"error": {"message": f"upstream failed for Authorization: Bearer {SECRET}"}}, {}
        if n == 6:
            return 429, {"error": {"message": f"rate limited (key {SECRET})"}}, {"retry-after": "0.01"}
        req = LMRequest(model="fake-model", mode="chat", messages=msgs, temperature=body.get("temperature", 0.0),
                        seed=int(body.get("seed") or 0), max_tokens=int(body.get("max_tokens") or 16))
        text = oracle_reply(req)
        return 200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "fake-model",
                     "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": text}}]}, {}

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return json_handler(self.answer)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    f = FakeOpenAI()
    f.thread.start()
    try:
        yield f
    finally:
        f.server.shutdown()
        f.server.server_close()


@pytest.fixture
def keyed_env(monkeypatch: pytest.MonkeyPatch, fake: FakeOpenAI, tmp_path: Path) -> FakeOpenAI:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_API_BASE", fake.base_url)  # litellm's own variable; `eval` has no --api-base
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("MEDCOMPILE_CACHE_DIR", str(tmp_path / "default-cache"))  # never the user's cache
    return fake


def leaks_in_files(root: Path) -> list[str]:
    hits = []
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files
    for p in files:
        data = p.read_bytes()
        if SECRET.encode() in data or TAIL.encode() in data:
            hits.append(str(p.relative_to(root)))
    return hits


def assert_no_leak_in_text(name: str, text: str) -> None:
    assert SECRET not in text and TAIL not in text, f"the API key leaked into {name}"


class DebugLogs:
    """Every logger at DEBUG into one buffer, litellm's debug logging on; restored after."""

    NAMES = ("", "LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm", "httpx", "httpcore", "openai", "urllib3",
             "medcompile", "optuna", "sqlalchemy")

    def __enter__(self) -> "DebugLogs":
        self.buf = io.StringIO()
        self.handler = logging.StreamHandler(self.buf)
        self.handler.setLevel(logging.DEBUG)
        self.handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.saved = []
        for name in self.NAMES:
            lg = logging.getLogger(name)
            self.saved.append((lg, lg.level, lg.disabled))
            lg.setLevel(logging.DEBUG)
            lg.disabled = False
            lg.addHandler(self.handler)
        self.quiet = logging.getLogger("matplotlib")  # font-matching chatter, nothing to do with keys
        self.saved.append((self.quiet, self.quiet.level, self.quiet.disabled))
        self.quiet.setLevel(logging.WARNING)
        from medcompile.lm.litellm_lm import _lazy_litellm

        # What LITELLM_LOG=DEBUG does. (Not the deprecated `litellm.set_verbose = True` print mode:
        # litellm 1.110 prints some provider error bodies raw there; see docs/trust-model.md.)
        _lazy_litellm().turn_on_debug()
        return self

    def __exit__(self, *exc: Any) -> None:
        for lg, level, disabled in self.saved:
            lg.setLevel(level)
            lg.disabled = disabled
            lg.removeHandler(self.handler)
        for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
            logging.getLogger(name).setLevel(logging.WARNING)

    @property
    def text(self) -> str:
        return self.buf.getvalue()


def test_key_never_written_or_logged_in_process(keyed_env: FakeOpenAI, work: Path,
                                                capfd: pytest.CaptureFixture[str]) -> None:
    plot_eval = pytest.importorskip("medcompile.evaluate.plots").plot_eval
    evaluate = pytest.importorskip("medcompile.evaluate.runner").evaluate

    out = work / "out.json"
    with DebugLogs() as logs:
        lm = make_lm("openai/fake-model", api_base=keyed_env.base_url, cache_dir=work / "cache", max_retries=3,
                     base_delay=0.001, max_delay=0.01)
        prog = optimize(declared_program(), train_set(), dev_set(), lm=lm, out=out, **{**COMPILE_KW, "quiet": False})
        lm2 = make_lm("openai/fake-model", cache_dir=work / "cache", max_retries=3, base_delay=0.001,
                      max_delay=0.01)  # the endpoint from OPENAI_API_BASE, as `medcompile eval` does
        res = evaluate(prog, eval_set(), lm2, quiet=False, checkpoint=work / "eval" / "ckpt.jsonl")
        (work / "eval" / "e.eval.json").write_text(json.dumps(res.to_dict()), encoding="utf-8")
        (work / "eval" / "e.eval.md").write_text(res.to_markdown(), encoding="utf-8")
        plot_eval(res, work / "eval" / "e.eval.png")
        print(res.summary())
        logging.getLogger("medcompile.test").debug("lm settings %s", prog.lm_settings)
    captured = capfd.readouterr()
    # the key was really in use, and really echoed back by the server
    assert keyed_env.requests and all(r["auth"] == f"Bearer {SECRET}" for r in keyed_env.requests)
    refused = [r for r in res.records if "Prompt rejected by policy" in (r.abstain_reason or "")]
    assert [r.id for r in refused] == ["q203"] and "***" in (refused[0].abstain_reason or "")
    assert len(logs.text.splitlines()) > 20, "DEBUG logging was not on"
    # ... and it is nowhere
    assert leaks_in_files(work) == []
    for name, text in (("logs", logs.text), ("stdout", captured.out), ("stderr", captured.err)):
        assert_no_leak_in_text(name, text)
    expected = {"out.json", "out.report.json", "out.report.md", "out.trials.png", "out.json.study.sqlite",
                "lm-cache.sqlite", "ckpt.jsonl", "e.eval.json", "e.eval.md", "e.eval.png"}
    assert expected <= {p.name for p in work.rglob("*")}
    assert json.loads(out.read_text(encoding="utf-8"))["lm"]["backend"]["api_key_env"] is None


def test_key_never_written_or_logged_by_the_cli(keyed_env: FakeOpenAI, work: Path) -> None:
    pytest.importorskip("medcompile.cli.commands.eval")
    write_jsonl(work / "train.jsonl", train_set())
    write_jsonl(work / "dev.jsonl", dev_set())
    write_jsonl(work / "eval.jsonl", eval_set())
    declared_program().save(str(work / "declared.json"))
    env = {**os.environ, "MEDCOMPILE_CACHE_DIR": str(work / "cache"), "LITELLM_LOG": "DEBUG"}
    boot = ("import json, logging, sys; logging.basicConfig(level=logging.DEBUG, stream=sys.stderr); "
            "from medcompile.cli.main import main; "
            "sys.exit(max(main(argv) for argv in json.loads(sys.argv[1])))")  # both commands, one start-up
    steps = [["optimize", "declared.json", "--train", "train.jsonl", "--dev", "dev.jsonl", "--lm", "openai/fake-model",
              "--api-base", keyed_env.base_url, "--budget", "150", "--trials", "3", "--minibatch", "4",
              "--out", "out.json"],
             ["eval", "out.json", "--data", "eval.jsonl", "--out", "evalout"]]
    keyed_env.n = 100  # no scripted 500/429 here: the CLI's retry delays are the real (slow) ones
    proc = subprocess.run([sys.executable, "-c", boot, json.dumps(steps)], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_no_leak_in_text("stdout", proc.stdout)
    assert_no_leak_in_text("stderr", proc.stderr)
    # DEBUG logging really on (litellm's and httpx's: openai/ with --api-base goes through the direct client)
    assert proc.stderr.count("DEBUG:") > 20, "DEBUG logging was not on"
    assert "compiled faults" in proc.stdout and "accuracy" in proc.stdout
    assert all(r["auth"] == f"Bearer {SECRET}" for r in keyed_env.requests)
    records = json.loads((work / "evalout" / "out.eval.json").read_text(encoding="utf-8"))["records"]
    assert any("***" in (r.get("abstain_reason") or "") for r in records)  # the echoed key, scrubbed
    assert leaks_in_files(work) == []


def test_program_lm_section_cannot_redirect_the_model_endpoint(keyed_env: FakeOpenAI) -> None:
    """The lm section of a program file names a model; where its requests (and the key)
    go is the user's choice (environment, --api-base), never the file's."""
    prog = Program(Predict(tune=False), name="p", lm={"model": "openai/fake-model", "mode": "chat",
                                                      "spec": "openai/fake-model",
                                                      "backend": {"api_base": "http://attacker.invalid/v1",
                                                                  "api_key_env": "OPENAI_API_KEY"},
                                                      "api_base": "http://attacker.invalid/v1"})
    from medcompile.lm.registry import layers
    from medcompile.program.io import loads

    loaded = loads(prog.to_json())
    lm = loaded.resolve_lm(None)
    backend = layers(lm)[-1]
    assert backend.api_base is None and backend.api_key_env is None
    r = loaded.run(eval_set()[0], lm)  # goes to OPENAI_API_BASE, the fake server
    assert r.error is None and r.usage.calls == 1 and len(keyed_env.requests) == 1


def test_program_embedder_settings_cannot_send_the_key_elsewhere(keyed_env: FakeOpenAI, work: Path) -> None:
    attacker = FakeOpenAI()  # another host the file names
    attacker.thread.start()
    try:
        bank = Bank([Exemplar(q) for q in train_set()[:3]],
                    {"kind": "litellm", "model": "openai/text-embedding-3-small", "api_base": attacker.base_url,
                     "api_key_env": "OPENAI_API_KEY", "dim": 4},
                    np.ones((3, 4), dtype=np.float32) / 2)
        prog = Program(Predict(demos=Retrieve(k=1, strategy="knn", bank=bank, tune=False), tune=False), name="p")
        from medcompile.embed.registry import clear_embedder_cache
        from medcompile.program.io import loads

        loaded = loads(prog.to_json())
        clear_embedder_cache()
        try:
            loaded.run(eval_set()[0], oracle())
        except Exception:  # noqa: BLE001 - the fake attacker returns no embeddings; the key is what matters
            pass
        assert not any(SECRET in r["auth"] for r in attacker.requests), "the key went to a host the file named"
    finally:
        attacker.server.shutdown()
        attacker.server.server_close()


def test_program_file_naming_an_embedder_host_is_refused() -> None:
    import json as _json

    from medcompile.program.io import ProgramFileError, loads

    bank = Bank([Exemplar(q) for q in train_set()[:2]], {"kind": "litellm", "model": "openai/x", "dim": 4},
                np.ones((2, 4), dtype=np.float32) / 2)
    demos = Retrieve(k=1, bank=bank, bank_name="bank", tune=False)
    d = _json.loads(Program(Predict(demos=demos, tune=False), name="p").to_json())
    d["banks"]["bank"]["embedder"]["api_base"] = "http://evil.example"
    with pytest.raises(ProgramFileError, match="connection settings"):
        loads(_json.dumps(d))
