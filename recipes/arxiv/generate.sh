#!/usr/bin/env bash
# Summarize a binarized split with a Poolingformer-BART checkpoint (the decoding of pf-summarize and the hub).
#
# Usage:
#   recipes/arxiv/generate.sh DATA_BIN CHECKPOINT OUT_DIR [options] [-- extra fairseq-generate args]
#
# Options:
#   --subset S                      split to summarize (default test)
#   --bpe gpt2 --encoder-json E --vocab-bpe V     decode GPT-2 BPE ids back to text
#   --bpe sentencepiece --sentencepiece-model M   decode sentencepiece pieces back to text
#   --bpe none                      write the hypotheses as they are (default)
#   --batch-size N                  documents per batch (default 4)
#
# Environment: BEAM LENPEN MAX_LEN_A MAX_LEN_B MIN_LEN NO_REPEAT (decoding; defaults: the table in
# fairseq_poolingformer/summarization/decoding.py that pf-summarize and the hub use), MAX_SOURCE
# (default: the checkpoint's --max-source-positions; longer sources are truncated, as in
# training), CPU=1 to force the CPU (default: CPU when no GPU is visible).
#
# Writes OUT_DIR/generate-S.log (fairseq-generate's full output) and OUT_DIR/S.hypotheses:
# one summary per line in the order of the split (line i = example i, the same order as
# binarize.sh's text/S.target and text/S.id). Every example comes out: the script fails if
# any id is missing (Fairseq drops partial batches unless told not to).
# Generation reads the sources only (fairseq-generate gets a view of DATA_BIN without the
# S targets): a reference longer than the model's target positions is neither a reason to
# fail nor to skip a document. Score against the whole references, binarize.sh's text/S.target.
#
# Python: $PYTHON if set, else the repository's .venv/bin/python if present, else python3.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

usage() { sed -n '2,/^[^#]/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }
[[ $# -ge 3 ]] || usage
DATA_BIN=$1; CHECKPOINT=$2; OUT_DIR=$3; shift 3
SUBSET=test; BPE=none; ENCODER_JSON=""; VOCAB_BPE=""; SPM=""; BATCH_SIZE=4; EXTRA=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --subset) SUBSET=$2; shift 2 ;;
        --bpe) BPE=$2; shift 2 ;;
        --encoder-json) ENCODER_JSON=$2; shift 2 ;;
        --vocab-bpe) VOCAB_BPE=$2; shift 2 ;;
        --sentencepiece-model) SPM=$2; shift 2 ;;
        --batch-size) BATCH_SIZE=$2; shift 2 ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) usage ;;
        *) echo "generate.sh: unknown option $1" >&2; usage ;;
    esac
done
die() { echo "generate.sh: $*" >&2; exit 1; }
[[ -f $CHECKPOINT ]] || die "checkpoint not found: $CHECKPOINT"
[[ -f $DATA_BIN/dict.source.txt ]] || die "no dict.source.txt in $DATA_BIN"

BPE_ARGS=()
case $BPE in
    none) ;;
    gpt2) [[ -f $ENCODER_JSON && -f $VOCAB_BPE ]] || die "--bpe gpt2 needs --encoder-json and --vocab-bpe files"
          BPE_ARGS=(--bpe gpt2 --gpt2-encoder-json "$ENCODER_JSON" --gpt2-vocab-bpe "$VOCAB_BPE") ;;
    sentencepiece) [[ -f $SPM ]] || die "--bpe sentencepiece needs --sentencepiece-model FILE"
          BPE_ARGS=(--bpe sentencepiece --sentencepiece-model "$SPM") ;;
    *) die "--bpe must be none, gpt2 or sentencepiece" ;;
esac

