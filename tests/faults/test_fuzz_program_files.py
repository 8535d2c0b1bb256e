"""Fuzzed program files: a clear error naming the problem, never a crash.

Hypothesis starts from valid programs (declared, compiled with a bank and embeddings,
Refine) and breaks them: wrong types, missing or unknown fields, out-of-range and huge
numbers, huge strings, deep nesting, unknown module types, future schema versions,
NaN/Infinity (also the sneaky ``1e999``), unpaired surrogates, non-UTF-8 bytes. Every broken
program must be refused by `load`/`loads` with a `ProgramFileError` naming the field, and by
the CLI (`validate`, `run`) with exit code 2, one ``error:`` line on stderr, no traceback and
no output file.
"""
from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medcompile import Predict, Program, Refine, Retrieve, SelfCoT, Shuffle, Vote
from medcompile.bank import Bank
from medcompile.exemplar import Exemplar
from medcompile.modules.base import MODULE_TYPES
from medcompile.program.io import ProgramFileError, load, loads
from medcompile.program.schema import MAX_TEXT
from medcompile.prompts.templates import TEMPLATE_VARIABLES
from tests.faults.faultkit import declared_program, eval_set, train_set, write_jsonl
from tests.faults.fuzzkit import FUZZ, TRIED, assert_clean_refusal, cli, scripted_model


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
