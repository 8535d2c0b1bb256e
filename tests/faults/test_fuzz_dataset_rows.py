"""Fuzzed dataset rows: a clear error naming the row, never a crash, never an output file.

Hypothesis starts from valid question rows and breaks them (not an object, truncated,
non-UTF-8, missing or mistyped fields, blank or too few/many options, an answer that is no
option, duplicate ids, deep nesting, NaN/Infinity, an empty file). They go through
`medcompile run` and `medcompile optimize`: exit code 2, one ``error:`` line naming the row
or line, no traceback, and nothing written.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medcompile import Predict, Program
from tests.faults.faultkit import declared_program, dev_set, eval_set, train_set, write_jsonl
from tests.faults.fuzzkit import FUZZ, TRIED, assert_clean_refusal, cli, scripted_model


# ---- dataset rows -------------------------------------------------------------------------------------------
ROW_BREAKS = ["not_object", "truncated", "non_utf8", "missing_question", "missing_options", "missing_answer",
              "question_type", "options_type", "option_value", "blank_option", "one_option", "too_many_options",
              "blank_question", "answer_not_option", "answer_type", "id_type", "duplicate_id", "context_type",
              "bad_meta_unlabelled", "deep", "nan_question", "empty_file"]
#: What `medcompile run` may still accept: it reads unlabelled canonical question JSONL too, whose
#: rules are looser than a labelled dataset's (no answer needed, any id, up to any number of options).
RUN_LENIENT = {"missing_answer", "id_type", "duplicate_id", "context_type", "blank_option", "too_many_options",
               "empty_file"}


@st.composite
def bad_rows(draw: Callable) -> tuple[str, bytes, int | None, int]:
    """(kind, file bytes, 1-based line of the bad row or None, number of rows)."""
    rows = [q.to_dict() for q in eval_set()[: draw(st.integers(2, 6))]]
    i = draw(st.integers(0, len(rows) - 1))
    row = rows[i]
    kind = draw(st.sampled_from(ROW_BREAKS))
    line: bytes | None = None
    if kind == "not_object":
        line = draw(st.sampled_from([b"[1, 2]", b'"question"', b"1", b"null", b"true"]))
    elif kind == "truncated":
        full = json.dumps(row).encode()
        line = full[: draw(st.integers(1, len(full) - 1))]
    elif kind == "non_utf8":
        full = json.dumps(row["question"]).encode()
        at = draw(st.integers(1, len(full) - 1))
        row["question"] = "@@Q@@"
        line = json.dumps(row).encode().replace(b'"@@Q@@"', full[:at] + draw(st.sampled_from(
            [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"])) + full[at:])
    elif kind.startswith("missing_"):
        del row[kind.split("_", 1)[1]]
    elif kind == "question_type":
        row["question"] = draw(st.sampled_from([1, 2.5, True, ["a"], {"q": "a"}]))
    elif kind == "options_type":
        row["options"] = draw(st.sampled_from(["not options", 4, True, None]))
    elif kind == "option_value":
        row["options"]["B"] = draw(st.sampled_from([1.5, ["x"], {"t": "x"}, True, None]))
    elif kind == "blank_option":
        row["options"]["B"] = draw(st.sampled_from(["", "  "]))
    elif kind == "one_option":
        row["options"] = {"A": "only"}
        row["answer"] = "A"
    elif kind == "too_many_options":
        row["options"] = [f"o{j}" for j in range(27)]
        row["answer"] = "A"
    elif kind == "blank_question":
        row["question"] = draw(st.sampled_from(["", "   ", "\n\t"]))
    elif kind == "answer_not_option":
        row["answer"] = draw(st.sampled_from(["Z", "E", "a", "Option A", "0", "-1"]))
    elif kind == "answer_type":
        row["answer"] = draw(st.sampled_from([1.0, ["A"], {"k": "A"}, True]))
    elif kind == "id_type":
        row["id"] = draw(st.sampled_from([["x"], {"i": 1}, 1.5, True, "  "]))
    elif kind == "duplicate_id":
        if i == 0:
            i = 1
            row = rows[1]
        row["id"] = rows[0]["id"]
    elif kind == "context_type":
        row["context"] = draw(st.sampled_from([1, {"c": "x"}, [1, 2], True]))
    elif kind == "bad_meta_unlabelled":
        del row["answer"]
        row["meta"] = draw(st.sampled_from([5, "text", ["a"], True]))
    elif kind == "deep":
        row["question"] = "@@DEEP@@"
        depth = draw(st.sampled_from([50, 5_000, 200_000]))
        line = json.dumps(row).encode().replace(b'"@@DEEP@@"', b"[" * depth + b"]" * depth)
    elif kind == "nan_question":
        row["question"] = "@@N@@"
        line = json.dumps(row).encode().replace(b'"@@N@@"', draw(st.sampled_from([b"NaN", b"Infinity", b"1e999"])))
    else:  # empty_file
        return kind, draw(st.sampled_from([b"", b"\n\n", b"   \n"])), None, 0
    lines = [json.dumps(r).encode() for r in rows]
    lines[i] = line if line is not None else json.dumps(row).encode()
    return kind, b"\n".join(lines) + b"\n", i + 1, len(rows)


def _check_row_error(kind: str, err: str, lineno: int | None) -> None:
    if kind == "empty_file":
        assert "no valid rows" in err, err
    elif kind == "non_utf8":
        assert "UTF-8" in err, err
    else:  # the dataset loader counts rows, the plain question reader lines: the same numbers
        assert f"row {lineno}" in err or f"line {lineno}" in err, (kind, lineno, err[:400])


@FUZZ
@given(bad=bad_rows())
def test_bad_question_rows_make_run_fail_cleanly_without_output(bad: tuple[str, bytes, int | None, int]) -> None:
    kind, data, lineno, n_rows = bad
    TRIED[f"run-rows:{kind}"] += 1
    with tempfile.TemporaryDirectory() as d:
        prog = Path(d) / "p.json"
        Program(Predict(tune=False), name="zs").save(str(prog))
        src = Path(d) / "q.jsonl"
        src.write_bytes(data)
        out = Path(d) / "answers.jsonl"
        with scripted_model():
            rc, stdout, err = cli("run", str(prog), "--input", str(src), "--output", str(out), "-q")
        assert not Path(str(out) + ".partial").exists() and stdout == ""
        if rc == 0:  # only what unlabelled question files may hold, and then every answer is written
            assert kind in RUN_LENIENT, (kind, err)
            assert len(out.read_text(encoding="utf-8").splitlines()) == n_rows
            return
        assert_clean_refusal(rc, err)
        _check_row_error(kind, err, lineno)
        assert not out.exists()


@settings(FUZZ, max_examples=max(10, FUZZ.max_examples // 3))
@given(bad=bad_rows(), which=st.sampled_from(["--train", "--dev"]))
def test_bad_dataset_makes_optimize_fail_cleanly_without_output(bad: tuple[str, bytes, int | None, int],
                                                                which: str) -> None:
    kind, data, lineno, _ = bad
    TRIED[f"optimize-rows:{kind}"] += 1
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        declared_program().save(str(root / "declared.json"))
        write_jsonl(root / "train.jsonl", train_set())
        write_jsonl(root / "dev.jsonl", dev_set())
        (root / "bad.jsonl").write_bytes(data)
        args = {"--train": str(root / "train.jsonl"), "--dev": str(root / "dev.jsonl"), which: str(root / "bad.jsonl")}
        with scripted_model(), mock.patch.dict(os.environ, {"MEDCOMPILE_CACHE_DIR": str(root / "cache")}):
            rc, stdout, err = cli("optimize", str(root / "declared.json"), "--train", args["--train"], "--dev",
                                  args["--dev"], "--out", str(root / "out.json"), "--budget", "50", "-q")
        assert_clean_refusal(rc, err)
        _check_row_error(kind, err, lineno)
        written = sorted(p.name for p in root.iterdir()) if root.exists() else []
        assert written == ["bad.jsonl", "declared.json", "dev.jsonl", "train.jsonl"], written  # no study, no output


def test_rows_tried_summary() -> None:
    if not any(k.startswith("run-rows:") for k in TRIED):
        pytest.skip("run together with the fuzz tests")
    kinds = {k.split(":", 1)[1] for k in TRIED if k.startswith("run-rows:")}
    assert kinds == set(ROW_BREAKS)
    print("\nbad dataset rows tried:", dict(sorted((k, v) for k, v in TRIED.items() if "rows" in k)),
          "total", sum(TRIED.values()))
