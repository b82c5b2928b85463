#!/usr/bin/env bash
# Natural Questions -> QA windows (JSONL) -> Fairseq binaries for the long_qa task.
# (recipes/tydi/binarize.sh runs this script for TyDi QA.)
#
# Usage:
#   recipes/nq/binarize.sh OUT_DIR [--train PATH] [--valid PATH] [--test PATH] --dict D \
#       --bpe gpt2 --encoder-json E --vocab-bpe V [options]
#   recipes/nq/binarize.sh OUT_DIR ... --dict D --bpe sentencepiece --sentencepiece-model M [options]
#
# PATH: a JSONL(.gz) file, or a directory of *.jsonl(.gz) shards (NQ original release:
# v1.0/train/ and v1.0/dev/). At least one of --train / --valid / --test. --test is a blind test
# set (records without annotations; labelled records work too): every window is kept, no label
# is written, and the split can be predicted, not trained on. --dict is the model's
# dictionary (RoBERTa dict.txt for GPT-2 BPE, XLM-R dict.txt for sentencepiece).
#
# Options handled here:
#   --workers N             processes for every step (default 1)
#   --on-error fail|skip    bad records: stop and write nothing (default), or skip and count
# Every other option goes to `python -m fairseq_poolingformer.preprocess.nq` (or fairseq_poolingformer.preprocess.tydi), e.g.
#   --format simplified|original   --html drop|keep   --answer-boundaries split|snap (TyDi)
#   --max-length 4096 --doc-stride 1568 --max-question-len 64 --negative-rate R --seed S
# (defaults: the paper's windows; negatives kept at 0.5 in train, all kept in valid).
#
# Writes:
#   OUT_DIR/jsonl/{train,valid,test}.{examples,windows}.jsonl.gz   docs/qa_data_format.md
#   OUT_DIR/jsonl/{train,valid,test}.report.json                   kept/skipped counts, window counts
#   OUT_DIR/bin/                      python -m fairseq_poolingformer.preprocess.qa_binarize output: the data dir for
#                                     fairseq-train --task long_qa and predict_qa (splits train,
#                                     valid, test)
# Each step writes its outputs atomically; the binaries are built in a temporary directory and
# moved into OUT_DIR/bin only when every split given was binarized (other splits already in
# OUT_DIR/bin are left as they are).
#
# Python: $PYTHON if set, else the repository's .venv/bin/python if present, else python3.
set -euo pipefail

usage() { sed -n '2,/^[^#]/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
# preprocessing registers nothing with Fairseq: skip the plugin's model imports (~6 s a step)
export FAIRSEQ_POOLINGFORMER_TORCH_ONLY=1
DATASET=${QA_DATASET:-nq}   # set to tydi by recipes/tydi/binarize.sh
NAME="recipes/$DATASET/binarize.sh"
die() { echo "$NAME: $*" >&2; exit 1; }

[[ $# -ge 1 && $1 != -* ]] || usage
OUT_DIR=$1; shift
TRAIN=""; VALID=""; TEST=""; DICT=""; WORKERS=1; ON_ERROR=fail; PASS=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --train) TRAIN=$2; shift 2 ;;
        --valid) VALID=$2; shift 2 ;;
        --test) TEST=$2; shift 2 ;;
        --dict) DICT=$2; shift 2 ;;
        --workers) WORKERS=$2; shift 2 ;;
        --on-error) ON_ERROR=$2; shift 2 ;;
        -h|--help) usage ;;
        --*) if [[ $# -ge 2 && $2 != --* ]]; then PASS+=("$1" "$2"); shift 2
             else PASS+=("$1"); shift; fi ;;   # a flag such as --no-progress
        *) die "unexpected argument $1" ;;
    esac
done
[[ -n $TRAIN || -n $VALID || -n $TEST ]] || die "give --train, --valid and/or --test"
[[ -n $DICT && -f $DICT ]] || die "--dict: the model's dict.txt is required (not found: '$DICT')"

JSONL=$OUT_DIR/jsonl; BIN=$OUT_DIR/bin
mkdir -p "$OUT_DIR"
SPLITS=()
[[ -n $TRAIN ]] && SPLITS+=(train)
[[ -n $VALID ]] && SPLITS+=(valid)
[[ -n $TEST ]] && SPLITS+=(test)

echo "== 1/2 $DATASET -> windows (${SPLITS[*]})" >&2
for split in "${SPLITS[@]}"; do
    case $split in train) input=$TRAIN ;; valid) input=$VALID ;; test) input=$TEST ;; esac
    "$PYTHON" -m "fairseq_poolingformer.preprocess.$DATASET" --input "$input" --output-dir "$JSONL" --split "$split" \
        --dict "$DICT" --workers "$WORKERS" --on-error "$ON_ERROR" --compress ${PASS[@]+"${PASS[@]}"}
done

echo "== 2/2 windows -> $BIN" >&2
TMP_BIN=$(mktemp -d "$OUT_DIR/.bin.tmp.XXXXXX")
trap 'rm -rf "$TMP_BIN"' EXIT
for split in "${SPLITS[@]}"; do
    "$PYTHON" -m fairseq_poolingformer.preprocess.qa_binarize --windows "$JSONL/$split.windows.jsonl.gz" \
        --examples "$JSONL/$split.examples.jsonl.gz" --dict "$DICT" --split "$split" \
        --destdir "$TMP_BIN" --workers "$WORKERS"
done
mkdir -p "$BIN"
mv -f "$TMP_BIN"/* "$BIN"/   # replaces the binarized splits given here, keeps the others
rmdir "$TMP_BIN"
trap - EXIT
echo "$NAME: done: $BIN (reports: $JSONL/*.report.json)" >&2
