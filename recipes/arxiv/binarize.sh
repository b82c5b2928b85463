#!/usr/bin/env bash
# arXiv / PubMed (Cohan et al. JSONL) -> plain text -> BPE -> fairseq-preprocess binaries.
#
# Usage:
#   recipes/arxiv/binarize.sh RAW_DIR OUT_DIR --bpe gpt2 --encoder-json E --vocab-bpe V --dict D [options]
#   recipes/arxiv/binarize.sh RAW_DIR OUT_DIR --bpe sentencepiece --vocab-size N [options]
#   recipes/arxiv/binarize.sh RAW_DIR OUT_DIR --bpe sentencepiece --sentencepiece-model M --dict D [options]
#
# RAW_DIR holds train / val (or valid) / test, each as .txt, .jsonl, .txt.gz or .jsonl.gz
# (the arXiv release names its JSONL files train.txt, val.txt, test.txt). With a given
# dictionary (gpt2, or sentencepiece with an existing model) any subset of the splits works,
# e.g. a held-out test split alone against the dictionary of a trained model; training a
# sentencepiece model (--vocab-size) needs the train split.
#
# Options:
#   --workers N            processes for every step (default 1)
#   --on-error skip|fail   bad records: skip and count them (default here: a large corpus may
#                          hold a few empty articles/abstracts), or stop (see
#                          python -m fairseq_poolingformer.preprocess.arxiv --help); reports in OUT_DIR/reports/
#   --max-source-words N   keep the first N words of each article
#   --truncate-target N    cut train and valid targets to a model's N target positions (N-1 BPE
#                          tokens + </s>; Fairseq's training skips longer ones: see train.sh);
#                          test targets and every OUT_DIR/text file stay whole (ROUGE uses those)
#   --max-unk-rate R       fail when more than this fraction of a split's tokens became <unk>
#                          (default 0.01: a dictionary that does not belong to the BPE)
#   --model-type T         sentencepiece model type (unigram, bpe; default unigram)
#
# Writes:
#   OUT_DIR/text/{train,valid,test}.{source,target,id}   one document per line
#   OUT_DIR/bpe/{split}.{source,target}                  GPT-2 ids / sentencepiece pieces
#   OUT_DIR/bpe/spm.model, spm.vocab, dict.txt           (sentencepiece --vocab-size) trained on train;
#                                                        dict.txt: every piece, the joined Fairseq dictionary
#   OUT_DIR/bin/                                         fairseq-preprocess output: the data dir for
#                                                        fairseq-train (--source-lang source --target-lang target)
#   OUT_DIR/reports/{split}.json                         kept / skipped counts by reason
# Every file is written atomically; OUT_DIR/bin is built in a temporary directory and moved
# into place only when fairseq-preprocess succeeded and the <unk> rates are below --max-unk-rate.
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

[[ $# -ge 2 ]] || usage
RAW_DIR=$1; OUT_DIR=$2; shift 2
BPE=""; ENCODER_JSON=""; VOCAB_BPE=""; DICT=""; VOCAB_SIZE=""; SPM_MODEL=""; MODEL_TYPE=unigram
WORKERS=1; ON_ERROR=skip; MAX_SOURCE_WORDS=""; TRUNCATE_TARGET=""; MAX_UNK_RATE=0.01
while [[ $# -gt 0 ]]; do
    case $1 in
        --bpe) BPE=$2; shift 2 ;;
        --encoder-json) ENCODER_JSON=$2; shift 2 ;;
        --vocab-bpe) VOCAB_BPE=$2; shift 2 ;;
        --dict) DICT=$2; shift 2 ;;
        --vocab-size) VOCAB_SIZE=$2; shift 2 ;;
        --sentencepiece-model) SPM_MODEL=$2; shift 2 ;;
        --model-type) MODEL_TYPE=$2; shift 2 ;;
        --truncate-target) TRUNCATE_TARGET=$2; shift 2 ;;
        --max-unk-rate) MAX_UNK_RATE=$2; shift 2 ;;
        --workers) WORKERS=$2; shift 2 ;;
        --on-error) ON_ERROR=$2; shift 2 ;;
        --max-source-words) MAX_SOURCE_WORDS=$2; shift 2 ;;
        -h|--help) usage ;;
        *) echo "binarize.sh: unknown option $1" >&2; usage ;;
    esac
