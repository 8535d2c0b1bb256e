"""The HTTP API in-process, on scripted models: every bad input gets the right 4xx with a
clear message, model failures and slowness map to 502/503/504 without hanging, and the
concurrency limit holds."""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from medcompile import Predict, Program, Vote
from medcompile.lm.base import LMError, LMRequest, LMUnavailable
from medcompile.lm.scripted import ScriptedLM
from medcompile.serve import create_app
from medcompile.signatures import MCQ_WITH_CONTEXT

Q = {"question": "Which vitamin deficiency causes scurvy?",
     "options": {"A": "Vitamin A", "B": "Vitamin C", "C": "Vitamin D", "D": "Vitamin K"}}
COMPILE_INFO = {"compiler": "medcompile 0.1.0", "study": "postgresql://user:hunter2@db/x",
                "dev": {"metric": "accuracy", "score": 0.5, "n": 40, "ci95": [0.35, 0.65]},
                "data": {"train": {"n": 100, "sha256": "ab"}}, "calls_per_question": 1.0}


def zero_shot(name: str = "zs", **kw: Any) -> Program:
    return Program(Predict(tune=False), name=name, **kw)


def app_with(reply: Callable[[LMRequest], str] = lambda r: "B", *, latency: float = 0.0,
             programs: dict[str, Program] | None = None, **kw: Any) -> tuple[Any, ScriptedLM]:
    lm = ScriptedLM(reply, latency=latency)
    progs = programs or {"zs": zero_shot(compile_info=COMPILE_INFO,
                                         lm={"model": "local/gemma3-270m-q4_k_m", "mode": "text", "spec": "local"}),
                         "ctx": Program(Predict(MCQ_WITH_CONTEXT, tune=False), name="ctx")}
    return create_app(progs, lm, **kw), lm


@pytest.fixture
def client() -> Iterator[TestClient]:
    app, _ = app_with()
    with TestClient(app) as c:
        yield c


def err(r: httpx.Response, status: int, code: str, *fragments: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    msg = body["error"]["message"]
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


# ---- the happy path and the service endpoints --------------------------------------------
def test_predict_answers_with_confidence_votes_usage_latency(client: TestClient) -> None:
    r = client.post("/v1/programs/zs/predict", json={"id": "q1", **Q})
    assert r.status_code == 200, r.text
    d = r.json()
    assert (d["id"], d["program"], d["answer"], d["confidence"], d["votes"]) == ("q1", "zs", "B", 1.0, {"B": 1})
    assert d["usage"]["calls"] == 1 and d["usage"]["failures"] == 0 and d["latency_s"] >= 0
    assert "rationale" not in d
    assert r.headers["x-program-sha256"] == client.get("/v1/programs/zs").json()["sha256"]


def test_default_id_is_stable_content_hash(client: TestClient) -> None:
    a = client.post("/v1/programs/zs/predict", json=Q).json()["id"]
    b = client.post("/v1/programs/zs/predict", json=Q).json()["id"]
    assert a == b and a.startswith("q-")


def test_rationale_only_on_request() -> None:
    cot = Program(Predict(cot=True, tune=False), name="cot")
    app, _ = app_with(lambda r: "Vitamin C prevents scurvy.\nAnswer: B", programs={"cot": cot})
    with TestClient(app) as c:
        plain = c.post("/v1/programs/cot/predict", json=Q).json()
        withr = c.post("/v1/programs/cot/predict?rationales=true", json=Q).json()
    assert plain["answer"] == withr["answer"] == "B"
    assert "rationale" not in plain and "scurvy" in withr["rationale"]


def test_abstention_is_200_with_reason(client: TestClient) -> None:
    app, _ = app_with(lambda r: "I cannot say")
    with TestClient(app) as c:
        d = c.post("/v1/programs/zs/predict", json=Q).json()
    assert d["answer"] is None and d["abstain_reason"] and d["confidence"] == 0.0


def test_programs_listing_and_details_hide_secrets(client: TestClient) -> None:
    progs = client.get("/v1/programs").json()["programs"]
    zs = next(p for p in progs if p["name"] == "zs")
    assert zs["schema_version"] == 2 and len(zs["sha256"]) == 64
    assert zs["signature"] == "question, options -> answer" and zs["calls_per_question"] == 1.0
    assert zs["compile"]["dev"] == {"metric": "accuracy", "score": 0.5, "n": 40, "ci95": [0.35, 0.65]}
    assert zs["compiled_for"]["model"] == "local/gemma3-270m-q4_k_m" and zs["lm"]["model"] == "scripted"
    assert client.get("/v1/programs/ctx").json()["requires_context"] is True
    assert "hunter2" not in client.get("/v1/programs").text  # compile metadata is whitelisted


def test_health_openapi_docs(client: TestClient) -> None:
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["programs"] == 2 and h["limits"]["max_options"] == 26
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/programs/{name}/predict", "/v1/programs/{name}/batch", "/v1/programs", "/v1/programs/{name}",
            "/health"} <= set(paths)
    assert client.get("/docs").status_code == 200


