#!/usr/bin/env bash
# The regret grid as run for the committed results: every profile x seeds 0-9 x budgets 150/400/1000,
# both comparisons, 127 test questions (a fixed seeded half of the test split; the oracle uses the
# same half), 1 replicate. Phases are resumable: each appends rows to
# benchmarks/results/optimizer_regret.partial.jsonl and skips rows already there (also those in
# optimizer_regret.json: move it aside to redo rows). Repo root, venv active.
set -euo pipefail
B="nice -n 5 python benchmarks/bench_optimizer_regret.py --replicates 1 --test-n 127"
# DSPy's six optimizers (they do not depend on medcompile's search code; the simulator is unchanged
# since these ran): budget 400 seeds 0-9 and budgets 150/1000 seeds 0-1 in the previous session,
# seeds 2-9 at 150/1000 in this one (run into a separate results dir, then appended).
$B --jobs 2 --mc "" --budgets 400 --seeds 10
$B --jobs 2 --mc "" --budgets 150,1000 --seeds 2
$B --jobs 1 --mc "" --budgets 150 --seeds 8 --seed-start 2
$B --jobs 1 --mc "" --budgets 1000 --seeds 8 --seed-start 2
# medcompile (default options), random search and the fixed Medprompt recipe, all at commit 9c080a9:
$B --jobs 2 --dspy "" --budgets 400 --seeds 10
$B --jobs 2 --dspy "" --budgets 150,1000 --seeds 10
$B --report-only --note "DSPy rows: budget 400 seeds 0-9 and 150/1000 seeds 0-1 from the previous session, 150/1000 seeds 2-9 from this one (simulator unchanged); medcompile, random search and fixed-recipe rows all at commit 9c080a9 (see run_full.sh)."
