#!/usr/bin/env bash
# Issue 11's two long runs, one sitting of N minutes (default 120) side by side, then reports:
#   - the DSPy head-to-head at n = 254 (bench_vs_dspy.py --full, stops itself after N minutes;
#     skipped once vs_dspy_full.md reports all 254 test questions, as it has since 5b7d796);
#   - the ensemble-refinement evaluation on all four datasets (bench_powered_eval.py, stopped
#     by SIGTERM after N minutes; every finished question is in its checkpoint).
# Both resume where the last sitting stopped, on any machine with the committed results.
# Their llama.cpp threads share the CPUs (medcompile/lm/cpu_share.py): the DSPy server keeps
# its one thread, the evaluation takes what is left.
#
#   bash benchmarks/long_runs.sh [MINUTES]
#
# Logs: ${TMPDIR:-/tmp}/medcompile-long-runs/{dspy,er}.log. Afterwards, commit the changed
# files under benchmarks/results/ (vs_dspy_full.*, vs_dspy_resume/, powered/).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-120}"
case "$minutes" in ''|*[!0-9]*) echo "usage: bash benchmarks/long_runs.sh [MINUTES] (a whole number)" >&2; exit 2;; esac
[ -f .venv/bin/activate ] || { echo "no .venv here: run 'bash scripts/setup.sh' first" >&2; exit 2; }
. .venv/bin/activate
export LITELLM_LOCAL_MODEL_COST_MAP=True
logs="${TMPDIR:-/tmp}/medcompile-long-runs"
mkdir -p "$logs"

dspy=""  # pid of the DSPy run; none once its report says every test question is answered
if grep -q 'test n = 254 (planned 254)' benchmarks/results/vs_dspy_full.md 2>/dev/null; then
  echo "DSPy head-to-head already complete (benchmarks/results/vs_dspy_full.md): not rerun"
else
  nice python benchmarks/bench_vs_dspy.py --full --sitting-min "$minutes" --threads 1 >"$logs/dspy.log" 2>&1 &
  dspy=$!
fi
nice timeout -s TERM "${minutes}m" python benchmarks/bench_powered_eval.py --stage eval \
    --programs ensemble_refinement >"$logs/er.log" 2>&1 &
er=$!
trap 'kill -TERM $dspy $er 2>/dev/null || true' INT TERM
echo "sitting of $minutes min: DSPy pid ${dspy:-none}, ensemble refinement pid $er; logs in $logs"

while { [ -n "$dspy" ] && kill -0 "$dspy" 2>/dev/null; } || kill -0 "$er" 2>/dev/null; do
  sleep 60
  printf '[%s] %s | %s\n' "$(date +%H:%M)" \
    "$( [ -n "$dspy" ] && grep -o 'test q[0-9]*/254' "$logs/dspy.log" | tail -1 || echo 'DSPy: complete')" \
    "$(grep -o '^eval [a-z_0-9]*\.ensemble_refinement[^:]*: [0-9]*/[0-9]*' "$logs/er.log" | tail -1)"
done
if [ -n "$dspy" ]; then wait "$dspy" || echo "DSPy run ended with status $? (see $logs/dspy.log)"; fi
wait "$er" || true  # 124: stopped by the sitting's timeout, as planned
python benchmarks/bench_powered_eval.py --stage report >/dev/null
awk '/^## /{on = /^## Under way/} on' benchmarks/results/powered/README.md  # the interim table
grep -m1 '^Run ' benchmarks/results/vs_dspy_full.md || true