done

die() { echo "binarize.sh: $*" >&2; exit 1; }
case $BPE in
    gpt2)
        [[ -n $ENCODER_JSON && -n $VOCAB_BPE && -n $DICT ]] \
            || die "--bpe gpt2 needs --encoder-json, --vocab-bpe and --dict (nothing is downloaded)"
        for f in "$ENCODER_JSON" "$VOCAB_BPE" "$DICT"; do [[ -f $f ]] || die "not found: $f"; done ;;
    sentencepiece)
        if [[ -n $SPM_MODEL ]]; then
            [[ -z $VOCAB_SIZE ]] || die "give --vocab-size (train a model) or --sentencepiece-model (use one), not both"
            [[ -n $DICT ]] || die "--sentencepiece-model needs --dict (the dict.txt the model was trained with)"
            for f in "$SPM_MODEL" "$DICT"; do [[ -f $f ]] || die "not found: $f"; done
        else
            [[ -n $VOCAB_SIZE ]] || die "--bpe sentencepiece needs --vocab-size (train a model) or --sentencepiece-model M --dict D"
            [[ -z $DICT ]] || die "--dict with --bpe sentencepiece needs the model it belongs to: --sentencepiece-model"
        fi ;;
    *) die "--bpe must be gpt2 or sentencepiece" ;;
esac
[[ -d $RAW_DIR ]] || die "RAW_DIR not found: $RAW_DIR"

# raw file for a split: first of NAME.{txt,jsonl,txt.gz,jsonl.gz} over the given names
find_raw() {
    local name ext
    for name in "$@"; do
        for ext in txt jsonl txt.gz jsonl.gz; do
            if [[ -f $RAW_DIR/$name.$ext ]]; then echo "$RAW_DIR/$name.$ext"; return; fi
        done
    done
}

# plain variables, not an associative array: macOS still ships bash 3.2
RAW_train=$(find_raw train)
RAW_valid=$(find_raw val valid)
RAW_test=$(find_raw test)
# training a sentencepiece model needs train; a given dictionary works with any split
if [[ -z $RAW_train && $BPE == sentencepiece && -z $SPM_MODEL ]]; then
    die "no train.{txt,jsonl}[.gz] in $RAW_DIR: --vocab-size trains the sentencepiece model on it" \
        "(binarize other splits with an existing model: --sentencepiece-model M --dict D)"
fi
SPLITS=()
for split in train valid test; do
    raw_var=RAW_$split
    if [[ -n ${!raw_var} ]]; then SPLITS+=("$split"); else echo "binarize.sh: no $split split in $RAW_DIR, skipped" >&2; fi
