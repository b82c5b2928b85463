#!/usr/bin/env bash
# Fine-tune a Poolingformer RoBERTa (NQ) / XLM-R (TyDi QA) on binarized QA windows (long_qa task).
# (recipes/tydi/train.sh runs this script for TyDi QA.)
#
# Usage:
#   recipes/nq/train.sh DATA_BIN PRETRAINED SAVE_DIR [extra fairseq-train flags]
#
#   DATA_BIN    OUT_DIR/bin of recipes/nq/binarize.sh (splits train, valid)
#   PRETRAINED  a converted checkpoint (python -m fairseq_poolingformer.convert roberta ...),
#               or "none" to train from random weights
#   SAVE_DIR    checkpoints; an existing SAVE_DIR/checkpoint_last.pt is resumed
#
# Paper hyper-parameters (Zhang et al. 2021): batch 64 windows, 2 epochs, lr 2e-5, linear
# warm-up over the first 10% of the updates then linear decay to 0, fp16. Every knob is an
# environment variable:
#   ARCH           poolingformer_roberta_large (NQ) / poolingformer_xlmr_large (TyDi)
#   BATCH=64       windows per update, over all GPUs and nodes (MAX_SENTENCES x GPUs x UPDATE_FREQ)
#   MAX_SENTENCES=1  windows per GPU per step (4096-token windows of a large model: 1-2)
#   EPOCHS=2  LR=2e-5  WARMUP_RATIO=0.1  WEIGHT_DECAY=0.01  SEED=1
#   MAX_POSITIONS=4096   positions of the model (as given to convert roberta --max-positions)
#   FP16=1         0 for fp32 (CPU); bf16 needs the plugin's fix (see docs/summarization.md)
#   CPU=0          1 to train on CPU (smoke tests)
#   CHECKPOINT_ACTIVATIONS=1   recompute activations in backward (memory for 4096 x 24 layers)
#   NUM_GPUS       GPUs per node (default: all visible, via nvidia-smi; 1 on CPU)
#   NNODES=1 NODE_RANK=0 MASTER_ADDR MASTER_PORT=29500   multi-node: run this script on every
#                  node with the same MASTER_ADDR (node 0) and its NODE_RANK
#   VALID_SUBSET=valid   BEST_METRIC=short_f1 (approximate window-level F1, see below)
#   NUM_WORKERS=2  data-loading processes
#   DRY_RUN=1      print the fairseq-train command instead of running it
#
# Validation logs the criterion's approximate window-level F1 (short_f1, long_f1): a progress
# signal only. Final numbers: run recipes/nq/predict.sh and the official evaluation script.
set -euo pipefail

