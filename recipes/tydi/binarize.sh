#!/usr/bin/env bash
# TyDi QA primary task -> QA windows (JSONL) -> Fairseq binaries for the long_qa task.
#
# Usage (same options as recipes/nq/binarize.sh, which this runs with fairseq_poolingformer.preprocess.tydi):
#   recipes/tydi/binarize.sh OUT_DIR [--train tydiqa-v1.0-train.jsonl.gz] \
#       [--valid tydiqa-v1.0-dev.jsonl.gz] [--test BLIND_TEST.jsonl.gz] --dict XLMR/dict.txt \
#       --bpe sentencepiece --sentencepiece-model XLMR/sentencepiece.bpe.model [options]
#
# TyDi-specific option (passed to python -m fairseq_poolingformer.preprocess.tydi):
#   --answer-boundaries split|snap   default: split for train (gold spans map to subwords
#                                    exactly), snap for valid and test (no gold information in the input)
# Writes OUT_DIR/jsonl/ and OUT_DIR/bin/ as described in recipes/nq/binarize.sh.
set -euo pipefail
QA_DATASET=tydi exec "$(dirname "${BASH_SOURCE[0]}")/../nq/binarize.sh" "$@"