done
(( ${#SPLITS[@]} > 0 )) || die "no split in $RAW_DIR: expected train, val (or valid) or test as .txt, .jsonl, .txt.gz or .jsonl.gz"

TEXT=$OUT_DIR/text; BPE_DIR=$OUT_DIR/bpe; BIN=$OUT_DIR/bin; REPORTS=$OUT_DIR/reports
mkdir -p "$OUT_DIR"

echo "== 1/3 JSONL -> text (${SPLITS[*]})" >&2
for split in "${SPLITS[@]}"; do
    raw_var=RAW_$split
    "$PYTHON" -m fairseq_poolingformer.preprocess.arxiv --input "${!raw_var}" --output-dir "$TEXT" --split "$split" \
        --workers "$WORKERS" --on-error "$ON_ERROR" --write-ids --report-json "$REPORTS/$split.json" \
        ${MAX_SOURCE_WORDS:+--max-source-words "$MAX_SOURCE_WORDS"}
done

echo "== 2/3 text -> $BPE" >&2
inputs=(); outputs=()
for split in "${SPLITS[@]}"; do
    inputs+=("$TEXT/$split.source" "$TEXT/$split.target")
    outputs+=("$BPE_DIR/$split.source" "$BPE_DIR/$split.target")
done
bpe_args=(--bpe "$BPE" --workers "$WORKERS" --inputs "${inputs[@]}" --outputs "${outputs[@]}")
if [[ $BPE == gpt2 ]]; then
    bpe_args+=(--encoder-json "$ENCODER_JSON" --vocab-bpe "$VOCAB_BPE")
elif [[ -n $SPM_MODEL ]]; then
    bpe_args+=(--sentencepiece-model "$SPM_MODEL")
else
    SPM_MODEL=$BPE_DIR/spm.model DICT=$BPE_DIR/dict.txt
    bpe_args+=(--sentencepiece-model "$SPM_MODEL" --sentencepiece-train --vocab-size "$VOCAB_SIZE"
               --model-type "$MODEL_TYPE" --train-inputs "$TEXT/train.source" "$TEXT/train.target"
               --write-dict "$DICT")
fi
"$PYTHON" -m fairseq_poolingformer.preprocess.bpe "${bpe_args[@]}"
if [[ -n $TRUNCATE_TARGET ]]; then  # train/valid targets only: the test references stay whole
    cut=()
    for split in "${SPLITS[@]}"; do [[ $split == test ]] || cut+=("$BPE_DIR/$split.target"); done
    (( ${#cut[@]} == 0 )) || "$PYTHON" -m fairseq_poolingformer.preprocess.bpe --truncate-lines "$TRUNCATE_TARGET" \
        --inputs "${cut[@]}"
fi

echo "== 3/3 fairseq-preprocess -> $BIN" >&2
pre_args=(--source-lang source --target-lang target --workers "$WORKERS")
[[ -n $RAW_train ]] && pre_args+=(--trainpref "$BPE_DIR/train")
[[ -n $RAW_valid ]] && pre_args+=(--validpref "$BPE_DIR/valid")
[[ -n $RAW_test ]] && pre_args+=(--testpref "$BPE_DIR/test")
# GPT-2: BART's dict.txt. sentencepiece: one joined dictionary holding every piece of the
# model (written by fairseq_poolingformer.preprocess.bpe --write-dict), rather than --joined-dictionary,
# which would only hold the pieces seen in the train split and map the others to <unk>.
pre_args+=(--srcdict "$DICT" --tgtdict "$DICT")
TMP_BIN=$(mktemp -d "$OUT_DIR/.bin.tmp.XXXXXX")
trap 'rm -rf "$TMP_BIN"' EXIT
# pf-preprocess: the package imported before Fairseq, whose import would otherwise set logging to
# DEBUG; its per-file INFO lines (types, tokens, <unk> share) come back with LOGLEVEL=INFO
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" LOGLEVEL=${LOGLEVEL:-WARNING} \
    "$PYTHON" -m fairseq_poolingformer.cli preprocess "${pre_args[@]}" --destdir "$TMP_BIN"
if [[ $BPE == gpt2 ]]; then bpe_files="--encoder-json $ENCODER_JSON and --vocab-bpe $VOCAB_BPE"
else bpe_files="--sentencepiece-model $SPM_MODEL"; fi
"$PYTHON" -m fairseq_poolingformer.preprocess.unk_rate "$TMP_BIN" --splits "${SPLITS[@]}" \
    --max-unk-rate "$MAX_UNK_RATE" --dict "$DICT" --bpe-files "$bpe_files" \
    || die "nothing written to $BIN"
rm -rf "$BIN"
mv "$TMP_BIN" "$BIN"
trap - EXIT
echo "binarize.sh: done: $BIN (reports: $REPORTS)" >&2
