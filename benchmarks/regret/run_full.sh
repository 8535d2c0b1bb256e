#!/usr/bin/env bash
# The regret grid exactly as it was run for the committed results (resumable phases: each
# appends rows to benchmarks/results/optimizer_regret.partial.jsonl; rows already there are
# skipped; every phase rewrites optimizer_regret.{json,md,png} from all rows). Repo root, venv active.
# 127 test questions (fixed seeded half of the test split; the oracle uses the same half), 1 replicate.
set -euo pipefail
B="nice -n 10 python benchmarks/bench_optimizer_regret.py --replicates 1 --test-n 127"
$B --jobs 2 --mc "" --budgets 400 --seeds 10                        # DSPy, budget 400, seeds 0-9
$B --jobs 1 --dspy "" --budgets 400 --seeds 10                      # medcompile, random, fixed (stopped after seed 5)
$B --jobs 1 --dspy "" --mc medcompile --profiles nothing_helps --budgets 400 --seeds 5 --seed-start 5
$B --jobs 1 --dspy "" --budgets 400 --seeds 3 --seed-start 5
$B --jobs 1 --dspy "" --budgets 400 --seeds 2 --seed-start 8
$B --jobs 1 --dspy "" --budgets 150,1000 --seeds 2                  # medcompile side, budgets 150/1000
$B --jobs 1 --mc "" --budgets 150,1000 --seeds 1                    # DSPy, budgets 150/1000, seed 0
$B --jobs 2 --mc "" --budgets 150,1000 --seeds 2                    # DSPy, seed 1
# base_model's profile changed after the first phase had loaded it: its DSPy rows at budget 400
# were removed from the partial file, its oracle cache lines deleted, and the phase rerun:
$B --jobs 2 --mc "" --profiles base_model --budgets 400 --seeds 10
# one oracle per cell for every row, then the report:
$B --report-only --reoracle
