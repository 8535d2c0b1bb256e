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

The fuzzing itself lives in test_fuzz_program_files.py and test_fuzz_dataset_rows.py
(shared pieces in fuzzkit.py); this file holds the check in real processes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from medcompile import Predict, Program
from tests.faults.faultkit import declared_program, eval_set, train_set, write_jsonl
from tests.faults.fuzzkit import assert_clean_refusal


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
