"""One JSON error shape for every failure: `{"error": {"code": ..., "message": ...}}`.

Callers are other services: they branch on `code` and log `message`, so both must be
stable and readable, and nothing secret (API keys echoed back by a provider, local
paths of keys) may ride along in a model's error text.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("medcompile.serve")


class ApiError(Exception):
    """An error with an HTTP status, a stable machine-readable code and a human message."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                 details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if details:
        err["details"] = details
    return {"error": err}


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(error_body(exc.code, exc.message, exc.details), status_code=exc.status,
                        headers=exc.headers)


# ---- secret redaction ---------------------------------------------------------------
_SECRET_PATTERNS = (
    re.compile(r"\b(sk|pk|rk|gsk|xai|hf|ghp|gho|AKIA)[-_][A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{8,}"),
    re.compile(r"(?i)((?:api[_-]?key|token|secret|password|authorization)\s*[=:]\s*['\"]?)[^\s'\",;]{4,}"),
)
_SECRET_ENV = re.compile(r"(?i)(KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL)")


def redact(text: str) -> str:
    """Remove anything that looks like a credential from a message sent to a client."""
    for name, value in os.environ.items():
        if len(value) >= 8 and _SECRET_ENV.search(name) and value in text:
            text = text.replace(value, "[redacted]")
    text = _SECRET_PATTERNS[0].sub("[redacted]", text)
    for pat in _SECRET_PATTERNS[1:]:
        text = pat.sub(lambda m: m.group(1) + "[redacted]", text)
    return text


# ---- mapping framework errors into the envelope ---------------------------------------
_STATUS_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large",
                 415: "unsupported_media_type", 422: "invalid_request", 429: "too_many_requests",
                 500: "internal_error", 502: "model_error", 503: "unavailable", 504: "timeout"}


def _loc(parts: tuple[Any, ...] | list[Any]) -> str:
    """'body.questions.3.options' -> 'questions[3].options' (the client's own field path)."""
    out = ""
    for p in parts:
        if p == "body" and not out:
            continue
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "(body)"


def validation_error(exc: RequestValidationError) -> ApiError:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        ctx = next(e for e in errors if e.get("type") == "json_invalid").get("ctx", {})
        return ApiError(400, "invalid_json", f"request body is not valid JSON: {ctx.get('error', 'parse error')}")
    details, parts = [], []
    for e in errors[:20]:
        where = _loc(e.get("loc", ()))
        msg = str(e.get("msg", "invalid"))
        if e.get("type") == "missing":
            msg = "field required"
        elif e.get("type") == "extra_forbidden":
            msg = "unknown field (check the spelling; see /openapi.json)"
        details.append({"field": where, "problem": msg})
        parts.append(f"{where}: {msg}")
    more = f" (and {len(errors) - 20} more)" if len(errors) > 20 else ""
    return ApiError(422, "invalid_request", "invalid request: " + "; ".join(parts) + more, details=details)


def install_handlers(app: FastAPI) -> None:
    """Route every error, including FastAPI's own 404/405/422, through the envelope."""

    @app.exception_handler(ApiError)
    async def _api_error(_req: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = str(exc.detail) if exc.detail else code.replace("_", " ")
        if exc.status_code == 404 and message == "Not Found":
            message = "no such endpoint; see /docs for the API"
        return JSONResponse(error_body(code, message), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error while serving a request")
        return JSONResponse(error_body("internal_error", "internal server error (logged on the server)"),
                            status_code=500)
