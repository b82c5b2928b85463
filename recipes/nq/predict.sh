#!/usr/bin/env bash
# Predictions of a long_qa checkpoint on every window of a split, in the official format.
# (recipes/tydi/predict.sh runs this script for TyDi QA.)
#
# Usage:
#   recipes/nq/predict.sh CHECKPOINT DATA_BIN OUTPUT [--split valid|test] [predict_qa options]
#
#   CHECKPOINT  SAVE_DIR/checkpoint_best.pt of recipes/nq/train.sh
#   DATA_BIN    OUT_DIR/bin of recipes/nq/binarize.sh
#   OUTPUT      NQ: one JSON file {"predictions": [...]}; TyDi: a JSONL file; the counts by
#               answer kind go to OUTPUT's stem + .report.json
# Other options go to python -m fairseq_poolingformer.qa.predict (--batch-size, --max-answer-len,
# --fp16, --cpu, --verbose for the log lines and the counts written, ...). Environment: PYTHON.
#
# Final numbers come from the official evaluation scripts, never from the training logs
# (docs/qa.md, "Scoring"):
#   NQ:   pip install natural-questions==1.0.6 six absl-py
#         python -m natural_questions.nq_eval --gold_path='v1.0/dev/nq-dev-??.jsonl.gz' \
#             --predictions_path=OUTPUT        (gold: the original-format .jsonl.gz shards)
#   TyDi: git clone https://github.com/google-research-datasets/tydiqa; pip install absl-py
#         python tydiqa/tydi_eval.py --gold_path=tydiqa-v1.0-dev.jsonl.gz --predictions_path=OUTPUT
set -euo pipefail

usage() { sed -n '2,/^[^#]/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }
[[ $# -ge 3 && $1 != -* ]] || usage

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
DATASET=${QA_DATASET:-nq}

CHECKPOINT=$1; DATA_BIN=$2; OUTPUT=$3; shift 3
[[ -f $CHECKPOINT ]] || { echo "recipes/$DATASET/predict.sh: checkpoint not found: $CHECKPOINT" >&2; exit 1; }
HAS_SPLIT=0
for a in "$@"; do [[ $a == --split ]] && HAS_SPLIT=1; done
EXTRA=("$@")
[[ $HAS_SPLIT == 1 ]] || EXTRA+=(--split valid)
mkdir -p "$(dirname "$OUTPUT")"
exec "$PYTHON" -m fairseq_poolingformer.qa.predict --checkpoint "$CHECKPOINT" --data-dir "$DATA_BIN" \
    --format "$DATASET" --output "$OUTPUT" "${EXTRA[@]}"
