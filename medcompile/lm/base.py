"""The contract between prompt programs and language models.

A program never talks to a provider directly: it builds an `LMRequest` and hands it
to an `LM`. Requests are plain data so that they can be hashed into cache keys and
logged; responses carry usage so that every call is accounted for.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal, Protocol, runtime_checkable

Mode = Literal["text", "chat"]


class LMError(RuntimeError):
    """A model call failed. `retryable` says whether trying again may help; `fatal`
    errors (backend down for good, budget spent) stop the whole run instead of
    becoming one abstention."""

    fatal: bool = False

    def __init__(self, message: str, *, retryable: bool = False, retry_after: float | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


class LMUnavailable(LMError):
    """The backend kept failing after all retries: stop the run, keep the work done."""

    fatal = True


class LMConfigError(LMError):
    """The call can never succeed as configured: unknown model or provider, missing or
    rejected API key, a server that is not there. Never retried, never turned into an
    abstention: the run stops at once with this message, which names the cause."""

    fatal = True

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message, retryable=False, status=status)


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class LMRequest:
    """One model call. `prompt` is used in text mode, `messages` in chat mode."""

    model: str
    mode: Mode
    prompt: str | None = None
    messages: tuple[Message, ...] = ()
    temperature: float = 0.0
    max_tokens: int = 16
    stop: tuple[str, ...] = ()
    seed: int = 0
    top_p: float = 1.0
    #: When non-empty, the reply must be exactly one of these strings (a question's option
    #: keys). Backends that can constrain decoding (a grammar, logit bias, guided choice)
    #: do so and return per-choice log-probabilities; others ignore it and the reply is parsed.
    choices: tuple[str, ...] = ()

    def cache_key(self) -> str:
        """A stable hash of everything that determines the response.

        Fields at their empty default are left out, so adding an optional field never
        invalidates cache entries written before it existed."""
        d = asdict(self)
        if not d["choices"]:
            del d["choices"]
        payload = json.dumps(d, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class LMResponse:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    cached: bool = False
    latency_s: float = 0.0
    #: (choice, log-probability) for each of the request's `choices`, when the backend
    #: scored them (empty otherwise). Normalised over the choices, so exp() sums to 1.
    choice_logprobs: tuple[tuple[str, float], ...] = ()


@runtime_checkable
class LM(Protocol):
    """Anything that can answer an `LMRequest`.

    `model` names the model (it goes into the cache key); `mode` says whether the
    model wants a raw text prompt (base models) or chat messages (chat models).
    """

    model: str
    mode: Mode

    def complete(self, request: LMRequest) -> LMResponse: ...


@dataclass
class Usage:
    """Counts of model work. Thread-safe updates are the caller's job (see `UsageMeter`)."""

    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    failures: int = 0
    latency_s: float = 0.0
    live_cost: float = 0.0  # money actually spent (cost counts cached calls at what they cost)

    def add_response(self, r: LMResponse) -> None:
        self.calls += 1
        self.cached_calls += int(r.cached)
        self.prompt_tokens += r.prompt_tokens
        self.completion_tokens += r.completion_tokens
        self.cost += r.cost
        self.live_cost += 0.0 if r.cached else r.cost
        self.latency_s += r.latency_s

    def __iadd__(self, other: "Usage") -> "Usage":
        for k, v in asdict(other).items():
            setattr(self, k, getattr(self, k) + v)
        return self

    @property
    def live_calls(self) -> int:
        """Calls that actually reached the model (not served from cache)."""
        return self.calls - self.cached_calls

    def to_dict(self) -> dict:
        d = asdict(self)
        d["live_calls"] = self.live_calls
        d["cost"] = round(self.cost, 8)
        d["live_cost"] = round(self.live_cost, 8)
        d["latency_s"] = round(self.latency_s, 4)
        return d
