"""Load a dataset file into a `Dataset`, with every rejected row accounted for.

`load_dataset` reads the whole file, collects problems into a `LoadReport` and only
then applies the error policy, so an error message can say how many rows are bad.
Whole-file problems (missing file, wrong shape, CSV header without the mapped
columns) always raise `DatasetError`, whatever the policy.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

from ..question import Question
from .formats import (FORMATS, MEDAGENTS_FORMATS, FieldMap, detect_format, parse_generic_row,
                      parse_medagents_row, parse_pubmedqa_entry)
from .splits import split_named
from .validate import (Dataset, DatasetError, DuplicateIds, LoadReport, RowError, Source, check_on_error,
                       finish_report)

#: Names accepted in place of a path: the shared public files, relative to `data_dir()`.
BUILTIN_DATASETS: dict[str, str] = {
    "medqa_us4": "medqa_us4/test.jsonl",
    "medqa_us5": "medqa_us5/test.jsonl",
    "medmcqa": "medmcqa/test.jsonl",
    "mmlu_medical": "mmlu_medical/test.jsonl",
    "pubmedqa": "pubmedqa/ori_pqal.json",
}
PUBMEDQA_TRUTH = "test_ground_truth.json"
_REPO = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """The shared data folder: $MEDCOMPILE_DATA_DIR, else <repo>/../shared/data, else
    /work/shared/data (the repo may be cloned anywhere with ``shared`` beside it)."""
    env = os.environ.get("MEDCOMPILE_DATA_DIR")
    if env:
        return Path(env)
    for cand in (_REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if cand.is_dir():
            return cand
    return _REPO.parent / "shared" / "data"


def resolve_path(path_or_name: str | os.PathLike[str]) -> Path:
    """An existing path as given, else a built-in dataset name resolved in `data_dir()`."""
    p = Path(path_or_name)
    if p.exists():
        return p
    name = str(path_or_name)
    if name in BUILTIN_DATASETS:
        q = data_dir() / BUILTIN_DATASETS[name]
        if not q.exists():
            raise DatasetError(f"built-in dataset {name!r}: {q} not found (set MEDCOMPILE_DATA_DIR to the "
                               "folder holding the shared data)")
        return q
    raise DatasetError(f"{name}: no such file (built-in names: {', '.join(BUILTIN_DATASETS)})")


def load_dataset(path: str | os.PathLike[str], *, format: str = "auto", fields: FieldMap | None = None,
                 split: str | None = None, on_error: str = "raise") -> Dataset:
    """Load `path` (or a built-in name) as `format`.

    `fields` applies to the generic 'jsonl'/'csv' formats. `split` selects a named
    split after loading ('all', MedQA 'bank'/'dev'/'test', PubMedQA 'train'/'test';
    see `splits.split_named`). `on_error` is 'raise' or 'skip' (see `validate`).
    """
    check_on_error(on_error)
    if format not in FORMATS:
        raise DatasetError(f"unknown format {format!r}; choose from {', '.join(FORMATS)}")
    p = resolve_path(path)
    if p.is_dir():
        raise DatasetError(f"{p} is a folder; give a data file")
    if format == "auto" and fields is not None:  # a field map means a generic file
        fmt = "csv" if p.suffix.lower() in (".csv", ".tsv") else "jsonl"
    else:
        fmt = detect_format(p) if format == "auto" else format
    if fields is not None and fmt not in ("jsonl", "csv"):
        raise DatasetError(f"{p}: a field map applies only to format 'jsonl' or 'csv', not {fmt!r}")
    data = _read_bytes(p)
    report = LoadReport(str(p))
    companions: tuple[tuple[str, str], ...] = ()
    named: dict[str, tuple[str, ...]] = {}
    if fmt in MEDAGENTS_FORMATS:
        questions = _collect(_jsonl_rows(data, report), lambda row, i: parse_medagents_row(row, i, fmt),
                             report, "realidx")
    elif fmt == "jsonl":
        fm = fields or FieldMap()
        questions = _collect(_jsonl_rows(data, report), lambda row, i: parse_generic_row(row, i, fm),
                             report, fm.id)
    elif fmt == "csv":
        fm = fields or FieldMap()
        rows = _csv_rows(p, data, fm, report)
        questions = _collect(rows, lambda row, i: parse_generic_row(row, i, fm), report, fm.id)
    else:
        questions, companions, named = _load_pubmedqa(p, data, report)
    report.rows_loaded = len(questions)
    finish_report(report, on_error)
    ds = Dataset(questions, report, Source(str(p), hashlib.sha256(data).hexdigest(), fmt, None, companions),
                 named)
    if split is not None and split != "all":
        ds = split_named(ds, split)
    return ds


def _read_bytes(p: Path) -> bytes:
    try:
        return p.read_bytes()
    except OSError as e:
        raise DatasetError(f"{p}: cannot read: {e.strerror or e}") from e


# A row source yields (row number for messages, 0-based index for default ids, raw row).
Rows = Iterator[tuple[int, int, Any]]


def _collect(rows: Rows, parse: Callable[[Any, int], Question], report: LoadReport,
             id_field: str) -> list[Question]:
    """Parse rows, turning each `RowError` and duplicate id into a report entry."""
    out: list[Question] = []
    seen = DuplicateIds()
    for rowno, index, raw in rows:
        report.rows_read += 1
        if isinstance(raw, RowError):  # the reader already knows this row is bad
            report.add(rowno, raw.reason, raw.field)
            continue
        try:
            q = parse(raw, index)
            seen.check(q.id, rowno)
        except RowError as e:
            report.add(rowno, e.reason, e.field, _raw_id(raw, id_field))
            continue
        out.append(q)
    return out


def _raw_id(raw: Any, id_field: str) -> str | None:
    if isinstance(raw, dict):
        v = raw.get(id_field)
        if isinstance(v, (str, int)) and not isinstance(v, bool):
            return str(v)
    return None


def _jsonl_rows(data: bytes, report: LoadReport) -> Rows:
    """One JSON value per line. Row numbers and default ids come from the physical line
    (1-based for messages, 0-based for ids); blank lines are counted, not rows."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for i, raw in enumerate(data.splitlines()):
        if not raw.strip():
            report.blank_lines += 1
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            yield i + 1, i, RowError(f"not valid UTF-8 (byte {e.start + 1} of the line)")
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            yield i + 1, i, RowError(f"invalid JSON: {e.msg} (column {e.colno})")
            continue
        except (ValueError, RecursionError) as e:
            yield i + 1, i, RowError(f"invalid JSON: {type(e).__name__}")
            continue
        if not isinstance(value, dict):
            yield i + 1, i, RowError(f"line is not a JSON object (got {_json_kind(value)})")
            continue
        yield i + 1, i, value


