"""Fuzzed program files and dataset rows: a clear error naming the problem, never a crash.

Hypothesis starts from valid programs (declared, compiled with a bank and embeddings,
Refine) and valid question rows, and breaks them: wrong types, missing or unknown
fields, out-of-range and huge numbers, huge strings, deep nesting, unknown module types,
future schema versions, NaN/Infinity (also the sneaky ``1e999``), unpaired surrogates,
non-UTF-8 bytes. Every broken program must be refused by `load`/`loads` with a
`ProgramFileError` naming the field, and by the CLI (`validate`, `run`) with exit code 2,
one ``error:`` line on stderr, no traceback and no output file. Broken dataset rows go
through `medcompile run` and `medcompile optimize` the same way, and a few of each run
as real subprocesses to see the actual exit code and stderr.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medcompile import Predict, Program, Refine, Retrieve, SelfCoT, Shuffle, Vote
from medcompile.bank import Bank
from medcompile.exemplar import Exemplar
from medcompile.lm.registry import wrap_lm
from medcompile.modules.base import MODULE_TYPES
from medcompile.program.io import ProgramFileError, load, loads
from medcompile.program.schema import MAX_TEXT
from medcompile.prompts.templates import TEMPLATE_VARIABLES
from tests.faults.faultkit import declared_program, dev_set, eval_set, oracle, train_set, write_jsonl

REPO = Path(__file__).resolve().parents[2]
FUZZ = settings(max_examples=int(os.environ.get("MEDCOMPILE_FUZZ_EXAMPLES", "150")), deadline=None,
                derandomize=True, database=None, suppress_health_check=list(HealthCheck))
TRIED: Counter[str] = Counter()  # bad inputs tried, by kind (printed with pytest -s)


# ---- the valid starting points ---------------------------------------------------------------------------
def _bases() -> dict[str, dict[str, Any]]:
    bank = Bank([Exemplar(q, "Because the findings fit.") for q in train_set()[:3]], {"kind": "wordllama"},
                np.arange(12, dtype=np.float32).reshape(3, 4))
    compiled = Program(Vote(Shuffle(SelfCoT(demos=Retrieve(k=2, strategy="knn", bank=bank, tune=False), tune=False),
                                    n=2, tune=False), Predict(tune=False)),
                       name="compiled", lm={"model": "scripted", "mode": "text", "spec": "scripted"},
                       compile_info={"dev": {"score": 0.5, "n": 8}, "chosen": {"k": 2}}, seed=3)
    refine = Program(Refine(Predict(tune=False), m=2, r=1, tune=False), name="refine")
    out = {"declared": declared_program().to_dict(), "compiled": compiled.to_dict(), "refine": refine.to_dict()}
    for name, d in out.items():
        loads(json.dumps(d), where=name)  # really valid
    return out


BASES = _bases()
#: Where anything goes (free-form metadata): only portability is checked there.
OPEN = ("compile", "lm", "embedder", "meta")
REQUIRED = {"schema", "schema_version", "name", "signature", "templates", "graph", "banks", "seed", "inputs",
            "outputs", "instruction", "type", "cot", "temperature", "max_tokens", "demos", "k", "strategy", "bank",
            "n", "inner", "members", "m", "r", "id", "question", "options", "answer", "items", "embedder",
            "encoding", "shape", "sha256", "data", "model", "mode", "kind"} | set(TEMPLATE_VARIABLES)
BOUNDED_INT = {"seed": (-1, 2**31), "k": (-1, 65), "n": (0, 65), "m": (0, 33), "r": (0, 33),
               "max_tokens": (0, 32769)}
MODULE_NAMES = ["os.system", "__import__", "subprocess.Popen", "builtins.eval", "Module", "predict", "PREDICT",
                "Predict ", "", "medcompile.lm.registry.make_lm", "pickle.loads", "SelfCoT\x00", "Vote.__init__"]
Path_ = tuple[Any, ...]


def walk(node: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, (*path, i))


def is_open(path: Path_) -> bool:
    """Under free-form metadata (the lm section's model/mode and embedder.kind are fixed)."""
    for i, k in enumerate(path):
        if k in OPEN and not (k == "lm" and i == 0 and path[1:] in ((), ("model",), ("mode",))) \
                and not (k == "embedder" and path[i + 1:] in ((), ("kind",))) \
                and not (k in ("compile", "meta") and path[i + 1:] == ()):
            return True
        if k == "tune" and len(path) > i + 2:  # tune choice lists hold bool | number | text
            return True
    return False


def get_parent(doc: Any, path: Path_) -> Any:
    for k in path[:-1]:
        doc = doc[k]
    return doc


def kind_of(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return {str: "text", list: "list", dict: "object", type(None): "null"}[type(v)]


SAMPLES = {"text": "x", "number": 7, "bool": True, "list": [1, "a"], "object": {"a": 1}}


def named(path: Path_) -> str:
    """The field name a message should mention: the last text key of the path."""
    return next((str(k) for k in reversed(path) if isinstance(k, str)), "")


# ---- program mutations: each returns (text or bytes, field the error should name or None) ----------------
def mutate(draw: Callable, doc: dict[str, Any]) -> tuple[str, str | bytes, str | None]:
    kind = draw(st.sampled_from(["wrong_type", "missing", "unknown_field", "out_of_range", "huge_string",
                                 "deep_modules", "deep_json", "module_type", "future_version", "bad_version",
                                 "nan_inf", "surrogate", "non_utf8", "not_an_object"]))
    nodes = [(p, v) for p, v in walk(doc) if p]

    def pick(cands: list[tuple[Path_, Any]]) -> tuple[Path_, Any]:
        return cands[draw(st.integers(0, len(cands) - 1))]

    if kind == "wrong_type":
        path, v = pick([(p, v) for p, v in nodes if not is_open(p) and v is not None])
        new = draw(st.sampled_from(sorted(k for k in SAMPLES if k != kind_of(v))))
        get_parent(doc, path)[path[-1]] = copy.deepcopy(SAMPLES[new])
        return kind, json.dumps(doc), named(path)
    if kind == "missing":
        path, _ = pick([(p, v) for p, v in nodes if isinstance(p[-1], str) and p[-1] in REQUIRED
                        and not is_open(p) and p[-2:-1] not in (("options",), ("banks",))])
        del get_parent(doc, path)[path[-1]]
        return kind, json.dumps(doc), named(path)
    if kind == "unknown_field":
        path, v = pick([(p, v) for p, v in [((), doc)] + nodes if isinstance(v, dict) and not is_open((*p, "x"))
                        and p[-1:] not in (("options",),)])
        key = draw(st.sampled_from(["evil", "__class__", "__proto__", "type_", "Schema", "x" * 70]))
        v[key] = 1
        return kind, json.dumps(doc), None
    if kind == "out_of_range":
        cands = [(p, v) for p, v in nodes if not is_open(p) and
                 ((p[-1] in BOUNDED_INT and isinstance(v, int)) or p[-1] == "temperature" or p[-2:-1] == ("shape",))]
        path, _ = pick(cands)
        last = path[-1]
        if last == "temperature":
            new: Any = draw(st.sampled_from([-0.1, 2.01, 1e308, -1e308]))
        elif isinstance(last, int):  # embeddings shape
            new = draw(st.sampled_from([-1, 0, 10**100, 2**62]))
        else:
            lo, hi = BOUNDED_INT[last]
            new = draw(st.sampled_from([lo, hi, -(10**30), 10**100, 2**63]))
        get_parent(doc, path)[last] = new
        return kind, json.dumps(doc), None if isinstance(last, int) else named(path)
    if kind == "huge_string":
        path, _ = pick([(p, v) for p, v in nodes if isinstance(v, str) and not is_open(p)])
        get_parent(doc, path)[path[-1]] = draw(st.sampled_from(["A", "é", "{{question}}"])) * (MAX_TEXT + 1)
        return kind, json.dumps(doc), None
    if kind == "deep_modules":
        depth = draw(st.integers(25, 400))
        g = doc["graph"]
        for _ in range(depth):
            g = {"type": "Vote", "members": [g]}
        doc["graph"] = g
        return kind, json.dumps(doc), None
    if kind == "deep_json":
        depth = draw(st.sampled_from([150, 2_000, 200_000]))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        path, _ = pick(nodes)  # anywhere, open sections included
        get_parent(doc, path)[path[-1]] = "@@DEEP@@"
        return kind, json.dumps(doc).replace('"@@DEEP@@"', opener * depth + "1" + closer * depth), None
    if kind == "module_type":
        path, _ = pick([(p, v) for p, v in nodes if p[-1] == "type" and isinstance(v, str)
                        and v in ("Predict", "SelfCoT", "Retrieve", "Shuffle", "Vote", "Refine")])
        get_parent(doc, path)[path[-1]] = draw(st.sampled_from(MODULE_NAMES) | st.text(max_size=12).filter(lambda t: t not in MODULE_TYPES))
        return kind, json.dumps(doc), None
    if kind == "future_version":
        doc["schema_version"] = draw(st.sampled_from([3, 99, 10**6, 10**100]))
        return kind, json.dumps(doc), "schema_version"
    if kind == "bad_version":
        doc["schema_version"] = draw(st.sampled_from([0, -1, "1", 1.0, True, None, [1], {"v": 1}]))
        return kind, json.dumps(doc), "schema_version"
    if kind == "nan_inf":
        path, _ = pick([(p, v) for p, v in nodes if kind_of(v) in ("number", "text", "bool", "null")]
                       + [(("compile", "x"), None), (("lm", "x"), None)])
        if path[0] in ("compile", "lm") and doc.get(path[0]) is None:
            doc[path[0]] = {"model": "m", "mode": "text"} if path[0] == "lm" else {}
        get_parent(doc, path)[path[-1]] = "@@NUM@@"
        token = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E400"]))
        return kind, json.dumps(doc).replace('"@@NUM@@"', token), None
    if kind == "surrogate":
        path, _ = pick([(p, v) for p, v in nodes if isinstance(v, str)] + [(("compile", "note"), None)])
        if path[0] == "compile" and doc.get("compile") is None:
            doc["compile"] = {}
        get_parent(doc, path)[path[-1]] = "@@SUR@@"
        sur = draw(st.sampled_from(["\\ud800", "\\udc80", "ok \\udfff end", "\\ud83d"]))
        return kind, json.dumps(doc).replace("@@SUR@@", sur), None
    if kind == "non_utf8":
        raw = json.dumps(doc, ensure_ascii=False).encode("utf-8")
        at = draw(st.integers(0, len(raw)))
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80", b"\xf8\x88\x80\x80\x80",
                                    b"\xe2\x82"]))
        return kind, raw[:at] + bad + raw[at:], None
    value = draw(st.sampled_from(["[]", "null", "1", '"program"', "[{\"schema\": \"medcompile.program\"}]", "",
                                  "{\"schema\": \"medcompile.program\", \"schema_version\": 1}"]))
    return kind, value, None


