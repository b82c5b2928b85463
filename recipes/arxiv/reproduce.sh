#!/usr/bin/env bash
# The paper's arXiv experiment end to end (GPU): binarize -> convert BART -> fine-tune -> generate -> ROUGE.
# `make arxiv-4k` and `make arxiv-16k` run it.
#
# Usage: recipes/arxiv/reproduce.sh MAX_SOURCE BART_DIR ARXIV_DIR OUT_DIR
#
#   MAX_SOURCE  4096 or 16384 (the paper's two settings; any length works)
#   BART_DIR    a Fairseq BART: model.pt and dict.txt (bart.large for the paper)
#   ARXIV_DIR   Cohan et al.'s arXiv release: train.txt, val.txt, test.txt (JSONL)
#   OUT_DIR     OUT_DIR/data (binarized once, shared by both settings), OUT_DIR/{init,ckpt,gen}-MAX_SOURCE,
#               OUT_DIR/rouge-MAX_SOURCE.json
#
# Environment: GPT2_BPE (directory with encoder.json and vocab.bpe; default the copies bundled
# in tests/data/gpt2_bpe), WORKERS=8 (preprocessing processes), and every variable of
# recipes/arxiv/train.sh (NGPUS, NNODES, PRECISION, ...) and generate.sh (BEAM, LENPEN, ...).
# Steps whose outputs exist are skipped (delete them to redo).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHON PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

[[ $# -eq 4 ]] || { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
MAX_SOURCE=$1; BART=$2; ARXIV=$3; OUT=$4
GPT2_BPE=${GPT2_BPE:-$REPO/tests/data/gpt2_bpe}
WORKERS=${WORKERS:-8}
R=$REPO/recipes/arxiv
die() { echo "reproduce.sh: $*" >&2; exit 1; }
for f in "$BART/model.pt" "$BART/dict.txt" "$GPT2_BPE/encoder.json" "$GPT2_BPE/vocab.bpe"; do
    [[ -f $f ]] || die "not found: $f"
done
[[ -d $ARXIV ]] || die "arXiv data directory not found: $ARXIV"

if [[ ! -f $OUT/data/bin/dict.source.txt ]]; then
    "$R/binarize.sh" "$ARXIV" "$OUT/data" --bpe gpt2 --encoder-json "$GPT2_BPE/encoder.json" \
        --vocab-bpe "$GPT2_BPE/vocab.bpe" --dict "$BART/dict.txt" --workers "$WORKERS"
fi
if [[ ! -f $OUT/init-$MAX_SOURCE/model.pt ]]; then
    "$PYTHON" -m fairseq_poolingformer.convert bart --checkpoint "$BART/model.pt" --dict "$BART/dict.txt" \
        --max-source-positions "$MAX_SOURCE" --output-dir "$OUT/init-$MAX_SOURCE"
fi
if [[ ! -f $OUT/ckpt-$MAX_SOURCE/checkpoint_best.pt ]]; then
    INIT="$OUT/init-$MAX_SOURCE/model.pt" MAX_SOURCE=$MAX_SOURCE \
        "$R/train.sh" "$OUT/data/bin" "$OUT/ckpt-$MAX_SOURCE"
fi
"$R/generate.sh" "$OUT/data/bin" "$OUT/ckpt-$MAX_SOURCE/checkpoint_best.pt" "$OUT/gen-$MAX_SOURCE" \
    --subset test --bpe gpt2 --encoder-json "$GPT2_BPE/encoder.json" --vocab-bpe "$GPT2_BPE/vocab.bpe"
"$PYTHON" "$R/score.py" --hypotheses "$OUT/gen-$MAX_SOURCE/test.hypotheses" \
    --references "$OUT/data/text/test.target" --json "$OUT/rouge-$MAX_SOURCE.json"
