#!/usr/bin/env bash
# The full regret grid, in resumable phases (each appends rows to
# benchmarks/results/optimizer_regret.partial.jsonl and rewrites the JSON/MD/PNG from all rows).
# Usage: bash benchmarks/regret/run_full.sh [dspy400|mc400|rest|all]   (repo root, venv active)
# Sized to a shared 2-core machine: 127 test questions (a fixed seeded half of the test split; the
# oracle uses the same half), 1 replicate, 10 seeds at budget 400, 3 seeds at budgets 150 and 1000.
set -euo pipefail
B="nice -n 10 python benchmarks/bench_optimizer_regret.py --jobs 2 --replicates 1 --test-n 127"
phase=${1:-all}
if [[ $phase == dspy400 || $phase == all ]]; then
  $B --mc "" --budgets 400 --seeds 10
fi
if [[ $phase == mc400 || $phase == all ]]; then
  $B --dspy "" --budgets 400 --seeds 10
fi
if [[ $phase == rest || $phase == all ]]; then
  $B --budgets 150,1000 --seeds 3
fi