@st.composite
def bad_programs(draw: Callable) -> tuple[str, str | bytes, str | None]:
    doc = copy.deepcopy(BASES[draw(st.sampled_from(sorted(BASES)))])
    return mutate(draw, doc)


@contextlib.contextmanager
def scripted_model() -> Iterator[None]:
    """`medcompile run/eval` get the scripted model instead of the one a program names."""
    lm = wrap_lm(oracle(), cache=False, max_retries=0)
    real = Program.resolve_lm

    def resolve_lm(self: Program, spec: Any = None) -> Any:
        return lm if spec is None or isinstance(spec, str) else real(self, spec)

    with mock.patch("medcompile.program.program.Program.resolve_lm", resolve_lm), \
            mock.patch("medcompile.lm.registry.make_lm", lambda *a, **k: lm):
        yield


def cli(*argv: str) -> tuple[int, str, str]:
    """Run the CLI in this process: (exit code, stdout, stderr)."""
    from medcompile.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(argv))
        except SystemExit as exc:
            rc = int(exc.code or 0)
    return rc, out.getvalue(), err.getvalue()


def assert_clean_refusal(rc: int, err: str, *, names: str | None = None) -> None:
    assert rc == 2, err
    assert err.startswith("error: ") or "\nerror: " in err or err.lstrip().startswith("error"), err
    assert "Traceback" not in err
    if names is not None:
        assert names in err, (names, err[:500])


