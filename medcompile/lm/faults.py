"""Fault injection, to test that programs and the LM stack survive a misbehaving model.

`FaultyLM(inner, plan)` either follows a script (one fault name per call, `None` or
'ok' to pass through, pass-through once the script runs out) or draws faults from a
probability dict. Draws are seeded per request (seed, cache key, n-th time seen), so
the same faults land on the same requests whatever the thread scheduling.
"""
from __future__ import annotations

import hashlib
import random
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping

from medcompile.lm.base import LM, LMError, LMRequest, LMResponse
from medcompile.lm.wrapper import LMWrapper

ERROR_FAULTS = ("timeout", "rate_limit", "server_error", "connection_reset", "down")
TEXT_FAULTS = ("empty", "unparsable", "two_answers", "non_utf8")
FAULTS = ERROR_FAULTS + TEXT_FAULTS
OK = "ok"

UNPARSABLE_TEXT = ("Well, there are several considerations here and it really depends on "
                   "the clinical picture, so I would rather not commit to any single option.")
TWO_ANSWERS_TEXT = "Answer: A\nAnswer: C"
# Invalid UTF-8 decoded with surrogateescape: lone surrogates, the nastiest case for
# JSON/SQLite writers downstream. It still contains a valid answer letter.
NON_UTF8_TEXT = b"Answer: B \xff\xfe\xc3( \x80 done".decode("utf-8", errors="surrogateescape")

RATE_LIMIT_RETRY_AFTER = 0.01


def fault_error(name: str, model: str) -> LMError:
    """The exception a real backend would raise for this fault."""
    if name == "timeout":
        return LMError(f"injected fault: request to {model!r} timed out", retryable=True, status=408)
    if name == "rate_limit":
        return LMError(f"injected fault: {model!r} rate limited (429)", retryable=True,
                       retry_after=RATE_LIMIT_RETRY_AFTER, status=429)
    if name == "server_error":
        return LMError(f"injected fault: {model!r} service unavailable (503)", retryable=True, status=503)
    if name == "connection_reset":
        return LMError(f"injected fault: connection to {model!r} reset by peer", retryable=True)
    if name == "down":
        return LMError(f"injected fault: backend for {model!r} is down", retryable=True, status=503)
    raise ValueError(f"{name!r} is not an error fault")


def fault_text(name: str) -> str:
    return {"empty": "", "unparsable": UNPARSABLE_TEXT, "two_answers": TWO_ANSWERS_TEXT,
            "non_utf8": NON_UTF8_TEXT}[name]


class FaultyLM(LMWrapper):
    """Wraps an LM and injects faults; `injected` records (call_index, fault) pairs.

    'down' is sticky: once injected, every later call fails the same way.
    """

    def __init__(self, inner: LM, plan: Iterable[str | None] | Mapping[str, float], *,
                 seed: int = 0) -> None:
        super().__init__(inner)
        self.seed = seed
        self._probs: dict[str, float] | None = None
        self._script: Iterator[str | None] | None = None
        if isinstance(plan, Mapping):
            unknown = set(plan) - set(FAULTS)
            if unknown:
                raise ValueError(f"unknown faults {sorted(unknown)}; known: {FAULTS}")
            if sum(plan.values()) > 1.0 + 1e-9 or any(p < 0 for p in plan.values()):
                raise ValueError("fault probabilities must be >= 0 and sum to <= 1")
            self._probs = dict(plan)
        else:
            self._script = iter(plan)
        self.injected: list[tuple[int, str]] = []
        self.calls = 0
        self.down = False
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    @property
    def counts(self) -> Counter[str]:
        return Counter(f for _, f in self.injected)

    def _draw(self, request: LMRequest) -> str | None:
        if self._script is not None:
            name = next(self._script, None)
        else:
            key = request.cache_key()
            n = self._seen[key]
            self._seen[key] += 1
            h = hashlib.sha256(f"{self.seed}:{key}:{n}".encode()).digest()
            u = random.Random(h).random()
            name, acc = None, 0.0
            for fault, p in (self._probs or {}).items():
                acc += p
                if u < acc:
                    name = fault
                    break
        if name in (None, OK):
            return None
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; known: {FAULTS}")
        return name

    def complete(self, request: LMRequest) -> LMResponse:
        with self._lock:
            index = self.calls
            self.calls += 1
            name = "down" if self.down else self._draw(request)
            if name is not None:
                self.injected.append((index, name))
                self.down = self.down or name == "down"
        if name is None:
            return self.inner.complete(request)
        if name in ERROR_FAULTS:
            raise fault_error(name, self.model)
        text = fault_text(name)
        return LMResponse(text=text, prompt_tokens=1, completion_tokens=len(text.split()))
