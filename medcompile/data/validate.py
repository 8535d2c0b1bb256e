"""Bad rows, load reports and the `Dataset` they describe.

A benchmark number is only as good as the rows behind it, so loading never drops or
repairs a row quietly: every rejected row becomes a `RowProblem` with its row number
and reason. With ``on_error="raise"`` (the default) any problem stops the load; with
``on_error="skip"`` the good rows load and the report lists every skipped one.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Sequence

from ..question import Question

OnError = Literal["raise", "skip"]
ON_ERROR_CHOICES: tuple[str, ...] = ("raise", "skip")
#: How many problems a `DatasetError` message spells out before summarising.
MAX_LISTED = 5


class DatasetError(ValueError):
    """A dataset cannot be loaded as asked (bad rows, unknown format, missing file...)."""

    def __init__(self, message: str, report: "LoadReport | None" = None) -> None:
        super().__init__(message)
        self.report = report


class RowError(ValueError):
    """Raised by row parsers: one row is unusable. `field` names the offending field."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


@dataclass(frozen=True)
class RowProblem:
    """One rejected row. `row` is 1-based: the line number in JSONL/CSV files, the
    entry position in a JSON object file."""

    row: int
    reason: str
    field: str | None = None
    id: str | None = None

    def __str__(self) -> str:
        where = f"row {self.row}"
        if self.id is not None:
            where += f" (id {self.id!r})"
        return f"{where}: {self.reason}"


@dataclass
class LoadReport:
    """What happened while loading one file: rows seen, loaded and rejected."""

    path: str
    rows_read: int = 0
    rows_loaded: int = 0
    blank_lines: int = 0
    problems: list[RowProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def skipped(self) -> int:
        return len(self.problems)

    def add(self, row: int, reason: str, field: str | None = None, id: str | None = None) -> None:
        self.problems.append(RowProblem(row, reason, field, id))

    def summary(self, limit: int = MAX_LISTED) -> str:
        """A human-readable account naming the file, the count and the first problems."""
        head = (f"{self.path}: {len(self.problems)} bad row(s) out of {self.rows_read}"
                if self.problems else f"{self.path}: {self.rows_loaded} row(s) loaded, no problems")
        lines = [head] + [f"  {p}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "rows_read": self.rows_read, "rows_loaded": self.rows_loaded,
            "blank_lines": self.blank_lines,
            "problems": [{"row": p.row, "reason": p.reason, "field": p.field, "id": p.id}
                         for p in self.problems],
        }


def check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR_CHOICES:
        raise DatasetError(f"on_error must be one of {list(ON_ERROR_CHOICES)}, got {on_error!r}")


def finish_report(report: LoadReport, on_error: str) -> None:
    """Apply the error policy once the whole file has been read (so that the message can
    give the full count, not just the first problem)."""
    if report.problems and on_error == "raise":
        raise DatasetError(
            report.summary() + "\n(pass --skip-bad-rows (Python: on_error='skip') to load the valid rows"
            " and list the rejected ones)", report)
    if report.rows_loaded == 0:
        raise DatasetError(f"{report.path}: no valid rows"
                           + (f"\n{report.summary()}" if report.problems else ""), report)


class DuplicateIds:
    """Remembers ids seen so far so that a repeated id is rejected with a pointer to the
    first occurrence (the first one is kept: there is no way to know which is right)."""

    def __init__(self) -> None:
        self._first: dict[str, int] = {}

    def check(self, qid: str, row: int) -> None:
        if qid in self._first:
            raise RowError(f"duplicate id {qid!r} (first seen at row {self._first[qid]})", "id")
        self._first[qid] = row


@dataclass(frozen=True)
class Source:
    """Where a dataset came from; recorded in compile metadata for reproducibility."""

    path: str
    sha256: str
    format: str
    split: str | None = None
    #: Other files that shaped the data (e.g. PubMedQA's test_ground_truth.json) -> sha256.
    companions: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "sha256": self.sha256, "format": self.format,
                             "split": self.split}
        if self.companions:
            d["companions"] = dict(self.companions)
        return d


def fingerprint_questions(questions: Sequence[Question]) -> str:
    """sha256 of the canonical JSON of the questions, in order. Two datasets with the
    same fingerprint present the model with exactly the same items."""
    h = hashlib.sha256()
    for q in questions:
        h.update(json.dumps(q.to_dict(), sort_keys=True, ensure_ascii=False,
                            separators=(",", ":")).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


@dataclass(frozen=True)
class Dataset:
    """Loaded questions plus the evidence of how they were loaded.

    `named_splits` holds splits the source itself defines (id lists), e.g. PubMedQA's
    official test ids; rule-based splits (MedQA's realidx % 5) live in `splits.py`.
    """

    questions: list[Question]
    report: LoadReport
    source: Source
    named_splits: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.questions)

    def __iter__(self) -> Iterator[Question]:
        return iter(self.questions)

    def __getitem__(self, i: int) -> Question:
        return self.questions[i]

    @property
    def ids(self) -> list[str]:
        return [q.id for q in self.questions]

    def fingerprint(self) -> str:
        return fingerprint_questions(self.questions)

    def subset(self, questions: Sequence[Question], split: str) -> "Dataset":
        """A derived dataset (same source and report) holding `questions`, labelled `split`."""
        src = Source(self.source.path, self.source.sha256, self.source.format, split,
                     self.source.companions)
        return Dataset(list(questions), self.report, src, dict(self.named_splits))

    def metadata(self) -> dict[str, Any]:
        """What compile/eval metadata should record about the data."""
        return {**self.source.to_dict(), "n": len(self.questions), "fingerprint": self.fingerprint(),
                "rows_skipped": self.report.skipped}
