"""Request and response bodies of the HTTP API (they also generate /openapi.json).

Requests are strict: a number where text belongs, a misspelt field or a list where
the options object belongs is a 422 naming the field, never a silent coercion. Limits
that depend on the server's settings or on the program's signature (option count,
context) are checked in `questions.py`, where the program is known.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..program.schema import MAX_TEXT


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class QuestionIn(_Strict):
    """One multiple-choice question, as the program's signature reads it."""

    id: str | None = Field(None, max_length=256, description="your id, echoed back; default: a hash of the content")
    question: str = Field(max_length=MAX_TEXT, description="the question text")
    options: dict[str, str] = Field(description="option key -> option text, in display order, e.g. "
                                                "{\"A\": \"Vitamin C\", \"B\": \"Vitamin D\"}")
    context: str | None = Field(None, max_length=MAX_TEXT,
                                description="a passage; required by signatures with a context input, "
                                            "refused by those without")

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{
        "id": "q1", "question": "Which vitamin deficiency causes scurvy?",
        "options": {"A": "Vitamin A", "B": "Vitamin C", "C": "Vitamin D", "D": "Vitamin K"}}]})


class BatchIn(_Strict):
    questions: list[QuestionIn] = Field(description="questions to answer, in order (at most max_batch)")


class UsageOut(BaseModel):
    calls: int = Field(description="model calls made for this question")
    cached_calls: int = Field(description="of which answered from the response cache")
    failures: int = Field(description="model calls that failed (the program may still have answered)")
    prompt_tokens: int
    completion_tokens: int
    cost: float = Field(description="provider cost in USD, 0 for local models")


class PredictionOut(BaseModel):
    id: str
    answer: str | None = Field(description="the chosen option key; null when the program abstained")
    confidence: float = Field(description="a single constrained call: the model's probability of the answer; "
                                          "an ensemble: the share of the votes the answer got")
    votes: dict[str, int] = Field(description="option key -> votes, over the program's model calls")
    option_probs: dict[str, float] | None = Field(None, description="option key -> the model's probability, when "
                                                   "the answer was scored (constrained); ensembles: the mean")
    abstain_reason: str | None = Field(None, description="why there is no answer (only when answer is null)")
    rationale: str | None = Field(None, description="the model's reasoning, only with ?rationales=true")
    usage: UsageOut
    latency_s: float = Field(description="seconds spent running the program (queueing excluded)")


class PredictOut(PredictionOut):
    program: str
    queue_s: float = Field(description="seconds spent waiting for a free model slot")


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. invalid_request, model_error, timeout")
    message: str = Field(description="what went wrong, for humans")
    details: list[dict[str, Any]] | None = None


class ErrorOut(BaseModel):
    error: ErrorDetail


class BatchItemOut(BaseModel):
    """Either a prediction or, if the model failed on this question, an error."""

    id: str
    result: PredictionOut | None = None
    error: ErrorDetail | None = None


class BatchOut(BaseModel):
    program: str
    results: list[BatchItemOut] = Field(description="one per question, in request order")
    succeeded: int
    failed: int
    latency_s: float = Field(description="seconds for the whole batch, queueing included")


class DevScore(BaseModel):
    metric: str | None = None
    score: float | None = None
    n: int | None = None
    ci95: list[float] | None = None


class CompileSummary(BaseModel):
    compiler: str | None = None
    dev: DevScore | None = None
    train_n: int | None = None
    calls_per_question: float | None = None
    chosen_trial: int | None = None


class LMOut(BaseModel):
    model: str | None = None
    mode: Literal["text", "chat"] | None = None


class ProgramOut(BaseModel):
    name: str
    schema_version: int
    sha256: str = Field(description="sha256 of the canonical program JSON (same for the same program)")
    signature: str = Field(description="DSPy shorthand, e.g. 'question, options -> answer'")
    inputs: list[str]
    requires_context: bool
    calls_per_question: float
    lm: LMOut = Field(description="the model this server runs the program on")
    compiled_for: LMOut | None = Field(None, description="the model the program was compiled for")
    compile: CompileSummary | None = Field(None, description="compile metadata (dev score and its n)")


class ProgramsOut(BaseModel):
    programs: list[ProgramOut]


class LimitsOut(BaseModel):
    max_concurrency: int
    timeout_s: float
    queue_timeout_s: float
    max_body_bytes: int
    max_options: int
    max_batch: int


class HealthOut(BaseModel):
    status: Literal["ok"]
    programs: int
    running: int = Field(description="program runs in progress (model slots in use)")
    waiting: int = Field(description="requests queued for a slot")
    completed: int
    limits: LimitsOut
    version: str
