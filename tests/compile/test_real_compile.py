"""A real compile on the embedded model: tiny, but every stage runs for real."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.real_model


def _optimize(out, cache):
    cmd = [sys.executable, "-m", "medcompile.cli.main", "optimize", "medprompt",
           "--train", "medqa_us4", "--train-split", "bank", "--train-limit", "30",
           "--dev", "medqa_us4", "--dev-split", "dev", "--dev-limit", "4",
           "--lm", "local", "--budget", "60", "--trials", "3", "--rationales", "3", "--instructions", "1",
           "--minibatch", "2", "--quiet", "--out", str(out)]
    env = {**os.environ, "MEDCOMPILE_CACHE_DIR": str(cache)}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=1200)


def test_medprompt_compiles_on_local_model_reproducibly(tmp_path):
    cache = tmp_path / "cache"
    r1 = _optimize(tmp_path / "a" / "mp.json", cache)
    assert r1.returncode == 0, r1.stderr
    prog = json.loads((tmp_path / "a" / "mp.json").read_text())
    info = prog["compile"]
    assert info["budget"]["spent_calls"] <= 60 and info["dev"]["n"] == 4  # 4 dev: 2 searched, 2 held out, compared on all 4
    assert info["selection"]["search_questions"] == 2 and info["dev"]["questions"] == "search+confirmation"
    assert prog["lm"]["model"].startswith("local/gemma3-270m") and prog["lm"]["mode"] == "text"
    assert info["rationales"]["attempted"] == 3
    report = json.loads((tmp_path / "a" / "mp.report.json").read_text())
    assert report["this_run"]["live_usage"]["live_calls"] > 0
    # Same command, fresh output folder (fresh study), same cache: same bytes, no model call.
    r2 = _optimize(tmp_path / "b" / "mp.json", cache)
    assert r2.returncode == 0, r2.stderr
    assert (tmp_path / "b" / "mp.json").read_bytes() == (tmp_path / "a" / "mp.json").read_bytes()
    report2 = json.loads((tmp_path / "b" / "mp.report.json").read_text())
    assert report2["this_run"]["live_usage"]["live_calls"] == 0


def test_instruction_refinement_round_on_local_model(real_cache_dir):
    """One refinement round for real: the base model is asked to rewrite the instruction and
    every candidate is scored at the cheapest configuration on the same questions."""
    import medcompile as mc
    from medcompile.compile.refine_instructions import baseline_scorer, refine_instructions
    from medcompile.compile.space import BankChoice
    from medcompile.compile.trial import accuracy_metric
    from medcompile.bank import Bank
    from medcompile.data import load_dataset, split_named
    from medcompile.lm.meter import BudgetedLM
    from medcompile.lm.registry import make_lm, wrap_lm

    qs = split_named(load_dataset("medqa_us4"), "bank").questions[:4]
    prog = mc.Program(mc.Predict(), name="zs")
    lm = wrap_lm(make_lm("local"), cache_dir=real_cache_dir)
    budget = BudgetedLM(lm, 20)
    empty = Bank([])
    score = baseline_scorer(prog.root, prog, BankChoice(full=empty, cot=empty), budget, accuracy_metric, 0, 1)
    user = prog.signature.instruction
    chosen, pool, calls = refine_instructions([user], qs, score, budget, rounds=1, keep=2, seed=0)
    assert calls == 1 and chosen[0] == user and pool[0].origin == "user"
    assert all(len(p.correct) == 4 for p in pool) and budget.calls == 1 + 4 * len(pool)
    assert all("\n" not in p.text and "```" not in p.text for p in pool)
