"""Fuzzing the loaders: arbitrary rows either load as valid questions or raise
`DatasetError` naming the problem. Any other exception is a loader bug."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medcompile.data import Dataset, DatasetError, FieldMap, load_dataset

# MEDCOMPILE_FUZZ_EXAMPLES raises the budget for a longer hunt (default keeps the suite fast).
SETTINGS = settings(max_examples=int(os.environ.get("MEDCOMPILE_FUZZ_EXAMPLES", "150")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 10), st.floats(allow_nan=True),
                    st.text(max_size=8), st.sampled_from(["", " ", "A", "B", "yes", "0", "1"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=3), inner, max_size=4)), max_leaves=8)
keys = st.one_of(st.sampled_from(["A", "B", "C", "D", "E"]), st.text(max_size=2))
options = st.one_of(st.dictionaries(keys, st.one_of(st.text(max_size=6), scalars), max_size=5),
                    st.lists(st.one_of(st.text(max_size=6), scalars), max_size=5), json_values)
medqa_rows = st.fixed_dictionaries({}, optional={
    "question": st.one_of(st.text(max_size=12), json_values),
    "options": options,
    "answer_idx": st.one_of(keys, json_values),
    "answer": st.one_of(st.text(max_size=6), json_values),
    "realidx": st.one_of(st.integers(0, 4), st.text(max_size=2), json_values),
    "meta_info": json_values,
    "subject": json_values,
    "context": json_values,
    "id": st.one_of(st.integers(0, 4), json_values),
})
raw_lines = st.text(max_size=20).map(lambda s: s.replace("\n", " ").replace("\r", " "))
lines = st.one_of(medqa_rows.map(json.dumps), json_values.map(json.dumps), raw_lines,
                  medqa_rows.map(lambda r: json.dumps(r)[:-1]))


def _load(content: str | bytes, name: str, **kw: Any) -> Dataset | DatasetError:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
        try:
            return load_dataset(p, **kw)
        except DatasetError as e:
            return e


def _check(result: Dataset | DatasetError, on_error: str) -> None:
    if isinstance(result, DatasetError):
        msg = str(result)
        assert msg.strip()
        if result.report is not None and result.report.problems:
            first = result.report.problems[0]
            assert f"row {first.row}" in msg and first.reason in msg
        return
    r = result.report
    assert r.rows_loaded == len(result) and r.rows_loaded + r.skipped == r.rows_read  # nothing dropped silently
    if on_error == "raise":
        assert r.ok
    assert len(set(result.ids)) == len(result)
    for q in result:
        assert q.question.strip() and len(q.options) >= 2 and q.answer in q.options
        assert all(isinstance(t, str) and t.strip() for t in q.options.values())


@SETTINGS
@given(st.lists(lines, min_size=0, max_size=6), st.sampled_from(["auto", "medqa", "medmcqa", "mmlu", "jsonl"]),
       st.sampled_from(["raise", "skip"]))
def test_random_jsonl_rows_load_or_raise_dataset_error(rows: list[str], fmt: str, on_error: str) -> None:
    result = _load("\n".join(rows) + "\n", "rows.jsonl", format=fmt, on_error=on_error)
    _check(result, on_error)
    if not isinstance(result, DatasetError):
        assert result.report.rows_read == sum(1 for r in rows if r.strip())


@SETTINGS
@given(st.binary(max_size=80), st.sampled_from(["rows.jsonl", "rows.csv", "ori_pqal.json"]))
def test_random_bytes_load_or_raise_dataset_error(data: bytes, name: str) -> None:
    fields = FieldMap(options=("A", "B")) if name.endswith(".csv") else None
    _check(_load(data, name, fields=fields, on_error="skip"), "skip")


cells = st.one_of(st.text(max_size=8), st.sampled_from(["", "A", "B", "C", "1", "x"]))


@SETTINGS
@given(st.lists(st.lists(cells, min_size=0, max_size=8), max_size=5), st.sampled_from(["raise", "skip"]),
       st.sampled_from(["auto", "key", "text", "index0", "index1"]))
def test_random_csv_rows_load_or_raise_dataset_error(rows: list[list[str]], on_error: str, answer_as: str) -> None:
    buf = [["id", "question", "A", "B", "C", "label"]] + rows
    text = "\n".join(",".join(json.dumps(c) if ("," in c or '"' in c or "\n" in c or "\r" in c) else c
                              for c in row) for row in buf)
    fields = FieldMap(options=("A", "B", "C"), answer="label", answer_as=answer_as)  # type: ignore[arg-type]
    _check(_load(text, "rows.csv", fields=fields, on_error=on_error), on_error)


@SETTINGS
@given(st.dictionaries(st.text(max_size=4), st.one_of(json_values, st.fixed_dictionaries({}, optional={
    "QUESTION": st.one_of(st.text(max_size=8), json_values),
    "CONTEXTS": st.one_of(st.lists(st.text(max_size=5), max_size=3), json_values),
    "final_decision": st.one_of(st.sampled_from(["yes", "no", "maybe"]), json_values)})), max_size=5),
    st.sampled_from(["raise", "skip"]))
def test_random_pubmedqa_entries_load_or_raise_dataset_error(entries: dict[str, Any], on_error: str) -> None:
    _check(_load(json.dumps(entries), "ori_pqal.json", on_error=on_error), on_error)


# ----------------------------------------------------------------------------- one known defect

def _valid_row(i: int, n_opts: int) -> dict[str, Any]:
    opts = {chr(65 + k): f"option {k} of {i}" for k in range(n_opts)}
    return {"realidx": i, "question": f"Question {i}?", "options": opts, "answer_idx": "A", "answer": opts["A"]}


def _drop_answer(r: dict) -> str:
    return json.dumps({k: v for k, v in r.items() if k not in ("answer_idx", "answer")})


MUTATIONS: dict[str, tuple[Callable[[dict], str], str]] = {
    "missing answer": (_drop_answer, "missing answer"),
    "answer not among options": (lambda r: json.dumps({**r, "answer_idx": "Z", "answer": None}), "not among options"),
    "empty question": (lambda r: json.dumps({**r, "question": " \t"}), "empty question"),
    "one option": (lambda r: json.dumps({**r, "options": {"A": "only"}, "answer": "only"}), "at least 2 options"),
    "non-object": (lambda r: json.dumps([r]), "not a JSON object"),
    "invalid JSON": (lambda r: json.dumps(r)[:-2], "invalid JSON"),
    "duplicate id": (lambda r: json.dumps({**r, "realidx": 0}), "duplicate id '0'"),
}


@SETTINGS
@given(st.integers(2, 6), st.integers(2, 5), st.data())
def test_one_defect_is_named_with_its_row(n_rows: int, n_opts: int, data: st.DataObject) -> None:
    rows = [json.dumps(_valid_row(i, n_opts)) for i in range(n_rows)]
    assert isinstance(_load("\n".join(rows), "rows.jsonl", format="medqa"), Dataset)
    pos = data.draw(st.integers(1, n_rows - 1))
    name = data.draw(st.sampled_from(sorted(MUTATIONS)))
    mutate, words = MUTATIONS[name]
    rows[pos] = mutate(_valid_row(pos, n_opts))
    result = _load("\n".join(rows), "rows.jsonl", format="medqa")
    assert isinstance(result, DatasetError), name
    assert f"row {pos + 1}" in str(result) and words in str(result) and "1 bad row(s)" in str(result)
    skipped = _load("\n".join(rows), "rows.jsonl", format="medqa", on_error="skip")
    assert isinstance(skipped, Dataset) and len(skipped) == n_rows - 1
    assert [p.row for p in skipped.report.problems] == [pos + 1]
