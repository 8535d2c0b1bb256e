"""What an evaluation keeps per question, and the checkpoint that lets it resume.

A `Record` is one question's outcome, flat and JSON-safe. The `Checkpoint` appends records
as they finish, keyed by program content hash + model + question content, so an
interrupted eval resumes where it stopped and an edited question is never reused.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..lm.base import Usage
from ..program.program import Result
from ..question import Question


@dataclass
class Record:
    """One question's outcome, flat and JSON-safe (what the checkpoint stores)."""

    id: str
    subject: str | None
    gold: str
    answer: str | None
    correct: bool
    confidence: float
    votes: dict[str, int]
    calls: int
    cached_calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: float
    live_prompt_tokens: int
    live_completion_tokens: int
    live_cost: float
    latency_s: float
    error: str | None = None
    abstain_reason: str | None = None
    failures: int = 0  # model calls that raised (e.g. prompt over the context window)
    n_options: int = 0  # for the chance level; 0 in records written before it was kept
    option_probs: dict[str, float] = field(default_factory=dict)  # scored (constrained) answers only

    @property
    def live_calls(self) -> int:
        return self.calls - self.cached_calls

    @classmethod
    def from_result(cls, r: Result, live: Usage) -> "Record":
        p, u = r.prediction, r.usage
        return cls(r.question.id, r.question.subject, r.question.answer or "", p.answer, r.correct,
                   round(p.confidence, 6), dict(p.votes), u.calls, u.cached_calls, u.prompt_tokens,
                   u.completion_tokens, round(u.cost, 8), live.prompt_tokens, live.completion_tokens,
                   round(live.cost, 8), round(r.latency_s, 4), r.error,
                   p.reason if p.answer is None else None, u.failures, len(r.question.options),
                   {k: round(v, 6) for k, v in p.option_probs.items()})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Record":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def question_key(q: Question) -> str:
    """Fingerprint of a question's content: a checkpoint record is reused only for the
    same question, not merely the same id in an edited file."""
    blob = json.dumps(q.to_dict(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


class CheckpointBusy(ValueError):
    """Another process is evaluating into the same checkpoint."""


class Checkpoint:
    """Append-only JSONL of finished records, in input order; a line torn by a crash is ignored.

    One process at a time: `claim` takes an exclusive lock (a `.lock` file beside it, released
    by `close` or when the process ends), so a second run of the same evaluation stops at once
    instead of redoing every question beside the first and writing each twice.

    Each line is flushed to the OS as it is written, so a killed process loses nothing it
    wrote; fsync (protection against the machine going down) runs at most every
    `fsync_every_s` and on close, so 10,000 questions do not wait on 10,000 disk syncs.
    """

    def __init__(self, path: Path, program_hash: str, model: str, mode: str, *, fsync_every_s: float = 1.0) -> None:
        self.path = path
        self.key = {"program": program_hash, "lm": model, "mode": mode}
        self._lock = threading.Lock()
        self._file: Any = None
        self._fsync_every_s = fsync_every_s
        self._last_sync = 0.0
        self._claim: Any = None

    def claim(self) -> None:
        """Take the checkpoint for this process; CheckpointBusy if another one holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path.with_name(self.path.name + ".lock"), "a+", encoding="utf-8")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise CheckpointBusy(f"{self.path} is being written by {holder}: an evaluation of the same program "
                                 "is still running there. Wait for it, or pass another --out (or "
                                 "--no-checkpoint)") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        self._claim = f

    def load(self, questions: Sequence[Question]) -> dict[str, Record]:
        """Records already finished for these questions with this program and model."""
        if not self.path.exists():
            return {}
        want = {q.id: question_key(q) for q in questions}
        by_id = {q.id: q for q in questions}
        done: dict[str, Record] = {}
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                    if all(row.get(k) == v for k, v in self.key.items()) and want.get(row["id"]) == row["q"]:
                        done[row["id"]] = Record.from_dict(row["record"])
                        done[row["id"]].n_options = len(by_id[row["id"]].options)  # older lines lack it
                except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                    continue  # torn or foreign line
        return done

    def append(self, q: Question, rec: Record) -> None:
        line = json.dumps({**self.key, "id": q.id, "q": question_key(q), "record": rec.to_dict()},
                          ensure_ascii=False, sort_keys=True)
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(line + "\n")
            self._file.flush()
            now = time.monotonic()
            if now - self._last_sync >= self._fsync_every_s:
                os.fsync(self._file.fileno())
                self._last_sync = now

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
                self._file = None
            if self._claim is not None:
                self._claim.close()  # releases the lock
                self._claim = None
