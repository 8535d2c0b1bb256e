"""`medcompile optimize --instruction-rounds / --instruction-consensus`: parsed, checked, and used."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _optimize(tmp_path, *extra):  # noqa: ANN001, ANN202
    cmd = [sys.executable, "-m", "medcompile.cli.main", "optimize", "medprompt", "--train", "medqa_us4",
           "--train-split", "bank", "--train-limit", "60", "--dev", "medqa_us4", "--dev-split", "dev",
           "--dev-limit", "16", "--lm", "sim:instruction_sensitive", "--budget", "400", "--trials", "6",
           "--out", str(tmp_path / "p.json"), *extra]
    env = {**os.environ, "MEDCOMPILE_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)


@pytest.mark.parametrize("flag,value,message", [("--instruction-rounds", "-1", "must be 0 or more"),
                                                ("--instruction-rounds", "many", "whole number or 'auto'"),
                                                ("--instruction-consensus", "-2", "must be 0 or more")])
def test_bad_values_are_clear_errors(tmp_path, flag, value, message) -> None:  # type: ignore[no-untyped-def]
    r = _optimize(tmp_path, flag, value)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_refinement_and_consensus_run_and_are_counted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = _optimize(tmp_path, "--instruction-rounds", "2", "--instruction-consensus", "8")
    assert r.returncode == 0, r.stderr
    assert "2 refinement round(s) on 10 training questions" in r.stderr + r.stdout
    info = json.loads((tmp_path / "p.json").read_text())["compile"]
    # 8 proposals, 2 rewrites and (candidates + 2) x 10 scoring calls, all inside the preparation count
    n_cands = len(info["instructions"])
    assert info["budget"]["preparation_calls"] >= info["rationales"]["attempted"] + 8 + 2 + 10 * (n_cands + 2) - 10
    assert info["budget"]["spent_calls"] <= 400
