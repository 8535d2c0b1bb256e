"""`evaluate`: score a program on questions, with the numbers a report needs.

Every accuracy carries a 95% bootstrap CI (overall and per subject), and cost is
reported two ways: logical (every call the program made, as if nothing were cached:
what a fresh deployment would pay) and live (calls that actually reached the model in
the run that produced the record). Results are appended to a checkpoint JSONL (records.py) as they
finish, keyed by program content hash + model + question, so an interrupted eval
resumes where it stopped; the LM disk cache covers the question that was in flight.
"""
from __future__ import annotations

import contextvars
import json
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..lm.base import LM, LMError, LMRequest, LMResponse, Usage
from ..lm.wrapper import LMWrapper
from ..program.program import Program, Result
from ..progress import progress_bar
from ..question import Question
from .records import Checkpoint, CheckpointBusy, Record, question_key
from .stats import CI, accuracy_ci, percentiles

NO_SUBJECT = "(none)"


class EvalError(ValueError):
    """An evaluation cannot run or be compared as asked (bad input, mismatched questions)."""


class EvalStopped(LMError):
    """The model failed for good mid-eval; finished questions are kept in the checkpoint."""

    fatal = True


@dataclass
class EvalResult:
    """Accuracy with CIs, breakdowns, cost and latency of one program on one model."""

    name: str
    program_hash: str
    model: str
    mode: str
    records: list[Record]
    seed: int = 0
    calls_per_question_declared: float | None = None
    resumed: int = 0
    elapsed_s: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    # ---- derived numbers ----------------------------------------------------------------------
    @property
    def n(self) -> int:
        return len(self.records)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def correct(self) -> list[bool]:
        return [r.correct for r in self.records]

    @property
    def accuracy(self) -> CI:
        return accuracy_ci(self.correct(), seed=self.seed)

    def by_subject(self) -> dict[str, CI]:
        groups: dict[str, list[bool]] = {}
        for r in self.records:
            groups.setdefault(r.subject or NO_SUBJECT, []).append(r.correct)
        return {s: accuracy_ci(v, seed=self.seed) for s, v in sorted(groups.items())}

    @property
    def abstention_rate(self) -> float:
        return sum(r.answer is None for r in self.records) / self.n if self.n else 0.0

    @property
    def chance(self) -> float | None:
        """Expected accuracy of uniform guessing: the floor any program must clear."""
        if not self.records or any(r.n_options < 1 for r in self.records):
            return None
        return sum(1 / r.n_options for r in self.records) / self.n

    @property
    def failed_calls(self) -> int:
        """Model calls that raised; each one became an abstention (or a lost vote)."""
        return sum(r.failures for r in self.records)

    def usage_per_question(self) -> dict[str, dict[str, float]]:
        """Means over questions: 'logical' counts every call, 'live' only uncached ones."""
        n = max(self.n, 1)

        def mean(attr: str) -> float:
            return sum(getattr(r, attr) for r in self.records) / n

        return {
            "logical": {"calls": mean("calls"), "prompt_tokens": mean("prompt_tokens"),
                        "completion_tokens": mean("completion_tokens"), "cost": mean("cost")},
            "live": {"calls": mean("live_calls"), "prompt_tokens": mean("live_prompt_tokens"),
                     "completion_tokens": mean("live_completion_tokens"), "cost": mean("live_cost")},
        }

    def latency(self) -> dict[str, float]:
        """Per-question wall time percentiles (seconds), p50/p90/p99."""
        if not self.records:
            return {}
        ps = percentiles([r.latency_s for r in self.records], (50, 90, 99))
        return {f"p{int(p)}": round(v, 4) for p, v in ps.items()}

    def summary(self) -> str:
        """The one line a person reads first."""
        u = self.usage_per_question()
        return (f"{self.name} on {self.model}: accuracy {self.accuracy.pts()}, n={self.n}; "
                f"abstained {100 * self.abstention_rate:.1f}%; {u['logical']['calls']:.2g} calls/question "
                f"({u['live']['calls']:.2g} live)")

    # ---- serialisation ------------------------------------------------------------------------
    def to_dict(self, *, records: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name, "program_hash": self.program_hash, "model": self.model, "mode": self.mode,
            "n": self.n, "seed": self.seed, "accuracy": _ci_dict(self.accuracy),
            "by_subject": {s: _ci_dict(c) for s, c in self.by_subject().items()},
            "chance": None if self.chance is None else round(self.chance, 6),
            "abstention_rate": round(self.abstention_rate, 6), "failed_calls": self.failed_calls,
            "usage_per_question": _rounded(self.usage_per_question()),
            "usage_total": _rounded(self._totals()), "latency_s": self.latency(),
            "calls_per_question_declared": self.calls_per_question_declared, "resumed": self.resumed,
            "elapsed_s": round(self.elapsed_s, 2), "meta": self.meta,
        }
        if records:
            d["records"] = [r.to_dict() for r in self.records]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EvalResult":
        """Rebuild from `to_dict` output (with records): derived numbers are recomputed."""
        if "records" not in d:
            raise EvalError("this eval JSON has no per-question records; re-run `medcompile eval`")
        return cls(d["name"], d["program_hash"], d["model"], d.get("mode", "text"),
                   [Record.from_dict(r) for r in d["records"]], d.get("seed", 0),
                   d.get("calls_per_question_declared"), d.get("resumed", 0), d.get("elapsed_s", 0.0),
                   dict(d.get("meta") or {}))

    def _totals(self) -> dict[str, float]:
        keys = ("calls", "cached_calls", "prompt_tokens", "completion_tokens", "cost", "live_prompt_tokens",
                "live_completion_tokens", "live_cost")
        return {k: sum(getattr(r, k) for r in self.records) for k in keys}

    def to_markdown(self) -> str:
        acc, u, lat = self.accuracy, self.usage_per_question(), self.latency()
        lines = [f"# Evaluation: {self.name}", "",
                 f"- model: `{self.model}` ({self.mode} mode)", f"- program sha256: `{self.program_hash[:16]}`"]
        lines += [f"- {k}: {v}" for k, v in self.meta.items()]
        lines += ["", f"**Accuracy {acc.pts()}, n={self.n}** (percentile bootstrap, seed {self.seed}; "
                  "abstentions count as wrong)"
                  + (f"; uniform guessing would score {100 * self.chance:.1f}" if self.chance else ""), "",
                  f"Abstention rate: {100 * self.abstention_rate:.1f}% "
                  f"({sum(r.answer is None for r in self.records)} of {self.n})"
                  + (f"; {self.failed_calls} model call(s) failed" if self.failed_calls else ""), "",
                  "| subject | n | accuracy | 95% CI |", "|---|---:|---:|---|"]
        for s, c in self.by_subject().items():
            lines.append(f"| {s} | {c.n} | {100 * c.mean:.1f} | {100 * c.low:.1f} to {100 * c.high:.1f} |")
        lines += ["", "| per question | calls | prompt tokens | completion tokens | cost ($) |",
                  "|---|---:|---:|---:|---:|"]
        for kind in ("logical", "live"):
            x = u[kind]
            lines.append(f"| {kind} | {x['calls']:.2f} | {x['prompt_tokens']:.1f} | {x['completion_tokens']:.1f} "
                         f"| {x['cost']:.6f} |")
        lines += ["", "Logical counts every call the program makes (what an uncached deployment makes); "
                  "live counts calls that reached the model (and money spent) when the record was made; a "
                  "cached call keeps the cost it had, so logical cost is the same cold or warm.", ""]
        if lat:
            lines.append(f"Latency per question (s): p50 {lat['p50']:.2f}, p90 {lat['p90']:.2f}, "
                         f"p99 {lat['p99']:.2f}")
        if self.calls_per_question_declared is not None:
            lines.append(f"\nDeclared calls per question: {self.calls_per_question_declared:g}")
        if self.resumed:
            lines.append(f"\n{self.resumed} of {self.n} records were restored from the checkpoint.")
        return "\n".join(lines) + "\n"


