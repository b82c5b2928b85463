#!/usr/bin/env bash
# Fine-tune Poolingformer XLM-R on TyDi QA windows (the paper's settings).
#
# Usage (same arguments and environment as recipes/nq/train.sh, which this runs for TyDi):
#   recipes/tydi/train.sh DATA_BIN PRETRAINED SAVE_DIR [extra fairseq-train flags]
# Default ARCH=poolingformer_xlmr_large (convert the XLM-R checkpoint with
#   python -m fairseq_poolingformer.convert roberta --arch poolingformer_xlmr_large ...).
set -euo pipefail
QA_DATASET=tydi exec "$(dirname "${BASH_SOURCE[0]}")/../nq/train.sh" "$@"
