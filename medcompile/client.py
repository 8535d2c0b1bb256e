"""A small client for `medcompile serve`, so callers need not hand-roll HTTP and errors.

Every failure, from the server (4xx/5xx with its JSON error) or from the network,
is a `ClientError` carrying the server's own message and code.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx


class ClientError(RuntimeError):
    """A request failed. `status` is the HTTP status (None if the server was unreachable),
    `code` the server's error code, `retry_after` its Retry-After in seconds if any."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "error",
                 retry_after: float | None = None, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.details = details or []


class MedcompileClient:
    """`MedcompileClient("http://127.0.0.1:8000").predict("medprompt", "Q?", {"A": ..., "B": ...})`."""

    def __init__(self, base_url: str, timeout: float = 130.0, *, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    # ---- endpoints ---------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def programs(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/programs")["programs"]

    def program(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/programs/{name}")

    def predict(self, name: str, question: str, options: Mapping[str, str], context: str | None = None,
                rationales: bool = False, id: str | None = None) -> dict[str, Any]:
        """Answer one question: {'answer', 'confidence', 'votes', 'usage', 'latency_s', ...}."""
        body = _question(question, options, context, id)
        return self._call("POST", f"/v1/programs/{name}/predict", json=body, params=_flags(rationales))

    def batch(self, name: str, questions: Sequence[Mapping[str, Any]], rationales: bool = False) -> dict[str, Any]:
        """Answer many questions, each a dict {question, options, context?, id?}; per-question
        model failures come back as items with an 'error' instead of a 'result'."""
        body = {"questions": [_question(q["question"], q["options"], q.get("context"), q.get("id"))
                              for q in questions]}
        return self._call("POST", f"/v1/programs/{name}/batch", json=body, params=_flags(rationales))

    # ---- plumbing ----------------------------------------------------------------------
    def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.TimeoutException as exc:
            raise ClientError(f"{method} {self.base_url}{path}: no answer within the client timeout ({exc})",
                              code="client_timeout") from None
        except httpx.TransportError as exc:
            raise ClientError(f"{method} {self.base_url}{path}: cannot reach the server ({exc})",
                              code="unreachable") from None
        if r.is_success:
            return r.json()
        raise _error_from(r)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "MedcompileClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _question(question: str, options: Mapping[str, str], context: str | None, id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"question": question, "options": dict(options)}
    if context is not None:
        body["context"] = context
    if id is not None:
        body["id"] = id
    return body


def _flags(rationales: bool) -> dict[str, str]:
    return {"rationales": "true"} if rationales else {}


def _error_from(r: httpx.Response) -> ClientError:
    retry = r.headers.get("retry-after")
    try:
        err = r.json()["error"]
        message, code, details = str(err["message"]), str(err.get("code", "error")), err.get("details")
    except (ValueError, KeyError, TypeError):
        message, code, details = (r.text[:500] or r.reason_phrase), "http_error", None
    try:
        retry_after = float(retry) if retry is not None else None
    except ValueError:
        retry_after = None
    return ClientError(f"HTTP {r.status_code} {code}: {message}", status=r.status_code, code=code,
                       retry_after=retry_after, details=details)
