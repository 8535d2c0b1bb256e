"""Shared fixtures for the LM tests: a tiny OpenAI-compatible server on 127.0.0.1."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class FakeOpenAI:
    """Serves /v1/chat/completions and /v1/completions.

    `script` is a queue of (status, body-dict, headers, delay_s) answers; when empty it
    answers 200 with `default_text`. Every request is recorded (path, headers, json).
    """

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, Any], dict[str, str], float]] = []
        self.requests: list[dict[str, Any]] = []
        self.default_text = "Answer: B"
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def ok_body(self, path: str, text: str) -> dict[str, Any]:
        usage = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
        if path.endswith("/chat/completions"):
            return {"id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()),
                    "model": "fake-model", "usage": usage,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}]}
        return {"id": "cmpl-1", "object": "text_completion", "created": int(time.time()),
                "model": "fake-model", "usage": usage,
                "choices": [{"index": 0, "finish_reason": "stop", "text": text, "logprobs": None}]}

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(n) or b"{}")
                with fake.lock:
                    fake.requests.append({"path": self.path, "headers": dict(self.headers), "json": body})
                    step = fake.script.pop(0) if fake.script else None
                if step is None:
                    status, payload, headers, delay = 200, fake.ok_body(self.path, fake.default_text), {}, 0.0
                else:
                    status, payload, headers, delay = step
                    if status == 200 and not payload:
                        payload = fake.ok_body(self.path, fake.default_text)
                if delay:
                    time.sleep(delay)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return H


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    fake.server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    fake.server.daemon_threads = True
    t = threading.Thread(target=fake.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