def _json_kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def _csv_rows(p: Path, data: bytes, fields: FieldMap, report: LoadReport) -> Rows:
    """CSV/TSV rows as dicts. Row numbers are file lines (the header is line 1); default
    ids are 0-based record indexes. The header must contain every mapped column."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DatasetError(f"{p}: line {line}: not valid UTF-8") from e
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if p.suffix.lower() == ".tsv" else ",")
    try:
        header = reader.fieldnames
    except csv.Error as e:
        raise DatasetError(f"{p}: line 1: bad CSV header: {e}") from e
    if not header:
        raise DatasetError(f"{p}: empty file (no CSV header)")
    missing = [c for c in fields.columns() if c not in header]
    if missing:
        raise DatasetError(f"{p}: column(s) {missing} not in the CSV header {header}; map them with a field map "
                           "like 'question=stem,options=A|B|C|D,answer=label'")
    return _csv_records(p, reader, len(header))


def _csv_records(p: Path, reader: csv.DictReader, width: int) -> Rows:
    prev = reader.line_num
    index = 0
    while True:
        try:
            rec = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DatasetError(f"{p}: line {reader.line_num}: unreadable CSV: {e}") from e
        rowno, prev = prev + 1, reader.line_num
        if None in rec:
            extra = rec[None]  # type: ignore[index]
            yield rowno, index, RowError(f"{len(extra)} more field(s) than the {width}-column header")
        else:
            yield rowno, index, rec
        index += 1


def _load_pubmedqa(p: Path, data: bytes, report: LoadReport
                   ) -> tuple[list[Question], tuple[tuple[str, str], ...], dict[str, tuple[str, ...]]]:
    """ori_pqal.json (object keyed by PubMed id). A test_ground_truth.json beside it
    defines the standard 'test' split (500 ids) and 'train' (the rest) and its labels
    are cross-checked against final_decision."""
    entries = _json_object(p, data, "a JSON object keyed by PubMed id (PubMedQA ori_pqal.json); "
                                    "for one question per line use format 'jsonl'")
    if entries and all(isinstance(v, str) for v in entries.values()):
        raise DatasetError(f"{p}: this is an id -> label file (like {PUBMEDQA_TRUTH}); load ori_pqal.json "
                           "beside it, with split='test' for the labelled test ids")
    truth: dict[str, str] = {}
    companions: tuple[tuple[str, str], ...] = ()
    tp = p.parent / PUBMEDQA_TRUTH
    if tp.is_file() and tp != p:
        tdata = _read_bytes(tp)
        raw_truth = _json_object(tp, tdata, "a JSON object mapping PubMed id to yes/no/maybe")
        unknown = [k for k in raw_truth if k not in entries]
        if unknown:
            raise DatasetError(f"{tp}: {len(unknown)} id(s) not in {p.name}, e.g. {unknown[:3]}")
        bad = [k for k, v in raw_truth.items() if not isinstance(v, str)]
        if bad:
            raise DatasetError(f"{tp}: labels must be text, see id(s) {bad[:3]}")
        truth = dict(raw_truth)
        companions = ((str(tp), hashlib.sha256(tdata).hexdigest()),)
    out: list[Question] = []
    for rowno, (pmid, entry) in enumerate(entries.items(), 1):
        report.rows_read += 1
        try:
            out.append(parse_pubmedqa_entry(pmid, entry, truth.get(pmid)))
        except RowError as e:
            report.add(rowno, e.reason, e.field, pmid)
    named: dict[str, tuple[str, ...]] = {}
    if truth:
        loaded = {q.id for q in out}
        named = {"test": tuple(k for k in entries if k in truth and k in loaded),
                 "train": tuple(k for k in entries if k not in truth and k in loaded)}
    return out, companions, named


def _json_object(p: Path, data: bytes, expected: str) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise DatasetError(f"{p}: not valid UTF-8 (byte {e.start})") from e
    except json.JSONDecodeError as e:
        raise DatasetError(f"{p}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from e
    except (ValueError, RecursionError) as e:
        raise DatasetError(f"{p}: invalid JSON ({type(e).__name__})") from e
    if not isinstance(value, dict):
        raise DatasetError(f"{p}: expected {expected}")
    return value
