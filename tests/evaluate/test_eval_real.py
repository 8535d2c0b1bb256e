"""`medcompile eval` end to end on the embedded model (Gemma 3 270M via llama.cpp):
3 MedQA dev questions, zero-shot, in a subprocess like a user would run it."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from medcompile import Predict, Program

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lm-cache")


def run_eval(prog: Path, out: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEDCOMPILE_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-m", "medcompile.cli.main", "eval", str(prog), "--data", "medqa_us4",
                           "--split", "dev", "--limit", "3", "--out", str(out), "--quiet"],
                          capture_output=True, text=True, env=env, timeout=300)


def test_eval_real_model_three_medqa_dev_questions(tmp_path: Path, shared_cache: Path) -> None:
    prog = tmp_path / "zs.json"
    Program(Predict(tune=False), name="zs").save(str(prog))
    out = tmp_path / "out"
    proc = run_eval(prog, out, shared_cache)
    assert proc.returncode == 0, proc.stderr
    d = json.loads((out / "zs.eval.json").read_text())
    assert (out / "zs.eval.md").stat().st_size > 200
    assert (out / "zs.eval.png").read_bytes()[:4] == b"\x89PNG"
    recs = d["records"]
    assert d["n"] == len(recs) == 3 and d["model"].startswith("local/gemma3-270m")
    right = sum(r["correct"] for r in recs)
    acc = d["accuracy"]
    assert acc["mean"] == pytest.approx(right / 3, abs=1e-6) and acc["low"] <= acc["mean"] <= acc["high"]
    assert sum(s["n"] for s in d["by_subject"].values()) == 3 and d["chance"] == 0.25
    assert all(r["calls"] == 1 and r["correct"] == (r["answer"] == r["gold"]) for r in recs)
    assert d["abstention_rate"] == pytest.approx(sum(r["answer"] is None for r in recs) / 3, abs=1e-6)
    assert d["usage_total"]["calls"] == 3 and d["usage_per_question"]["logical"]["calls"] == 1.0
    assert d["usage_total"]["prompt_tokens"] > 100 * 3  # MedQA vignettes are long
    assert 0 < d["latency_s"]["p50"] <= d["latency_s"]["p90"] <= d["latency_s"]["p99"]
    m = re.search(r"accuracy (\d+\.\d) \(95% CI", proc.stdout)
    assert m and float(m.group(1)) == pytest.approx(100 * right / 3, abs=0.05) and "n=3" in proc.stdout
    md = (out / "zs.eval.md").read_text()
    assert f"Accuracy {100 * right / 3:.1f} (95% CI" in md

    # Rerun: every record comes back from the checkpoint, same numbers.
    again = run_eval(prog, out, shared_cache)
    assert again.returncode == 0, again.stderr
    d2 = json.loads((out / "zs.eval.json").read_text())
    assert d2["resumed"] == 3 and d2["accuracy"] == d["accuracy"]
