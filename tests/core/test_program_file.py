"""The frozen JSON program: runs in a fresh process that never imports the code that
declared it, gives the same answers, and loading it can never run code."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from medcompile import Predict, Program, Retrieve, Shuffle, Vote, load
from medcompile.bank import Bank
from medcompile.exemplar import Exemplar
from medcompile.program.io import ProgramFileError, loads
from medcompile.program.schema import json_schema
from tests.conftest import REPO

FRESH = r"""
import json, sys
import medcompile
from medcompile.question import Question
prog = medcompile.load(sys.argv[1])
qs = [Question.from_dict(json.loads(l)) for l in open(sys.argv[2])]
out = [prog.run(q).prediction.answer for q in qs]
bad = sorted(m for m in sys.modules if m == "programs" or m.startswith("programs.") or m.startswith("tests"))
print(json.dumps({"answers": out, "imported": bad}))
"""


@pytest.mark.real_model
def test_compiled_program_runs_in_fresh_process_with_same_answers(tmp_path, local_lm, medqa_dev, medqa_bank):
    bank = Bank([Exemplar(q) for q in medqa_bank[:40]])
    prog = Program(Vote(Shuffle(Predict(demos=Retrieve(k=2, bank=bank), tune=False), n=3, tune=False)),
                   name="fresh", lm={"model": local_lm.model, "mode": local_lm.mode, "spec": "local"})
    qs = medqa_dev[:3]
    here = [prog.run(q, local_lm).prediction.answer for q in qs]
    path = tmp_path / "p.json"
    prog.save(path)
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("".join(json.dumps(q.to_dict()) + "\n" for q in qs))
    env = {**os.environ, "MEDCOMPILE_CACHE_DIR": str(tmp_path / "fresh-cache")}  # cold cache: real model calls
    res = subprocess.run([sys.executable, "-c", FRESH, str(path), str(qfile)], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["imported"] == []
    assert got["answers"] == here


def test_shipped_schema_file_matches_the_models():
    shipped = json.loads((REPO / "medcompile" / "program" / "program.schema.json").read_text())
    assert shipped == json_schema()


def test_example_program_in_readme_is_valid():
    text = (REPO / "README.md").read_text()
    block = text.split("<!-- example-program -->", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    loads(block)


def test_future_version_gets_upgrade_message():
    d = json.loads(Program(Predict()).to_json())
    d["schema_version"] = 7
    with pytest.raises(ProgramFileError, match="newer medcompile"):
        loads(json.dumps(d))


def test_loading_never_executes_code(tmp_path):
    marker = tmp_path / "pwned"
    d = json.loads(Program(Predict()).to_json())
    attempts = [
        ("graph", {"type": "__import__('os').system('touch %s')" % marker}),
        ("templates", {**d["templates"], "answer_line": "{{ __import__('os').system('touch %s') }}" % marker}),
        ("name", "x; touch %s" % marker),
        ("lm", {"model": "local", "mode": "text", "__reduce__": "os.system"}),
    ]
    for field, value in attempts:
        bad = dict(d)
        bad[field] = value
        try:
            p = loads(json.dumps(bad))
            p.to_json()
        except ProgramFileError:
            pass
    pickle_bytes = b"\x80\x04\x95cos\nsystem\n"
    (tmp_path / "p.json").write_bytes(pickle_bytes)
    with pytest.raises(ProgramFileError):
        load(tmp_path / "p.json")
    assert not marker.exists()


def test_save_is_atomic_and_refuses_invalid(tmp_path, monkeypatch):
    path = tmp_path / "p.json"
    Program(Predict(), name="first").save(path)
    before = path.read_bytes()
    import medcompile.program.io as io

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(io, "write_text_atomic", broken)
    with pytest.raises(OSError):
        Program(Predict(), name="second").save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]