# ---- bad input: every case is a 4xx naming the problem ------------------------------------------
@pytest.mark.parametrize("body, fragments", [
    ({"options": Q["options"]}, ["question: field required"]),
    ({"question": "Q?"}, ["options: field required"]),
    ({**Q, "question": 42}, ["question: Input should be a valid string"]),
    ({**Q, "options": ["a", "b"]}, ["options: Input should be a valid dictionary"]),
    ({**Q, "options": {"A": "x", "B": 2}}, ["options.B: Input should be a valid string"]),
    ({**Q, "id": 7}, ["id: Input should be a valid string"]),
    ({**Q, "answer": "B"}, ["answer: unknown field"]),
    ({**Q, "question": "x" * 200_001}, ["question: String should have at most"]),
])
def test_wrong_types_missing_and_unknown_fields_are_422(client: TestClient, body: dict, fragments: list[str]) -> None:
    err(client.post("/v1/programs/zs/predict", json=body), 422, "invalid_request", *fragments)


@pytest.mark.parametrize("options, fragment", [
    ({"A": "only one"}, "needs at least 2 options, got 1"),
    ({}, "needs at least 2 options, got 0"),
    ({chr(65 + i): f"opt {i}" for i in range(26)} | {"AA": "27th"}, "at most 26 options are allowed, got 27"),
    ({"A": "x", "B": "   "}, "options.B: option text must not be empty"),
    ({"A": "x", "": "y"}, "option keys must be non-empty strings"),
    ({"A": "x", " B": "y"}, "leading or trailing spaces"),
    ({"A": "x", "K" * 65: "y"}, "over 64 characters"),
])
def test_options_that_do_not_fit_are_422(client: TestClient, options: dict, fragment: str) -> None:
    err(client.post("/v1/programs/zs/predict", json={**Q, "options": options}), 422, "invalid_question", fragment)


def test_max_options_is_configurable() -> None:
    app, _ = app_with(max_options=3)
    with TestClient(app) as c:
        err(c.post("/v1/programs/zs/predict", json=Q), 422, "invalid_question", "at most 3 options")


def test_empty_question_text_is_422(client: TestClient) -> None:
    err(client.post("/v1/programs/zs/predict", json={**Q, "question": "  "}), 422, "invalid_question",
        "question: must not be empty")


def test_context_must_match_the_signature(client: TestClient) -> None:
    err(client.post("/v1/programs/zs/predict", json={**Q, "context": "a passage"}), 422, "invalid_question",
        "takes no context", "question, options -> answer")
    err(client.post("/v1/programs/ctx/predict", json=Q), 422, "invalid_question", "requires a non-empty context")
    err(client.post("/v1/programs/ctx/predict", json={**Q, "context": ""}), 422, "invalid_question", "context")
    ok = client.post("/v1/programs/ctx/predict", json={**Q, "context": "Scurvy: vitamin C deficiency."})
    assert ok.status_code == 200 and ok.json()["answer"] == "B"


def test_unknown_program_is_404_listing_the_served_ones(client: TestClient) -> None:
    err(client.post("/v1/programs/nope/predict", json=Q), 404, "program_not_found", "'nope'", "'zs'")
    err(client.get("/v1/programs/nope"), 404, "program_not_found")
    err(client.post("/v1/programs/nope/batch", json={"questions": [Q]}), 404, "program_not_found")


def test_invalid_json_non_json_and_unknown_routes(client: TestClient) -> None:
    hdr = {"content-type": "application/json"}
    err(client.post("/v1/programs/zs/predict", content=b'{"question": ', headers=hdr), 400, "invalid_json",
        "not valid JSON")
    err(client.post("/v1/programs/zs/predict", content=b"[1, 2]", headers=hdr), 422, "invalid_request")
    err(client.post("/v1/programs/zs/predict", data={"question": "Q"}), 415, "unsupported_media_type",
        "application/json")
    err(client.get("/v2/whatever"), 404, "not_found")
    err(client.get("/v1/programs/zs/predict"), 405, "method_not_allowed")


