"""Row formats: how one raw record (a JSON object or a CSV row) becomes a `Question`.

Each parser either returns a valid `Question` or raises `RowError` naming the field
and the reason; the loader turns that into a `RowProblem` with the row number. No
parser repairs data: an answer that cannot be matched to exactly one option is an
error, never a guess (an integer answer, for instance, needs ``answer_as=index0`` or
``index1`` because 0- and 1-based conventions both exist in the wild).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields as dc_fields
from pathlib import Path
from typing import Any, Literal, Mapping

from ..question import Question, QuestionError
from .validate import DatasetError, RowError

FORMATS: tuple[str, ...] = ("auto", "medqa", "medmcqa", "mmlu", "pubmedqa", "jsonl", "csv")
#: The MedAgentsBench JSONL family shared by the MedQA, MedMCQA and MMLU files.
MEDAGENTS_FORMATS: tuple[str, ...] = ("medqa", "medmcqa", "mmlu")
PUBMEDQA_OPTIONS: dict[str, str] = {"yes": "yes", "no": "no", "maybe": "maybe"}
AnswerAs = Literal["auto", "key", "text", "index0", "index1"]
ANSWER_AS: tuple[str, ...] = ("auto", "key", "text", "index0", "index1")


@dataclass(frozen=True)
class FieldMap:
    """Which field of a generic JSONL/CSV row holds what.

    `options` is either one field (an object key->text, or a list of texts lettered
    A, B, ...) or a tuple of columns, one option each (lettered A, B, ... in order; an
    answer naming a column maps to that column's letter). `id` falls back to the
    0-based row index when the row has no such field. ``answer=None`` loads unlabelled
    questions (for prediction only).
    """

    question: str = "question"
    options: str | tuple[str, ...] = "options"
    answer: str | None = "answer"
    answer_as: AnswerAs = "auto"
    id: str = "id"
    subject: str | None = "subject"
    context: str | None = "context"

    def __post_init__(self) -> None:
        if self.answer_as not in ANSWER_AS:
            raise DatasetError(f"field map: answer_as must be one of {list(ANSWER_AS)}, got {self.answer_as!r}")
        if isinstance(self.options, tuple) and len(self.options) < 2:
            raise DatasetError(f"field map: need at least 2 option columns, got {list(self.options)}")

    def columns(self) -> list[str]:
        """Fields a CSV header must contain (optional ones excluded)."""
        cols = [self.question]
        cols += list(self.options) if isinstance(self.options, tuple) else [self.options]
        if self.answer is not None:
            cols.append(self.answer)
        return cols


def parse_field_map(spec: str) -> FieldMap:
    """Parse the CLI form ``"question=stem,options=A|B|C|D,answer=label,id=qid"``.

    Unmentioned keys keep their defaults; ``answer=`` (empty) means unlabelled data.
    """
    allowed = [f.name for f in dc_fields(FieldMap)]
    kwargs: dict[str, Any] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if "=" not in part:
            raise DatasetError(f"field map {spec!r}: expected key=value, got {part!r} (keys: {', '.join(allowed)})")
        key, value = (s.strip() for s in part.split("=", 1))
        if key not in allowed:
            raise DatasetError(f"field map {spec!r}: unknown key {key!r} (keys: {', '.join(allowed)})")
        if key in kwargs:
            raise DatasetError(f"field map {spec!r}: key {key!r} given twice")
        if key == "options" and "|" in value:
            cols = tuple(c.strip() for c in value.split("|"))
            if any(not c for c in cols):
                raise DatasetError(f"field map {spec!r}: empty option column name in {value!r}")
            kwargs[key] = cols
        elif key in ("answer", "subject", "context") and value == "":
            kwargs[key] = None
        elif value == "":
            raise DatasetError(f"field map {spec!r}: {key!r} needs a field name")
        else:
            kwargs[key] = value
    return FieldMap(**kwargs)


def detect_format(path: Path) -> str:
    """Guess the format from the file name and first record. Content decides the
    MedAgents family (``answer_idx`` + an ``options`` object); names break ties."""
    suffix = path.suffix.lower()
    name = str(path).lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix == ".json":
        return "pubmedqa"  # the only single-JSON-document format; the loader checks its shape
    first = _first_json_record(path)
    if isinstance(first, dict) and "answer_idx" in first and isinstance(first.get("options"), dict):
        if "subject" in first or "mmlu" in name:
            return "mmlu"
        if "meta_info" in first or "medqa" in name:
            return "medqa"
        return "medmcqa"
    return "jsonl"


def _first_json_record(path: Path) -> Any:
    try:
        with path.open("rb") as f:
            for raw in f:
                if raw.strip():
                    try:
                        return json.loads(raw)
                    except (ValueError, RecursionError):  # RecursionError: nested too deeply
                        return None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read: {e}") from e
    return None


# ----------------------------------------------------------------------------- helpers

def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _text(row: Mapping[str, Any], name: str, what: str) -> str:
    """A required non-empty text field."""
    if name not in row or row[name] is None:
        raise RowError(f"missing {what} (field {name!r})", name)
    value = row[name]
    if not isinstance(value, str):
        raise RowError(f"{what} (field {name!r}) must be text, got {_kind(value)}", name)
    if not value.strip():
        raise RowError(f"empty {what} (field {name!r})", name)
    return value


def _optional_text(row: Mapping[str, Any], name: str | None, what: str) -> str | None:
    """An optional text field; a list of strings (e.g. abstract paragraphs) is joined."""
    if name is None or not _present(row.get(name)):
        return None
    value = row[name]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n\n".join(value)
    if not isinstance(value, str):
        raise RowError(f"{what} (field {name!r}) must be text, got {_kind(value)}", name)
    return value


def _option_text(key: str, value: Any, name: str) -> str:
    # Integers are accepted (str() is lossless); floats are not, since JSON parsing has
    # already lost their original spelling ("0.10" -> 0.1).
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise RowError(f"option {key!r} (field {name!r}) must be text, got {_kind(value)}", name)
    if not value.strip():
        raise RowError(f"option {key!r} (field {name!r}) is empty", name)
    return value


def _options_value(value: Any, name: str) -> dict[str, str]:
    if value is None:
        raise RowError(f"missing options (field {name!r})", name)
    if isinstance(value, list):
        if len(value) > 26:
            raise RowError(f"too many options ({len(value)}) in field {name!r}", name)
        value = {chr(ord("A") + i): v for i, v in enumerate(value)}
    if not isinstance(value, dict):
        raise RowError(f"options (field {name!r}) must be an object or a list, got {_kind(value)}", name)
    opts = {}
    for key, text in value.items():
        if not str(key).strip():
            raise RowError(f"empty option key in field {name!r}", name)
        opts[str(key)] = _option_text(str(key), text, name)
    _check_count(opts, name)
    return opts


def _options_columns(row: Mapping[str, Any], cols: tuple[str, ...]) -> tuple[dict[str, str], dict[str, str]]:
    """Options from one column each; returns (options, column name -> key). Trailing
    empty columns are not options (a 4-option row in a 5-column file); an empty column
    between filled ones is an error."""
    filled = [_present(row.get(c)) for c in cols]
    last = max((i for i, f in enumerate(filled) if f), default=-1)
    opts: dict[str, str] = {}
    col_key: dict[str, str] = {}
    for i, col in enumerate(cols[: last + 1]):
        key = chr(ord("A") + i)
        if not filled[i]:
            raise RowError(f"option column {col!r} is empty but a later option column is filled", col)
        opts[key] = _option_text(key, row[col], col)
        col_key[col] = key
    _check_count(opts, "|".join(cols))
    return opts, col_key


def _check_count(opts: Mapping[str, str], name: str) -> None:
    if len(opts) < 2:
        raise RowError(f"needs at least 2 options, got {len(opts)} (field {name!r})", name)


def resolve_answer(value: Any, options: Mapping[str, str], name: str, answer_as: str = "auto",
                   col_key: Mapping[str, str] | None = None) -> str:
    """Map a raw answer (option key, column name, option text or index) to an option key."""
    if not _present(value):
        raise RowError(f"missing answer (field {name!r})", name)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RowError(f"answer (field {name!r}) must be text or an integer, got {_kind(value)}", name)
    keys = list(options)
    if answer_as in ("index0", "index1"):
        base = 0 if answer_as == "index0" else 1
        try:
            i = int(value) - base
        except ValueError:
            raise RowError(f"answer {value!r} (field {name!r}) is not an integer index", name) from None
        if not 0 <= i < len(keys):
            raise RowError(f"answer index {value!r} ({answer_as}) out of range for {len(keys)} options", name)
        return keys[i]
    s = str(value)
    if answer_as in ("auto", "key"):
        for cand in (s, s.strip()):
            if cand in options:
                return cand
            if col_key and cand in col_key:
                return col_key[cand]
    if answer_as in ("auto", "text"):
        hits = [k for k, t in options.items() if t.strip() == s.strip()]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise RowError(f"answer text {s!r} matches several options {hits}", name)
    hint = ""
    if answer_as == "auto" and s.strip().lstrip("-").isdigit():
        hint = "; if it is an index, set answer_as=index0 or answer_as=index1 in the field map"
    raise RowError(f"answer {_short(s)!r} (field {name!r}) is not among options {keys}{hint}", name)


def _short(s: str, n: int = 60) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


def _id_value(row: Mapping[str, Any], name: str, index: int) -> str:
    if name not in row or row[name] is None:
        return str(index)
    value = row[name]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RowError(f"id (field {name!r}) must be text or an integer, got {_kind(value)}", name)
    if not str(value).strip():
        raise RowError(f"empty id (field {name!r})", name)
    return str(value)


def _question(**kw: Any) -> Question:
    try:
        return Question(**kw)
    except QuestionError as e:  # pre-checks should catch these; keep the reason if not
        raise RowError(str(e)) from e


# ----------------------------------------------------------------------------- parsers

def parse_medagents_row(row: Any, index: int, fmt: str) -> Question:
    """MedQA / MedMCQA / MMLU rows from the MedAgentsBench files: ``options`` {A..},
    ``answer_idx`` (the key) and ``answer`` (the text; must agree when both are given).
    id = ``realidx`` if present, else the 0-based row index (which equals realidx in
    medqa_us4, so medqa_us5 rows get the same ids). subject = ``subject`` or, for
    MedQA, ``meta_info`` (step1 / step2&3)."""
    if not isinstance(row, dict):
        raise RowError(f"row must be a JSON object, got {_kind(row)}")
    if "options" not in row and "opa" in row:
        raise RowError("no 'options' object: original MedMCQA rows (opa..opd, cop) load with "
                       "format='jsonl' and fields 'options=opa|opb|opc|opd,answer=cop,answer_as=index0'"
                       " (or index1, per your copy)", "options")
    question = _text(row, "question", "question text")
    options = _options_value(row.get("options"), "options")
    if _present(row.get("answer_idx")):
        answer = resolve_answer(row["answer_idx"], options, "answer_idx", "key")
        text = row.get("answer")
        if isinstance(text, str) and text.strip() and text.strip() != options[answer].strip():
            raise RowError(f"answer_idx {answer!r} is {_short(options[answer])!r} but field 'answer' says "
                           f"{_short(text)!r}", "answer")
    elif "answer" in row and row["answer"] is not None:
        answer = resolve_answer(row["answer"], options, "answer", "auto")
    else:
        raise RowError("missing answer (no 'answer_idx' or 'answer' field)", "answer_idx")
    subject = _optional_text(row, "subject", "subject")
    if subject is None and fmt == "medqa":
        subject = _optional_text(row, "meta_info", "meta_info")
    return _question(id=_id_value(row, "realidx", index), question=question, options=options,
                     answer=answer, subject=subject)


def parse_generic_row(row: Any, index: int, fields: FieldMap) -> Question:
    """A JSONL object or CSV row read through a `FieldMap`."""
    if not isinstance(row, dict):
        raise RowError(f"row must be a JSON object, got {_kind(row)}")
    question = _text(row, fields.question, "question text")
    col_key: dict[str, str] | None = None
    if isinstance(fields.options, tuple):
        options, col_key = _options_columns(row, fields.options)
    else:
        value = row.get(fields.options)
        if isinstance(value, str):  # a JSON-encoded object/list in a CSV cell
            try:
                value = json.loads(value)
            except ValueError:
                raise RowError(f"options (field {fields.options!r}) is text, not a JSON object or list; "
                               "for one column per option use options=A|B|C|D", fields.options) from None
        options = _options_value(value, fields.options)
    answer = None
    if fields.answer is not None:
        answer = resolve_answer(row.get(fields.answer), options, fields.answer, fields.answer_as, col_key)
    return _question(id=_id_value(row, fields.id, index), question=question, options=options, answer=answer,
                     context=_optional_text(row, fields.context, "context"),
                     subject=_optional_text(row, fields.subject, "subject"))


def parse_pubmedqa_entry(pmid: str, entry: Any, truth: str | None = None) -> Question:
    """One PubMedQA PQA-L entry: yes/no/maybe options, context = CONTEXTS joined by blank
    lines, answer = final_decision (must agree with the ground-truth file if given)."""
    if not pmid.strip():
        raise RowError("empty PubMed id (object key)", "id")
    if not isinstance(entry, dict):
        raise RowError(f"entry must be a JSON object, got {_kind(entry)}")
    question = _text(entry, "QUESTION", "question text")
    contexts = entry.get("CONTEXTS")
    if contexts is not None and not (isinstance(contexts, list) and all(isinstance(c, str) for c in contexts)):
        raise RowError(f"CONTEXTS must be a list of texts, got {_kind(contexts)}", "CONTEXTS")
    decision = entry.get("final_decision")
    if not _present(decision):
        raise RowError("missing answer (field 'final_decision')", "final_decision")
    if not isinstance(decision, str) or decision not in PUBMEDQA_OPTIONS:
        raise RowError(f"final_decision {decision!r} is not among options {list(PUBMEDQA_OPTIONS)}",
                       "final_decision")
    if truth is not None and truth != decision:
        raise RowError(f"final_decision {decision!r} disagrees with test_ground_truth.json ({truth!r})",
                       "final_decision")
    context = "\n\n".join(contexts) if contexts else None
    return _question(id=pmid, question=question, options=dict(PUBMEDQA_OPTIONS), answer=decision,
                     context=context)