usage() { sed -n '2,/^[^#]/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }
[[ $# -ge 3 && $1 != -* ]] || usage

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
DATASET=${QA_DATASET:-nq}
NAME="recipes/$DATASET/train.sh"
die() { echo "$NAME: $*" >&2; exit 1; }

DATA_BIN=$1; PRETRAINED=$2; SAVE_DIR=$3; shift 3
[[ -f $DATA_BIN/train.labels.npy ]] || die "$DATA_BIN/train.labels.npy not found (run recipes/$DATASET/binarize.sh)"
[[ $PRETRAINED == none || -f $PRETRAINED ]] || die "pretrained checkpoint not found: $PRETRAINED"

if [[ $DATASET == tydi ]]; then ARCH=${ARCH:-poolingformer_xlmr_large}; else ARCH=${ARCH:-poolingformer_roberta_large}; fi
BATCH=${BATCH:-64}; MAX_SENTENCES=${MAX_SENTENCES:-1}; EPOCHS=${EPOCHS:-2}; LR=${LR:-2e-5}
WARMUP_RATIO=${WARMUP_RATIO:-0.1}; WEIGHT_DECAY=${WEIGHT_DECAY:-0.01}; SEED=${SEED:-1}
FP16=${FP16:-1}; CPU=${CPU:-0}; CHECKPOINT_ACTIVATIONS=${CHECKPOINT_ACTIVATIONS:-1}
NNODES=${NNODES:-1}; NODE_RANK=${NODE_RANK:-0}; MASTER_PORT=${MASTER_PORT:-29500}
VALID_SUBSET=${VALID_SUBSET:-valid}; BEST_METRIC=${BEST_METRIC:-short_f1}; MAX_POSITIONS=${MAX_POSITIONS:-4096}
if [[ -z ${NUM_GPUS:-} ]]; then
    if [[ $CPU == 1 ]] || ! command -v nvidia-smi >/dev/null 2>&1; then NUM_GPUS=1
    else NUM_GPUS=$(nvidia-smi --list-gpus | wc -l); fi
fi

WORLD=$((NUM_GPUS * NNODES))
PER_STEP=$((MAX_SENTENCES * WORLD))
(( BATCH % PER_STEP == 0 )) || die "BATCH=$BATCH is not a multiple of MAX_SENTENCES x GPUs = $PER_STEP"
UPDATE_FREQ=$((BATCH / PER_STEP))
N_TRAIN=$("$PYTHON" -c "import numpy, sys; print(len(numpy.load(sys.argv[1], mmap_mode='r')))" "$DATA_BIN/train.labels.npy")
read -r TOTAL_UPDATES WARMUP_UPDATES < <("$PYTHON" -c "
import math, sys
n, batch, epochs, ratio = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
total = math.ceil(n / batch) * epochs
print(total, max(1, round(ratio * total)))" "$N_TRAIN" "$BATCH" "$EPOCHS" "$WARMUP_RATIO")

ARGS=(
    "$DATA_BIN" --user-dir "$REPO/fairseq_poolingformer"
    --task long_qa --criterion long_qa --arch "$ARCH" --max-positions "$MAX_POSITIONS"
    --optimizer adam --adam-betas "(0.9, 0.98)" --adam-eps 1e-6 --weight-decay "$WEIGHT_DECAY"
    --lr-scheduler polynomial_decay --lr "$LR" --end-learning-rate 0
    --warmup-updates "$WARMUP_UPDATES" --total-num-update "$TOTAL_UPDATES"
    --max-epoch "$EPOCHS" --max-update "$TOTAL_UPDATES"
    --batch-size "$MAX_SENTENCES" --update-freq "$UPDATE_FREQ" --required-batch-size-multiple 1
    --valid-subset "$VALID_SUBSET" --batch-size-valid "$MAX_SENTENCES"
    --best-checkpoint-metric "$BEST_METRIC" --maximize-best-checkpoint-metric
    --save-dir "$SAVE_DIR" --no-epoch-checkpoints --seed "$SEED"
    --log-format simple --log-interval 20 --num-workers "${NUM_WORKERS:-2}"
)
[[ $PRETRAINED != none ]] && ARGS+=(--finetune-from-model "$PRETRAINED")
[[ $FP16 == 1 ]] && ARGS+=(--fp16)
[[ $CHECKPOINT_ACTIVATIONS == 1 ]] && ARGS+=(--checkpoint-activations)
if [[ $CPU == 1 ]]; then
    ARGS+=(--cpu)
elif (( WORLD > 1 )); then
    # the lm_head of the pretrained model is not used by the QA heads
    ARGS+=(--distributed-world-size "$WORLD" --find-unused-parameters)
    if (( NNODES > 1 )); then
        [[ -n ${MASTER_ADDR:-} ]] || die "NNODES=$NNODES: set MASTER_ADDR (the address of node 0)"
        ARGS+=(--distributed-init-method "tcp://$MASTER_ADDR:$MASTER_PORT"
               --distributed-rank $((NODE_RANK * NUM_GPUS)))
    fi
fi
ARGS+=("$@")

echo "$NAME: $N_TRAIN training windows, batch $BATCH = $MAX_SENTENCES x $WORLD GPU(s) x update-freq $UPDATE_FREQ," \
     "$TOTAL_UPDATES updates ($WARMUP_UPDATES warm-up)" >&2
FAIRSEQ_TRAIN=("$PYTHON" -m fairseq_cli.train)
if [[ ${DRY_RUN:-0} == 1 ]]; then
    printf '%q ' "${FAIRSEQ_TRAIN[@]}" "${ARGS[@]}"; echo
    exit 0
fi
mkdir -p "$SAVE_DIR"
# glibc maps every allocation above 32 MiB fresh from the kernel and unmaps it on free, so each
# training step page-faults its large activations and gradients in again (on CPU about a third
# of an 8k-token step: docs/benchmark.md). Keep freed memory in the heap instead; set either
# variable yourself to override.
export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-1073741824} MALLOC_TRIM_THRESHOLD_=${MALLOC_TRIM_THRESHOLD_:-2147483648}
exec "${FAIRSEQ_TRAIN[@]}" "${ARGS[@]}"