def test_oversized_body_by_content_length_is_413(client: TestClient) -> None:
    big = {**Q, "question": "x" * 1_100_000}
    err(client.post("/v1/programs/zs/predict", json=big), 413, "body_too_large", "over the 1000000 byte limit")


def test_oversized_body_without_content_length_is_413() -> None:
    """A chunked upload declares no size: the bytes actually received are counted."""
    app, lm = app_with(max_body_bytes=1000)

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(50):
            yield b" " * 100

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
            return await c.post("/v1/programs/zs/predict", content=chunks(),
                                headers={"content-type": "application/json"})

    r = asyncio.run(go())
    err(r, 413, "body_too_large", "1000 byte limit")
    assert lm.calls == 0


def test_batch_validation_names_the_item(client: TestClient) -> None:
    bad = {"questions": [Q, {**Q, "options": {"A": "x"}}, {**Q, "question": 3}]}
    err(client.post("/v1/programs/zs/batch", json=bad), 422, "invalid_request", "questions[2].question")
    bad = {"questions": [Q, {**Q, "options": {"A": "x"}}, {**Q, "context": "c"}]}
    err(client.post("/v1/programs/zs/batch", json=bad), 422, "invalid_question",
        "questions[1].options: needs at least 2", "questions[2].context")
    err(client.post("/v1/programs/zs/batch", json={"questions": []}), 422, "invalid_request", "empty")
    err(client.post("/v1/programs/zs/batch", json=[Q]), 422, "invalid_request")


def test_batch_is_bounded() -> None:
    app, lm = app_with(max_batch=3)
    with TestClient(app) as c:
        err(c.post("/v1/programs/zs/batch", json={"questions": [Q] * 4}), 422, "batch_too_large", "at most 3")
        assert c.post("/v1/programs/zs/batch", json={"questions": [Q] * 3}).status_code == 200
    assert lm.calls == 3


def test_batch_answers_in_order() -> None:
    app, _ = app_with(lambda r: "A" if "first" in (r.prompt or "") else "C")
    qs = [{**Q, "id": "1", "question": "first?"}, {**Q, "id": "2", "question": "second?"}]
    with TestClient(app) as c:
        d = c.post("/v1/programs/zs/batch", json={"questions": qs}).json()
    assert [(it["id"], it["result"]["answer"]) for it in d["results"]] == [("1", "A"), ("2", "C")]
    assert (d["succeeded"], d["failed"]) == (2, 0)


# ---- model failures: 502 / 503 / 504, never a hang --------------------------------------------------
def raising(exc: Exception) -> Callable[[LMRequest], str]:
    def fn(_r: LMRequest) -> str:
        raise exc
    return fn


def test_model_error_is_502_with_reason_and_no_secret() -> None:
    app, _ = app_with(raising(LMError("provider said: invalid api_key=sk-live-abcdef1234567890XYZ", status=401)))
    with TestClient(app) as c:
        msg = err(c.post("/v1/programs/zs/predict", json=Q), 502, "model_error", "the model failed", "[redacted]")
    assert "abcdef1234567890" not in msg


def test_unavailable_backend_is_503() -> None:
    app, _ = app_with(raising(LMUnavailable("model 'x' unavailable after 6 attempt(s)")))
    with TestClient(app) as c:
        err(c.post("/v1/programs/zs/predict", json=Q), 503, "model_unavailable", "unavailable after 6")
        err(c.post("/v1/programs/zs/batch", json={"questions": [Q, Q]}), 503, "model_unavailable",
            "every question in the batch failed")


def test_vote_with_some_failed_calls_still_answers() -> None:
    def fn(r: LMRequest) -> str:
        if r.temperature > 0:
            raise LMError("sampled call failed")
        return "B"
    prog = Program(Vote(Predict(tune=False), Predict(temperature=0.7, tune=False),
                        Predict(temperature=0.0, tune=False)), name="vote")
    app, _ = app_with(fn, programs={"vote": prog})
    with TestClient(app) as c:
        d = c.post("/v1/programs/vote/predict", json=Q).json()
    assert d["answer"] == "B" and d["usage"]["failures"] == 1 and d["usage"]["calls"] == 2


