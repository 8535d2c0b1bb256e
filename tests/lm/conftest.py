"""Shared fixtures for the LM tests: a tiny OpenAI-compatible server on 127.0.0.1."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.jsonhttp import json_handler, serving


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

    def respond(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple:
        with self.lock:
            self.requests.append({"path": path, "headers": headers, "json": body})
            step = self.script.pop(0) if self.script else None
        if step is None:
            return 200, self.ok_body(path, self.default_text), {}
        status, payload, extra, delay = step
        if status == 200 and not payload:
            payload = self.ok_body(path, self.default_text)
        if delay:
            time.sleep(delay)
        return status, payload, extra

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return json_handler(self.respond)


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    fake.server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    fake.server.daemon_threads = True
    with serving(fake.server):
        yield fake
