"""Fake models for unit tests: answers come from a Python function, instantly and for free."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from medcompile.lm.base import LMRequest, LMResponse, Mode


def request_text(request: LMRequest) -> str:
    """The text a model would read: the prompt, or the chat messages joined."""
    if request.mode == "text" or not request.messages:
        return request.prompt or ""
    return "\n".join(f"{m.role}: {m.content}" for m in request.messages)


class ScriptedLM:
    """An LM whose reply is `fn(request)` (a str, or a full LMResponse).

    Token counts are whitespace word counts, so tests can check accounting exactly.
    `latency` sleeps per call, to exercise concurrency and latency metering.
    """

    def __init__(self, fn: Callable[[LMRequest], str | LMResponse], model: str = "scripted",
                 mode: Mode = "text", latency: float = 0.0) -> None:
        self.fn = fn
        self.model = model
        self.mode: Mode = mode
        self.latency = latency
        self.requests: list[LMRequest] = []
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        return len(self.requests)

    def complete(self, request: LMRequest) -> LMResponse:
        with self._lock:
            self.requests.append(request)
        t0 = time.perf_counter()
        if self.latency:
            time.sleep(self.latency)
        out = self.fn(request)
        if isinstance(out, LMResponse):
            return out
        return LMResponse(text=out, prompt_tokens=len(request_text(request).split()),
                          completion_tokens=len(out.split()),
                          latency_s=time.perf_counter() - t0)

    def settings(self) -> dict:
        return {"backend": "scripted", "model": self.model, "mode": self.mode}


class EchoLM(ScriptedLM):
    """Replies with what it was given: handy to see exactly what a program sent."""

    def __init__(self, model: str = "echo", mode: Mode = "text", latency: float = 0.0) -> None:
        super().__init__(request_text, model=model, mode=mode, latency=latency)


class ConstantLM(ScriptedLM):
    """Always replies `text`."""

    def __init__(self, text: str, model: str = "constant", mode: Mode = "text",
                 latency: float = 0.0) -> None:
        super().__init__(lambda _r: text, model=model, mode=mode, latency=latency)
        self.text = text