def test_batch_partial_failure_reports_per_item() -> None:
    def fn(r: LMRequest) -> str:
        if "poison" in (r.prompt or ""):
            raise LMError("backend choked")
        return "B"
    app, _ = app_with(fn)
    qs = [{**Q, "id": "ok"}, {**Q, "id": "bad", "question": "poison?"}]
    with TestClient(app) as c:
        r = c.post("/v1/programs/zs/batch", json={"questions": qs})
    d = r.json()
    assert r.status_code == 200 and (d["succeeded"], d["failed"]) == (1, 1)
    assert d["results"][0]["result"]["answer"] == "B"
    assert d["results"][1]["error"]["code"] == "model_error" and "choked" in d["results"][1]["error"]["message"]


def test_slow_model_is_504_and_keeps_its_slot_until_done() -> None:
    release = threading.Event()
    app, _ = app_with(lambda r: (release.wait(5), "B")[1], timeout_s=0.3, max_concurrency=1)
    with TestClient(app) as c:
        t0 = time.monotonic()
        err(c.post("/v1/programs/zs/predict", json=Q), 504, "timeout", "0.3 s")
        assert time.monotonic() - t0 < 2
        assert c.get("/health").json()["running"] == 1  # the stuck call still holds the model slot
        err(c.post("/v1/programs/zs/batch", json={"questions": [Q]}), 504, "timeout")
        release.set()
        for _ in range(100):
            if c.get("/health").json()["running"] == 0:
                break
            time.sleep(0.02)
        assert c.post("/v1/programs/zs/predict", json=Q).status_code == 200


def test_unexpected_program_crash_is_500_without_internals() -> None:
    app, _ = app_with(raising(ZeroDivisionError("secret internal detail")))
    with TestClient(app, raise_server_exceptions=False) as c:
        msg = err(c.post("/v1/programs/zs/predict", json=Q), 500, "internal_error")
    assert "secret" not in msg


# ---- concurrency --------------------------------------------------------------------------------------
class Gauge:
    """Counts calls in flight to check the concurrency limit."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self.lock = threading.Lock()

    def __call__(self, _r: LMRequest) -> str:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(0.1)
        with self.lock:
            self.now -= 1
        return "B"


async def fire(app: Any, n: int, path: str = "/v1/programs/zs/predict", body: Any = None) -> list[httpx.Response]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t", timeout=30) as c:
        return list(await asyncio.gather(*[c.post(path, json=body or Q) for _ in range(n)]))


def test_concurrency_limit_is_honoured() -> None:
    gauge = Gauge()
    app, _ = app_with(gauge, max_concurrency=2)
    t0 = time.monotonic()
    rs = asyncio.run(fire(app, 8))
    assert [r.status_code for r in rs] == [200] * 8
    assert gauge.peak == 2
    assert time.monotonic() - t0 >= 0.35  # 8 calls of 0.1 s, two at a time
    assert max(r.json()["queue_s"] for r in rs) > 0.2


def test_batch_items_share_the_limit() -> None:
    gauge = Gauge()
    app, _ = app_with(gauge, max_concurrency=3)
    rs = asyncio.run(fire(app, 2, "/v1/programs/zs/batch", {"questions": [Q] * 6}))
    assert all(r.status_code == 200 and r.json()["succeeded"] == 6 for r in rs)
    assert gauge.peak == 3


def test_queue_wait_over_bound_is_503_with_retry_after() -> None:
    app, _ = app_with(latency=0.5, max_concurrency=1, queue_timeout_s=0.1)
    rs = asyncio.run(fire(app, 3))
    codes = sorted(r.status_code for r in rs)
    assert codes == [200, 503, 503]
    busy = [r for r in rs if r.status_code == 503]
    for r in busy:
        err(r, 503, "overloaded", "server busy")
        assert int(r.headers["retry-after"]) >= 1
    assert app.state.limiter.running == 0 and app.state.limiter.waiting == 0


def test_limiter_slots_are_not_leaked_by_timeouts_and_rejections() -> None:
    app, _ = app_with(latency=0.2, max_concurrency=2, queue_timeout_s=0.05, timeout_s=0.1)
    rs = asyncio.run(fire(app, 6))
    assert {r.status_code for r in rs} <= {503, 504}
    time.sleep(0.4)  # the timed-out calls drain
    assert app.state.limiter.running == 0
    rs = asyncio.run(fire(app, 1))
    assert rs[0].status_code == 504  # still slow, but a slot was free again


def test_create_app_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        create_app({"zs": zero_shot()}, ScriptedLM(lambda r: "B"), max_options=1)
    with pytest.raises(ValueError, match="no programs"):
        create_app({}, ScriptedLM(lambda r: "B"))
