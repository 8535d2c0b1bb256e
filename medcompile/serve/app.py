"""The HTTP API: compiled programs as a service other services can call.

FastAPI gives typed request validation and an OpenAPI document for free; programs
are blocking, so each run goes to a bounded thread pool (see `limits.py`). Every
failure maps to one status and one JSON error shape:

  400 invalid_json · 404 program_not_found · 413 body_too_large · 415 unsupported_media_type
  422 invalid_request / invalid_question · 502 model_error / model_config_error
  503 overloaded / model_unavailable
  504 timeout · 500 internal_error
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator

from fastapi import Depends, FastAPI, Query, Response

from .. import __version__
from ..lm.base import LMConfigError, LMError, LMUnavailable
from ..program.program import Program, Result
from ..question import Question
from .errors import ApiError, install_handlers, redact
from .body import BodyLimitMiddleware
from .limits import Overloaded, WorkLimiter, gather_or_cancel
from .questions import to_question
from .registry import LMSource, ServedProgram, build_registry
from .schemas import (BatchIn, BatchItemOut, BatchOut, ErrorDetail, ErrorOut, HealthOut, LimitsOut, PredictionOut,
                      PredictOut, ProgramOut, ProgramsOut, QuestionIn, UsageOut)

log = logging.getLogger("medcompile.serve")

_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorOut, "description": d} for s, d in {
        404: "no program by that name", 413: "request body too large", 422: "request does not fit the program",
        502: "the model failed", 503: "server busy (see Retry-After) or model backend unavailable",
        504: "the program did not finish in time"}.items()}


@dataclass(frozen=True)
class ServeState:
    """What every route needs: the programs, the work limiter and the request limits."""

    registry: dict[str, ServedProgram]
    limiter: WorkLimiter
    limits: LimitsOut

    def lookup(self, name: str) -> ServedProgram:
        if name not in self.registry:
            raise ApiError(404, "program_not_found", f"no program named {name!r}; this server has "
                                                     f"{sorted(self.registry)} (GET /v1/programs)")
        return self.registry[name]


def create_app(programs: Mapping[str, Program], lms: LMSource = None, *, max_concurrency: int = 4,
               timeout_s: float = 120.0, queue_timeout_s: float = 30.0, max_body_bytes: int = 1_000_000,
               max_options: int = 26, max_batch: int = 64, shutdown_grace_s: float | None = None) -> FastAPI:
    """An app serving `programs` (by name). `lms`: one LM for all, a dict by program name, a
    factory `f(program) -> LM`, or None for the model each program was compiled for.

    `timeout_s` bounds a whole request (queueing included: 504 past it); a request that
    waits `queue_timeout_s` for a model slot gets 503 with Retry-After instead.
    """
    if timeout_s <= 0 or max_body_bytes < 1 or max_options < 2 or max_batch < 1:
        raise ValueError("timeout_s, max_body_bytes, max_options (>= 2) and max_batch must be positive")
    limiter = WorkLimiter(max_concurrency, min(queue_timeout_s, timeout_s))
    st = ServeState(build_registry(programs, lms), limiter,
                    LimitsOut(max_concurrency=max_concurrency, timeout_s=timeout_s,
                              queue_timeout_s=limiter.queue_timeout_s, max_body_bytes=max_body_bytes,
                              max_options=max_options, max_batch=max_batch))
    app = FastAPI(title="medcompile serve", version=__version__,
                  lifespan=_lifespan(limiter, timeout_s if shutdown_grace_s is None else shutdown_grace_s),
                  description="Answer medical multiple-choice questions with compiled medcompile programs.")
    app.state.registry, app.state.limiter, app.state.limits = st.registry, st.limiter, st.limits
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    install_handlers(app)
    _add_info_routes(app, st)
    _add_predict_routes(app, st)
    return app


def _lifespan(limiter: WorkLimiter, grace_s: float) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        # uvicorn has already let in-flight requests finish; now drain the pool itself.
        if not await asyncio.to_thread(limiter.shutdown, grace_s):
            log.warning("shutdown: %d program run(s) still stuck after %.0f s", limiter.busy(), grace_s)

    return lifespan


def _add_info_routes(app: FastAPI, st: ServeState) -> None:
    @app.get("/health", response_model=HealthOut, tags=["service"])
    async def health() -> HealthOut:
        """Liveness and load: is the server up, how busy is it."""
        lim = st.limiter
        return HealthOut(status="ok", programs=len(st.registry), running=lim.running, waiting=lim.waiting,
                         completed=lim.completed, limits=st.limits, version=__version__)

    @app.get("/v1/programs", response_model=ProgramsOut, tags=["programs"])
    async def list_programs() -> ProgramsOut:
        """The programs served, with their signature, cost and compile-time dev score."""
        return ProgramsOut(programs=[s.info for s in st.registry.values()])

    @app.get("/v1/programs/{name}", response_model=ProgramOut, responses={404: _ERRORS[404]}, tags=["programs"])
    async def get_program(name: str) -> ProgramOut:
        return st.lookup(name).info


def _add_predict_routes(app: FastAPI, st: ServeState) -> None:
    def served_program(name: str) -> ServedProgram:
        """A dependency, so an unknown program is a 404 before the body is validated."""
        return st.lookup(name)

    rationales_q = Query(False, description="include the model's reasoning")

    @app.post("/v1/programs/{name}/predict", response_model=PredictOut, response_model_exclude_unset=True,
              responses=_ERRORS, tags=["predict"])
    async def predict(name: str, body: QuestionIn, response: Response, rationales: bool = rationales_q,
                      served: ServedProgram = Depends(served_program)) -> PredictOut:
        """Answer one question."""
        out = await predict_one(st, served, body, rationales)
        response.headers["X-Program-Sha256"] = served.info.sha256
        return out

    @app.post("/v1/programs/{name}/batch", response_model=BatchOut, response_model_exclude_unset=True,
              responses=_ERRORS, tags=["predict"])
    async def batch(name: str, body: BatchIn, response: Response, rationales: bool = rationales_q,
                    served: ServedProgram = Depends(served_program)) -> BatchOut:
        """Answer up to max_batch questions; a question the model failed on gets an `error`
        instead of a `result` (200), unless every question failed (502/503)."""
        out = await predict_batch(st, served, body, rationales)
        response.headers["X-Program-Sha256"] = served.info.sha256
        return out


async def predict_one(st: ServeState, served: ServedProgram, body: QuestionIn, rationales: bool) -> PredictOut:
    t0 = time.monotonic()
    lim, timeout_s = st.limiter, st.limits.timeout_s
    q = to_question(body, served, max_options=st.limits.max_options)
    try:
        await lim.acquire(lim.queue_timeout_s)
    except Overloaded as exc:
        raise _overloaded(exc) from None
    queue_s = time.monotonic() - t0
    try:
        result = await lim.run_acquired(served.program.run, q, served.lm, run_timeout=timeout_s - queue_s)
    except asyncio.TimeoutError:
        raise _timeout(timeout_s) from None
    except LMError as exc:
        raise model_error(exc) from None
    failure = result_failure(result)
    if failure is not None:
        raise failure
    return PredictOut(program=served.name, queue_s=round(queue_s, 4),
                      **prediction(result, rationales).model_dump(exclude_unset=True))


async def predict_batch(st: ServeState, served: ServedProgram, body: BatchIn, rationales: bool) -> BatchOut:
    t0 = time.monotonic()
    lim, timeout_s = st.limiter, st.limits.timeout_s
    qs = _batch_questions(body, served, st.limits.max_options, st.limits.max_batch)

    async def one(i: int, q: Question) -> BatchItemOut:
        # Admission: the first question must get a slot within the queue bound (else 503);
        # the others queue behind it (FIFO), within the request deadline.
        await lim.acquire(lim.queue_timeout_s if i == 0 else None)
        remaining = timeout_s - (time.monotonic() - t0)
        try:
            result = await lim.run_acquired(served.program.run, q, served.lm, run_timeout=remaining)
        except LMError as exc:
            return _item_error(q, model_error(exc))
        failure = result_failure(result)
        if failure is not None:
            return _item_error(q, failure)
        return BatchItemOut(id=q.id, result=prediction(result, rationales))

    try:
        items = await asyncio.wait_for(gather_or_cancel([one(i, q) for i, q in enumerate(qs)]),
                                       timeout_s - (time.monotonic() - t0))
    except asyncio.TimeoutError:
        raise _timeout(timeout_s, batch=len(qs)) from None
    except Overloaded as exc:
        raise _overloaded(exc) from None
    failed = [it for it in items if it.error is not None]
    if failed and len(failed) == len(items):
        first = failed[0].error
        assert first is not None
        raise ApiError(503 if first.code == "model_unavailable" else 502, first.code,
                       f"every question in the batch failed; first: {first.message}")
    return BatchOut(program=served.name, results=items, succeeded=len(items) - len(failed), failed=len(failed),
                    latency_s=round(time.monotonic() - t0, 4))


# ---- helpers -------------------------------------------------------------------------------
def prediction(result: Result, rationales: bool) -> PredictionOut:
    """The response fields; optional ones are left unset (so absent), not null."""
    p, u = result.prediction, result.usage
    extra: dict[str, Any] = {}
    if p.answer is None:
        extra["abstain_reason"] = p.reason
    if rationales:
        extra["rationale"] = p.rationale
    if p.option_probs:
        extra["option_probs"] = {k: round(v, 6) for k, v in p.option_probs.items()}
    return PredictionOut(
        id=result.question.id, answer=p.answer, confidence=round(p.confidence, 6), votes=dict(p.votes),
        usage=UsageOut(calls=u.calls, cached_calls=u.cached_calls, failures=u.failures, prompt_tokens=u.prompt_tokens,
                       completion_tokens=u.completion_tokens, cost=round(u.cost, 8)),
        latency_s=round(result.latency_s, 4), **extra)


def result_failure(result: Result) -> ApiError | None:
    """An abstention caused by failed model calls is a model failure (502), not an answer;
    a program that answered despite some failed calls (a vote) still answered."""
    if result.prediction.answer is not None:
        return None
    if result.error or result.usage.failures:
        reason = result.error or result.prediction.reason or "model call failed"
        return ApiError(502, "model_error", f"the model failed: {redact(reason)}")
    return None


def model_error(exc: LMError) -> ApiError:
    if isinstance(exc, LMConfigError):  # retrying will not help: the operator must fix the model settings
        return ApiError(502, "model_config_error", f"the server's model is misconfigured: {redact(str(exc))}")
    if isinstance(exc, LMUnavailable):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))} if exc.retry_after else {}
        return ApiError(503, "model_unavailable", f"model backend unavailable: {redact(str(exc))}", headers=headers)
    return ApiError(502, "model_error", f"the model failed: {redact(str(exc))}")


def _overloaded(exc: Overloaded) -> ApiError:
    return ApiError(503, "overloaded", f"{exc}; retry later", headers={"Retry-After": str(exc.retry_after_s)})


def _timeout(timeout_s: float, batch: int | None = None) -> ApiError:
    what = f"the batch of {batch} questions" if batch else "the program"
    return ApiError(504, "timeout", f"{what} did not finish within the {timeout_s:g} s request timeout "
                                    "(the model backend is slow or stuck)")


def _item_error(q: Question, err: ApiError) -> BatchItemOut:
    return BatchItemOut(id=q.id, error=ErrorDetail(code=err.code, message=err.message))


def _batch_questions(body: BatchIn, served: ServedProgram, max_options: int, max_batch: int) -> list[Question]:
    n = len(body.questions)
    if n == 0:
        raise ApiError(422, "invalid_request", "questions: the batch is empty")
    if n > max_batch:
        raise ApiError(422, "batch_too_large", f"questions: at most {max_batch} questions per batch, got {n}; "
                                               "split the batch")
    out, details, messages = [], [], []
    for i, item in enumerate(body.questions):
        try:
            out.append(to_question(item, served, max_options=max_options, where=f"questions[{i}]."))
        except ApiError as exc:
            details.extend(exc.details or [])
            messages.append(exc.message.removeprefix("invalid question: "))
    if messages:
        more = f" (and {len(messages) - 5} more questions)" if len(messages) > 5 else ""
        raise ApiError(422, "invalid_question", "invalid questions: " + "; ".join(messages[:5]) + more,
                       details=details[:50])
    return out