# ---- program files ----------------------------------------------------------------------------------------
@FUZZ
@given(bad=bad_programs())
def test_broken_program_files_are_refused_with_a_named_problem(bad: tuple[str, str | bytes, str | None]) -> None:
    kind, data, field = bad
    TRIED[f"program:{kind}"] += 1
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "prog.json"
        path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
        with pytest.raises(ProgramFileError) as ei:
            load(path)
        msg = str(ei.value)
        assert msg.startswith(str(path)) and len(msg.splitlines()) <= 12
        if field is not None:
            assert field in msg, (kind, field, msg)
        if kind == "future_version":
            assert "newer medcompile" in msg and "Upgrade" in msg
        if kind == "non_utf8":
            assert "not UTF-8" in msg
        if isinstance(data, str):  # loads() agrees with load()
            with pytest.raises(ProgramFileError):
                loads(data)
        # the CLI: `validate` and `run` refuse it with one line and exit code 2, writing nothing
        rc, out, err = cli("validate", str(path))
        assert_clean_refusal(rc, err)
        assert out == ""
        if TRIED[f"program:{kind}"] <= 3:  # `run` takes the same path; a few suffice
            qs = write_jsonl(Path(d) / "q.jsonl", eval_set()[:2])
            with scripted_model():
                rc, out, err = cli("run", str(path), "--input", str(qs), "--output", str(Path(d) / "a.jsonl"), "-q")
            assert_clean_refusal(rc, err)
            assert not (Path(d) / "a.jsonl").exists() and not (Path(d) / "a.jsonl.partial").exists()


