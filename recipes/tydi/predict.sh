#!/usr/bin/env bash
# TyDi QA primary-task predictions (JSONL, the official format) of a long_qa checkpoint.
#
# Usage (same as recipes/nq/predict.sh, which this runs with --format tydi):
#   recipes/tydi/predict.sh CHECKPOINT DATA_BIN OUTPUT.jsonl [--split valid|test] [predict_qa options]
# Score with the official script (a clone of github.com/google-research-datasets/tydiqa, absl-py):
#   python tydiqa/tydi_eval.py --gold_path=tydiqa-v1.0-dev.jsonl.gz --predictions_path=OUTPUT.jsonl
set -euo pipefail
QA_DATASET=tydi exec "$(dirname "${BASH_SOURCE[0]}")/../nq/predict.sh" "$@"