def load_eval(path: str | os.PathLike[str]) -> EvalResult:
    try:
        return EvalResult.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise EvalError(f"{path}: not a readable eval JSON ({exc})") from None


# ---- running --------------------------------------------------------------------------------------
class _Attributing(LMWrapper):
    """Pass-through LM that adds uncached responses to the running question's tally.

    The tally lives in a context variable set when a question starts; a module that runs
    a question's calls on several threads (modules/fanout.py) runs them in copies of that
    context, so per-question live usage stays exact even when questions run concurrently
    on one shared model.
    """

    def __init__(self, inner: LM) -> None:
        super().__init__(inner)
        self._tally: contextvars.ContextVar[tuple[Usage, threading.Lock] | None] = contextvars.ContextVar(
            "medcompile_eval_live", default=None)

    def start(self) -> None:
        self._tally.set((Usage(), threading.Lock()))

    def live(self) -> Usage:
        tally = self._tally.get()
        return tally[0] if tally is not None else Usage()

    def complete(self, request: LMRequest) -> LMResponse:
        resp = self.inner.complete(request)
        tally = self._tally.get()
        if not resp.cached and tally is not None:
            with tally[1]:
                tally[0].add_response(resp)
        return resp


def _check_questions(questions: Sequence[Question]) -> None:
    if not questions:
        raise EvalError("no questions to evaluate on")
    seen: set[str] = set()
    for q in questions:
        if q.answer is None:
            raise EvalError(f"question {q.id!r} has no gold answer: evaluation needs labelled questions")
        if q.id in seen:
            raise EvalError(f"question id {q.id!r} occurs twice: ids must be unique to pair and resume results")
        seen.add(q.id)