# read the checkpoint's config here (memory-mapped: not its weights): an unreadable file, or one
# trained with another dictionary than DATA_BIN's, is one line naming both, not a traceback;
# MAX_SOURCE defaults to the positions the model was trained with, the decoding to the shared table
SETTINGS=$("$PYTHON" - "$CHECKPOINT" "$DATA_BIN" <<'EOF'
import logging, sys
import torch
from fairseq_poolingformer.inference.checkpoint import checkpoint_config, open_checkpoint
from fairseq_poolingformer.inference.errors import CheckpointError
from fairseq_poolingformer.summarization.decoding import shell_defaults
logging.disable(logging.INFO)  # the task's "dictionary: N types" lines: fairseq-generate prints them
path, data = sys.argv[1:]
try:
    state, _task = open_checkpoint(path, {"data": data, "source_lang": "source", "target_lang": "target"},
                                    "translation")
except CheckpointError as e:
    sys.exit(f"generate.sh: {e}")
cfg = checkpoint_config(state)
print(f"CKPT_SOURCE={int(getattr(cfg.model, 'max_source_positions', None) or cfg.task.max_source_positions)}")
print(shell_defaults(), end="")
print(f"HAVE_CUDA={int(torch.cuda.is_available())}")
EOF
) || exit 1
eval "$SETTINGS"
MAX_SOURCE=${MAX_SOURCE:-$CKPT_SOURCE}
DEVICE_ARGS=()
if [[ -n ${CPU:-} || $HAVE_CUDA == 0 ]]; then
    DEVICE_ARGS=(--cpu)
fi

PREFIX=$SUBSET.source-target.source
for f in "$DATA_BIN/$PREFIX.bin" "$DATA_BIN/$PREFIX.idx" "$DATA_BIN/dict.target.txt"; do
    [[ -f $f ]] || die "not found: $f (binarize the $SUBSET split with recipes/arxiv/binarize.sh)"
done
mkdir -p "$OUT_DIR"
# the sources and dictionaries only: Fairseq then neither loads the references nor filters
# examples by their length (a long reference would fail the run or drop the document)
SOURCES=$(mktemp -d "$OUT_DIR/.sources.XXXXXX")
trap 'rm -rf "$SOURCES"' EXIT
for f in dict.source.txt dict.target.txt "$PREFIX.bin" "$PREFIX.idx"; do
    ln -s "$(cd "$DATA_BIN" && pwd)/$f" "$SOURCES/$f"
done
LOG=$OUT_DIR/generate-$SUBSET.log
echo "generate.sh: $SUBSET of $DATA_BIN with $CHECKPOINT (max source $MAX_SOURCE, beam $BEAM, lenpen $LENPEN)" >&2
# pf-generate (the package imported before Fairseq, so Fairseq's import leaves logging alone):
# fairseq-generate's INFO lines then go to the log with the hypotheses, not to the terminal
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m fairseq_poolingformer.cli generate "$SOURCES" \
    --task translation --source-lang source --target-lang target --gen-subset "$SUBSET" \
    --path "$CHECKPOINT" --max-source-positions "$MAX_SOURCE" --truncate-source \
    --beam "$BEAM" --lenpen "$LENPEN" --max-len-a "$MAX_LEN_A" --max-len-b "$MAX_LEN_B" \
    --min-len "$MIN_LEN" --no-repeat-ngram-size "$NO_REPEAT" \
    --batch-size "$BATCH_SIZE" --required-batch-size-multiple 1 \
    "${BPE_ARGS[@]}" "${DEVICE_ARGS[@]}" "${EXTRA[@]}" > "$LOG"

# D-<id> lines hold the detokenized hypotheses; write them in id order, all of them.
"$PYTHON" - "$LOG" "$OUT_DIR/$SUBSET.hypotheses" "$DATA_BIN" "$SUBSET" <<'EOF'
import os, sys
log, out, data_bin, subset = sys.argv[1:]
import struct
prefix = f"{data_bin}/{subset}.source-target.source"
with open(prefix + ".idx", "rb") as f:  # fairseq-preprocess's mmap index: magic, version, dtype, count
    head = f.read(26)
if head[:9] == b"MMIDIDX\x00\x00":
    n = struct.unpack("<Q", head[18:26])[0]
else:  # another dataset format: ask Fairseq (slower import)
    from fairseq.data import data_utils
    n = len(data_utils.load_indexed_dataset(prefix, None))
hyps = {}
with open(log, encoding="utf-8") as f:
    for line in f:
        if line.startswith("D-"):
            idx, _score, text = line.rstrip("\n").split("\t", 2)
            hyps[int(idx[2:])] = text
missing = sorted(set(range(n)) - set(hyps))
if missing:
    sys.exit(f"generate.sh: {len(missing)} of {n} examples missing from {log} (ids {missing[:10]})")
tmp = out + ".tmp"
with open(tmp, "w", encoding="utf-8") as f:
    for i in range(n):
        f.write(hyps[i] + "\n")
os.replace(tmp, out)
print(f"generate.sh: {n} summaries -> {out}", file=sys.stderr)
EOF
