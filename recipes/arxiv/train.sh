#!/usr/bin/env bash
# Fine-tune Poolingformer-BART on arXiv summarization with the paper's hyper-parameters.
#
# Usage:
#   recipes/arxiv/train.sh DATA_BIN SAVE_DIR [extra fairseq-train arguments ...]
#
# DATA_BIN: recipes/arxiv/binarize.sh's OUT_DIR/bin (train/valid .source-target, dict.*.txt).
# Start from a converted BART checkpoint (python -m fairseq_poolingformer.convert bart ...,
# or `make arxiv-16k BART=...` which does both) with INIT=path/to/model.pt; without INIT the
# model trains from scratch.
#
# Paper settings (Zhang et al. 2021, arXiv): effective batch 128 documents (BATCH_SIZE per
# GPU x world size x --update-freq), 10 epochs, lr 2e-4, 1000 warm-up updates, linear
# (polynomial power 1) decay to 0 over all updates, fp16. The rest is BART's summarization
# fine-tuning recipe (label smoothing 0.1, dropout 0.1, Adam (0.9, 0.999) eps 1e-8, weight
# decay 0.01, clip 0.1). On a GPU the encoder's attention runs as FlexAttention kernels
# (--attention-impl auto) except while attention dropout is on: with this recipe's
# --attention-dropout 0.1 training keeps the eager kernels; add `--attention-dropout 0` after
# the arguments to train with FlexAttention (docs/GPU.md).
#
# Environment (all optional):
#   ARCH=poolingformer_bart_large   MAX_SOURCE=16384 (4096: the 4k setting)   MAX_TARGET=1024
#   TOTAL_BATCH=128  BATCH_SIZE=1 (documents per GPU step)   EPOCHS=10  LR=2e-4  WARMUP=1000
#   PRECISION=fp16 (fp16 | bf16 | amp | fp32)   CHECKPOINT_ACTIVATIONS=1 (0 to turn off)
#   INIT=           converted checkpoint to fine-tune from (weights only; resumes keep working)
#   NGPUS=          GPUs per node (default: all visible; 0 = CPU)
#   NNODES=1 NODE_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500   multi-node (torchrun)
#   TRAIN_EXAMPLES= number of training documents (default: read from DATA_BIN, less those that
#                   Fairseq skips: a target longer than MAX_TARGET tokens; the summary line counts
#                   them, and recipes/arxiv/binarize.sh --truncate-target N cuts them instead)
#   PF_ARGS=        extra --pf-* flags, e.g. "--pf-pooling mean --pf-layers 5-10"
#   DRY_RUN=1       print the command instead of running it
# Multi-node: run this script on every node with the same NNODES/MASTER_ADDR/MASTER_PORT
# and its own NODE_RANK; processes are started by torchrun (one per GPU) and Fairseq reads
# the rendezvous from the environment (env://).
#
# Python: $PYTHON if set, else the repository's .venv/bin/python if present, else python3.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

usage() { sed -n '2,/^[^#]/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }
[[ $# -ge 2 ]] || usage
DATA_BIN=$1; SAVE_DIR=$2; shift 2
die() { echo "train.sh: $*" >&2; exit 1; }
[[ -f $DATA_BIN/dict.source.txt ]] || die "no dict.source.txt in $DATA_BIN (run recipes/arxiv/binarize.sh)"

ARCH=${ARCH:-poolingformer_bart_large}
MAX_SOURCE=${MAX_SOURCE:-16384}
MAX_TARGET=${MAX_TARGET:-1024}
TOTAL_BATCH=${TOTAL_BATCH:-128}
BATCH_SIZE=${BATCH_SIZE:-1}
EPOCHS=${EPOCHS:-10}
LR=${LR:-2e-4}
WARMUP=${WARMUP:-1000}
PRECISION=${PRECISION:-fp16}
CHECKPOINT_ACTIVATIONS=${CHECKPOINT_ACTIVATIONS:-1}
NNODES=${NNODES:-1}; NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}; MASTER_PORT=${MASTER_PORT:-29500}
if [[ -z ${NGPUS:-} ]]; then
    NGPUS=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
fi

# world size and gradient accumulation for an effective batch of TOTAL_BATCH documents
WORLD=$(( NGPUS > 0 ? NGPUS * NNODES : 1 ))
PER_STEP=$(( BATCH_SIZE * WORLD ))
(( TOTAL_BATCH % PER_STEP == 0 )) || die "TOTAL_BATCH=$TOTAL_BATCH is not a multiple of BATCH_SIZE x world size = $PER_STEP"
UPDATE_FREQ=$(( TOTAL_BATCH / PER_STEP ))

# Fairseq skips (with only a WARNING) every example whose target is longer than MAX_TARGET
# tokens (</s> included): count them here, for the summary line and the number of updates
TOO_LONG=""
if [[ -f $DATA_BIN/train.source-target.target.idx ]]; then
    COUNTS=$(FAIRSEQ_POOLINGFORMER_TORCH_ONLY=1 "$PYTHON" - "$DATA_BIN" "$MAX_TARGET" <<'EOF'
import os, sys
from fairseq_poolingformer.preprocess.mmap_index import read_index
data_bin, max_target = sys.argv[1], int(sys.argv[2])
for split in ("train", "valid"):
    prefix = os.path.join(data_bin, f"{split}.source-target.target")
    sizes = read_index(prefix).sizes if os.path.isfile(prefix + ".idx") else []
    print(len(sizes), int(sum(n > max_target for n in sizes)), end=" ")
EOF
)
    read -r N_TRAIN TOO_LONG N_VALID VALID_TOO_LONG <<< "$COUNTS"
    TRAIN_EXAMPLES=${TRAIN_EXAMPLES:-$(( N_TRAIN - TOO_LONG ))}
    if (( TOO_LONG == N_TRAIN )); then
        die "all $N_TRAIN train documents of $DATA_BIN have a target longer than MAX_TARGET=$MAX_TARGET tokens:" \
            "Fairseq would skip every one (binarize with recipes/arxiv/binarize.sh --truncate-target $MAX_TARGET" \
            "to cut them instead, or raise MAX_TARGET)"
    fi
elif [[ -z ${TRAIN_EXAMPLES:-} ]]; then
    die "no train.source-target.target.{bin,idx} in $DATA_BIN"
fi
TOTAL_UPDATES=$(( (TRAIN_EXAMPLES + TOTAL_BATCH - 1) / TOTAL_BATCH * EPOCHS ))
(( TOTAL_UPDATES > 0 )) || die "no training examples"

case $PRECISION in
    fp16) PREC=(--fp16 --fp16-init-scale 128 --min-loss-scale 1e-4) ;;
    bf16) PREC=(--bf16) ;;
    amp) PREC=(--amp) ;;
    fp32) PREC=() ;;
    *) die "PRECISION must be fp16, bf16, amp or fp32, got $PRECISION" ;;