def evaluate(program: Program, questions: Sequence[Question], lm: LM | str | None = None, *,
             concurrency: int = 1, quiet: bool = False, seed: int = 0, checkpoint: Path | None = None,
             name: str | None = None) -> EvalResult:
    """Run `program` on `questions` and score it (see the module docstring).

    `lm` defaults to the model the program was compiled for; `seed` seeds the bootstrap.
    A fatal model error raises `EvalStopped` after saving every finished question.
    """
    _check_questions(questions)
    if concurrency < 1:
        raise EvalError(f"concurrency must be at least 1, got {concurrency}")
    t0 = time.perf_counter()
    the_lm = program.resolve_lm(lm)
    att = _Attributing(the_lm)
    program.prepare(questions)  # before hashing: preparing a kNN bank fixes its embeddings in the program
    ckpt = Checkpoint(Path(checkpoint), program.content_hash(), the_lm.model, the_lm.mode) if checkpoint else None
    if ckpt:
        try:
            ckpt.claim()  # before reading it: a second run of the same eval stops here
        except CheckpointBusy as e:
            raise EvalError(str(e)) from None
    label = name or program.name
    try:
        done = ckpt.load(questions) if ckpt else {}
        todo = [q for q in questions if q.id not in done]
        with progress_bar(f"eval {label}", len(questions), quiet=quiet) as bar:
            tally = _Tally(done.values())
            if done:
                bar.resume(len(done))
                bar.describe(f"eval {label} {tally}")

            def finish(q: Question, r: Result, live: Usage) -> None:
                rec = Record.from_result(r, live)
                done[q.id] = rec
                if ckpt:
                    ckpt.append(q, rec)
                tally.add(rec)
                bar.describe(f"eval {label} {tally}")
                bar.advance(r.usage)

            _run_all(program, todo, att, concurrency, finish, ckpt)
    finally:
        if ckpt:
            ckpt.close()
    return EvalResult(label, program.content_hash(), the_lm.model, the_lm.mode, [done[q.id] for q in questions],
                      seed, program.calls_per_question(), len(questions) - len(todo), time.perf_counter() - t0)


class _Tally:
    """Running accuracy for the progress bar."""

    def __init__(self, records: Iterable[Record]) -> None:
        rs = list(records)
        self.n, self.right = len(rs), sum(r.correct for r in rs)

    def add(self, rec: Record) -> None:
        self.n += 1
        self.right += int(rec.correct)

    def __str__(self) -> str:
        return f"acc {100 * self.right / self.n:.1f}% ({self.right}/{self.n})" if self.n else ""


def _run_all(program: Program, todo: Sequence[Question], att: _Attributing, concurrency: int,
             finish: Any, ckpt: Checkpoint | None) -> None:
    """Run questions, handing each to `finish` in input order (a finished question waits for
    the ones before it, so the checkpoint reads like the input); on a fatal model error,
    start nothing new, let running questions finish and save, then raise EvalStopped."""

    def one(q: Question) -> tuple[Result, Usage]:
        att.start()
        r = program.run(q, att)  # type: ignore[arg-type]
        return r, att.live()

    failure: BaseException | None = None
    done: dict[int, tuple[Question, Result, Usage]] = {}
    next_i = 0
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        queue = list(reversed(range(len(todo))))
        running: dict[Future, int] = {}
        while queue or running:
            while queue and failure is None and len(running) < concurrency:
                i = queue.pop()
                running[pool.submit(one, todo[i])] = i
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                i = running.pop(fut)
                try:
                    r, live = fut.result()
                except BaseException as exc:  # noqa: BLE001 - the first one is re-raised below
                    failure = failure or exc
                    next_i = max(next_i, i + 1) if i == next_i else next_i
                    continue
                done[i] = (todo[i], r, live)
            while next_i in done:
                finish(*done.pop(next_i))
                next_i += 1
            if failure is not None:
                queue.clear()
    for i in sorted(done):  # stopped early: keep every finished question, in order
        finish(*done.pop(i))
    if failure is None:
        return
    if isinstance(failure, LMError) and failure.fatal:
        where = f" in {ckpt.path}" if ckpt else " (no checkpoint was given, so they are not saved)"
        raise EvalStopped(f"model failed for good, evaluation stopped: {failure}. Finished questions are kept"
                          f"{where}; rerun the same command to resume") from failure
    raise failure


def _ci_dict(ci: CI) -> dict[str, Any]:
    return {"mean": round(ci.mean, 6), "low": round(ci.low, 6), "high": round(ci.high, 6), "n": ci.n,
            "level": ci.level}


def _rounded(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _rounded(v) for k, v in d.items()}
    return round(d, 8) if isinstance(d, float) else d


__all__ = ["EvalError", "EvalResult", "EvalStopped", "Record", "Checkpoint", "evaluate", "load_eval", "question_key"]