def test_every_mutation_kind_was_tried() -> None:
    """The fuzzer above really reached every kind of breakage (guards against a strategy
    that silently stops producing some of them)."""
    if not TRIED:
        pytest.skip("run together with the fuzz test")
    kinds = {k.split(":", 1)[1] for k in TRIED if k.startswith("program:")}
    assert kinds == {"wrong_type", "missing", "unknown_field", "out_of_range", "huge_string", "deep_modules",
                     "deep_json", "module_type", "future_version", "bad_version", "nan_inf", "surrogate",
                     "non_utf8", "not_an_object"}
    print("\nbad program files tried:", dict(sorted((k, v) for k, v in TRIED.items() if k.startswith("program:"))))


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


# ---- the real processes ---------------------------------------------------------------------------------------
def test_real_cli_processes_exit_2_with_one_line_and_no_output(tmp_path: Path) -> None:
    """The in-process checks above, once each in a real `medcompile` process."""
    exe = Path(sys.executable).with_name("medcompile")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "medcompile.cli.main"]
    good = tmp_path / "good.json"
    Program(Predict(tune=False), name="zs").save(str(good))
    doc = json.loads(good.read_text(encoding="utf-8"))
    doc["compile"] = {"score": "@@"}
    (tmp_path / "inf.json").write_text(json.dumps(doc).replace('"@@"', "1e999"), encoding="utf-8")
    doc = json.loads(good.read_text(encoding="utf-8"))
    doc["graph"]["type"] = "os.system"
    (tmp_path / "evil.json").write_text(json.dumps(doc), encoding="utf-8")
    (tmp_path / "latin1.json").write_bytes(good.read_bytes().replace(b'"zs"', b'"z\xe9"'))
    rows = [json.dumps(q.to_dict()) for q in eval_set()[:3]]
    rows[1] = rows[1].replace('"options"', '"opts"')
    (tmp_path / "bad.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    write_jsonl(tmp_path / "train.jsonl", train_set())
    declared_program().save(str(tmp_path / "declared.json"))
    jobs = {
        "validate-inf": (["validate", "inf.json"], "not portable JSON"),
        "run-evil": (["run", "evil.json", "--input", "bad.jsonl", "--output", "a.jsonl"], "os.system"),
        "run-latin1": (["run", "latin1.json", "--input", "bad.jsonl", "--output", "a.jsonl"], "not UTF-8"),
        "run-bad-rows": (["run", "good.json", "--input", "bad.jsonl", "--output", "a.jsonl"], "line 2"),
        "optimize-bad-dev": (["optimize", "declared.json", "--train", "train.jsonl", "--dev", "bad.jsonl",
                              "--out", "out.json"], "row 2"),
    }
    env = {**os.environ, "MEDCOMPILE_CACHE_DIR": str(tmp_path / "cache")}
    procs = {name: subprocess.Popen(cmd + argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for name, (argv, _) in jobs.items()}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert_clean_refusal(proc.returncode, err, names=jobs[name][1])
        assert out == "", name
    left = sorted(p.name for p in tmp_path.iterdir())
    assert not [n for n in left if n.startswith(("a.jsonl", "out.json"))], left
