"""The command line in-process (`main(argv)`), a fake OpenAI-compatible server, tiny data files."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from medcompile import Predict, Program
from tests.jsonhttp import json_handler, serving

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GENERIC_CSV = FIXTURES / "data_generic_fieldmap.csv"
BAD_ROWS = FIXTURES / "data_bad_rows_medqa.jsonl"
MEDQA_HEAD = FIXTURES / "data_medqa_us4_head10.jsonl"
CSV_FIELDS = "question=stem,options=A|B|C|D|E,answer=label,id=qid"


@dataclass
class CliRun:
    rc: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run `medcompile ARGV...` in this process; argparse exits become return codes."""
    from medcompile.cli.main import main

    monkeypatch.setenv("MEDCOMPILE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)

    def run(*argv: str) -> CliRun:
        capsys.readouterr()
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse errors, --help, fail()
            rc = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliRun(rc, captured.out, captured.err)

    return run


@pytest.fixture
def program_file(tmp_path: Path) -> Path:
    """A zero-shot program 'compiled' for the offline simulated model."""
    path = tmp_path / "zs.json"
    Program(Predict(tune=False), name="zs", lm={"model": "sim", "mode": "text", "spec": "sim"}).save(str(path))
    return path


@pytest.fixture
def questions_file(tmp_path: Path) -> Path:
    """Three unlabelled questions in the canonical question JSONL."""
    path = tmp_path / "q.jsonl"
    rows = []
    for line in MEDQA_HEAD.read_text(encoding="utf-8").splitlines()[:3]:
        d = json.loads(line)
        rows.append(json.dumps({"id": f"m{d['realidx']}", "question": d["question"], "options": d["options"]}))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


class FakeOpenAI:
    """/v1/chat/completions and /v1/completions on 127.0.0.1; `status` forces an error reply."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.fail_after = 0  # requests answered 200 before `status` applies
        self.text = "Answer: B"
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), json_handler(self.respond))
        self.server.daemon_threads = True

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def respond(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple:
        with self.lock:
            self.requests.append({"path": path, "headers": headers, "json": body})
            n = len(self.requests)
        if self.status != 200 and n > self.fail_after:
            return self.status, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}, {}
        usage = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
        if path.endswith("/chat/completions"):
            choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": self.text}}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "finish_reason": "stop", "text": self.text, "logprobs": None}
            obj = "text_completion"
        return 200, {"id": "x-1", "object": obj, "created": int(time.time()), "model": body.get("model", "m"),
                     "usage": usage, "choices": [choice]}, {}


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    with serving(fake.server):
        yield fake
