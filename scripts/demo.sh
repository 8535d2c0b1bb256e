#!/usr/bin/env bash
# The main job on the embedded defaults: compile Medprompt for Gemma 3 270M on the MedQA
# development split, then run and evaluate the frozen program. Outputs go to out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export LITELLM_LOCAL_MODEL_COST_MAP=True
OUT=out/demo
mkdir -p "$OUT"
# 60 dev questions: 36 to search on (one change at a time from zero-shot, then optuna; candidates
# raced, paired, 4 questions at a time) and 24 held out to confirm the finalists on; finalists are
# compared on all 60, and extra calls per question are bought only when ahead with confidence 0.8.
medcompile optimize medprompt \
  --train medqa_us4 --train-split bank --train-limit 120 \
  --dev medqa_us4 --dev-split dev --dev-limit 60 \
  --lm local --budget 360 --trials 10 --rationales 12 --instructions 2 --seed 0 \
  --out "$OUT/medprompt.json"
medcompile validate "$OUT/medprompt.json"
medcompile run "$OUT/medprompt.json" --input medqa_us4 --split test --limit 5 --output "$OUT/answers.jsonl"
echo "answers:"; cat "$OUT/answers.jsonl"
if medcompile eval --help >/dev/null 2>&1; then
  medcompile eval "$OUT/medprompt.json" --data medqa_us4 --split test --limit 20 --out "$OUT"
fi
echo "demo done: $OUT/medprompt.json, $OUT/medprompt.report.md, $OUT/answers.jsonl"