esac
(( NGPUS > 0 )) || { PREC=(--cpu); echo "train.sh: no GPU: training on CPU in fp32" >&2; }

ARGS=(
    "$DATA_BIN" --user-dir "$REPO/fairseq_poolingformer"
    --task translation --source-lang source --target-lang target --truncate-source
    --arch "$ARCH" --max-source-positions "$MAX_SOURCE" --max-target-positions "$MAX_TARGET"
    --share-all-embeddings --share-decoder-input-output-embed --layernorm-embedding
    --criterion label_smoothed_cross_entropy --label-smoothing 0.1
    --dropout 0.1 --attention-dropout 0.1 --weight-decay 0.01
    --optimizer adam --adam-betas "(0.9, 0.999)" --adam-eps 1e-08 --clip-norm 0.1
    --lr-scheduler polynomial_decay --lr "$LR" --end-learning-rate 0 --power 1
    --warmup-updates "$WARMUP" --total-num-update "$TOTAL_UPDATES" --max-update "$TOTAL_UPDATES"
    --max-epoch "$EPOCHS" --batch-size "$BATCH_SIZE" --update-freq "$UPDATE_FREQ"
    --required-batch-size-multiple 1 --skip-invalid-size-inputs-valid-test
    --save-dir "$SAVE_DIR" --keep-last-epochs 2 --best-checkpoint-metric loss
    --log-format simple --log-interval 10 --seed 1 --num-workers 2
    "${PREC[@]}"
)
(( CHECKPOINT_ACTIVATIONS )) && ARGS+=(--checkpoint-activations)
# --finetune-from-model: used on the first launch only (a restarted job resumes from
# SAVE_DIR/checkpoint_last.pt), with fresh optimizer, scheduler, meters and data iterator
[[ -n ${INIT:-} ]] && ARGS+=(--finetune-from-model "$INIT")
# shellcheck disable=SC2206
[[ -n ${PF_ARGS:-} ]] && ARGS+=($PF_ARGS)
ARGS+=("$@")

SKIPPED=""
if [[ -n $TOO_LONG ]]; then
    SKIPPED=" ($TOO_LONG of $N_TRAIN train and $VALID_TOO_LONG of $N_VALID valid documents skipped:"
    SKIPPED+=" target longer than MAX_TARGET=$MAX_TARGET tokens"
    (( TOO_LONG + VALID_TOO_LONG == 0 )) || SKIPPED+="; binarize.sh --truncate-target $MAX_TARGET cuts them instead"
    SKIPPED+=")"
fi
echo "train.sh: $ARCH, $MAX_SOURCE source positions, $TRAIN_EXAMPLES documents$SKIPPED, world size $WORLD," \
     "batch $BATCH_SIZE x $WORLD x update-freq $UPDATE_FREQ = $TOTAL_BATCH, $TOTAL_UPDATES updates" >&2
if (( WORLD > 1 )); then
    CMD=("$PYTHON" -m torch.distributed.run --nproc_per_node "$NGPUS" --nnodes "$NNODES"
         --node_rank "$NODE_RANK" --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT"
         -m fairseq_cli.train "${ARGS[@]}" --distributed-world-size "$WORLD")
else
    CMD=("$PYTHON" -m fairseq_cli.train "${ARGS[@]}")
fi
if [[ -n ${DRY_RUN:-} ]]; then printf '%q ' "${CMD[@]}"; echo; exit 0; fi
# glibc maps every allocation above 32 MiB fresh from the kernel and unmaps it on free, so each
# training step page-faults its large activations and gradients in again (on CPU about a third
# of an 8k-token step: docs/benchmark.md). Keep freed memory in the heap instead; set either
# variable yourself to override.
export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-1073741824} MALLOC_TRIM_THRESHOLD_=${MALLOC_TRIM_THRESHOLD_:-2147483648}
exec "${CMD[@]}"
