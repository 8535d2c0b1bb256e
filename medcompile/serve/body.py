"""Request body limits, enforced before any parsing.

A JSON parser given a 2 GB body (or an endless chunked upload) would exhaust memory
before validation could refuse it, so size is checked here, on the raw ASGI stream.
"""
from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_body


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes` (413) by Content-Length *and* by bytes actually sent
    (chunked uploads have no Content-Length), and non-JSON bodies (415), before any
    parsing. The body is buffered (at most `max_bytes`) and replayed to the app."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope["headers"]}
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                await _reply(send, 400, "bad_request", "Content-Length header is not a number")
                return
            if n > self.max_bytes:
                await _reply(send, 413, "body_too_large",
                             f"request body is {n} bytes, over the {self.max_bytes} byte limit")
                return
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if ctype and ctype != b"application/json" and not ctype.endswith(b"+json"):
            await _reply(send, 415, "unsupported_media_type",
                         f"send JSON with 'Content-Type: application/json' (got {ctype.decode('latin-1')!r})")
            return
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body = msg.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await _reply(send, 413, "body_too_large",
                             f"request body is over the {self.max_bytes} byte limit")
                return
            chunks.append(body)
            if not msg.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _reply(send: Send, status: int, code: str, message: str) -> None:
    data = json.dumps(error_body(code, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": data})
