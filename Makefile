# fairseq-poolingformer: `make demo` and `make test` work from a fresh clone (see README.md).
# Each creates .venv/ when missing and installs the pinned stack once (re-run when a
# requirements file or setup.py changes).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
TORCH  := $(shell grep -E "^torch==" requirements.txt)
STAMP  := $(VENV)/.installed

.PHONY: install help test demo bench probe probe-quick gpu-check clean distclean

install: $(STAMP)

# `make` alone still installs (the first target); `make help` lists the targets and how long
# each takes on a 2-core CPU machine.
help:
	@echo "make install      create .venv/ and install the pinned stack (first time ~5 min, then instant)"
	@echo "make test         the whole test suite on every core (minutes; install first if needed)"
	@echo "make demo         arXiv summarization end to end on CPU: binarize, train, summarize, ROUGE (~2 min)"
	@echo "make bench        attention benchmark, T = 1k..16k, 3 rounds + peak memory (~6 min)"
	@echo "make probe        long-range probe + the paper's ablation grid, 3 seeds (~3 min, up to ~9 under load)"
	@echo "make probe-quick  the probe with 1 seed, 60 steps (~1 min)"
	@echo "make gpu-check    kernels, fp16/bf16 and a short fairseq-train on a CUDA machine (exit 0 without one)"
	@echo "make clean        build artefacts and caches; make distclean also removes .venv/"
	@echo "QA and summarization recipes (GPU, hours to days): make nq-* tydi-* arxiv-4k arxiv-16k (see the Makefile)"

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, alone: with no torch installed, anything asking for it pulls a CUDA build.
# Fairseq and this package last, without their declared dependencies (requirements.txt pins
# what they need): fairseq-fixed's metadata names torchaudio, whose PyPI build does not load
# beside the CPU torch (requirements-fairseq.txt); a venv made before this loses it.
$(STAMP): requirements.txt requirements-dev.txt requirements-fairseq.txt setup.py | $(PY)
	$(PIP) install "$(TORCH)"
	$(PIP) install -r requirements-dev.txt
	$(PIP) install --no-deps -r requirements-fairseq.txt
	$(PIP) install --no-deps -e .
	$(PIP) uninstall -y -q torchaudio 2>/dev/null || true
	touch $@

# The whole suite on every core (pytest-xdist; tests/conftest.py gives each worker its share of
# threads), the 15 slowest tests listed at the end. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= auto
test: install
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal --durations=15 tests

demo: install
	PYTHON=$(PY) recipes/arxiv/demo.sh

bench: install
	@echo "make bench: T = 1k..16k, 3 rounds, then peak memory per run: about 6 minutes on 2 CPU cores" >&2
	$(PY) benchmarks/attention.py

# Long-range probe + the paper's ablation grid on CPU (docs/probe.md): ~10 min on 2 cores.
probe: install
	$(PY) benchmarks/probe.py

probe-quick: install
	$(PY) benchmarks/probe.py --quick

# On a CUDA machine, in about 8 minutes: the attention tests (eager and FlexAttention paths) in
# fp32/fp16/bf16, the NaN check, the 16k module and the training step at 4k/16k/64k against
# full attention, a kernel profile and a short recipes/arxiv/train.sh run (docs/GPU.md).
# Without CUDA it says so and exits 0. Uses $(PY) when the venv exists, else python3 (a GPU
# box may bring its own torch).
GPU_CHECK_OUT ?= gpu-check-results
gpu-check:
	$(if $(wildcard $(PY)),$(PY),$(PYTHON)) benchmarks/gpu_check.py --output-dir $(GPU_CHECK_OUT)

clean:
	rm -rf build dist *.egg-info .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)

# ---------------------------------------------------------------------------------------
# Long-document QA: Natural Questions with Poolingformer RoBERTa-large, TyDi QA with
# Poolingformer XLM-R-large. convert -> binarize -> train (GPU, the paper's settings) ->
# predict (official formats; score with the official scripts, see recipes/*/predict.sh).
# Every path is a variable, e.g.
#   make nq-train ROBERTA_DIR=pretrained/roberta.large NQ_TRAIN=nq/v1.0/train NQ_DEV=nq/v1.0/dev
QA_WORKERS    ?= 8
GPT2_BPE      ?= tests/data/gpt2_bpe
ROBERTA_DIR   ?= pretrained/roberta.large
XLMR_DIR      ?= pretrained/xlmr.large
NQ_TRAIN      ?= data/nq/v1.0/train
NQ_DEV        ?= data/nq/v1.0/dev
NQ_FORMAT     ?= original
NQ_OUT        ?= work/nq
TYDI_TRAIN    ?= data/tydiqa/tydiqa-v1.0-train.jsonl.gz
TYDI_DEV      ?= data/tydiqa/tydiqa-v1.0-dev.jsonl.gz
TYDI_OUT      ?= work/tydi
# Blind test sets (records without annotations): make nq-test NQ_TEST=... binarizes the split
# `test` and writes $(NQ_OUT)/test_predictions.json from checkpoint_best.pt (TyDi: .jsonl).
NQ_TEST       ?=
TYDI_TEST     ?=

NQ_BPE   = --dict $(ROBERTA_DIR)/dict.txt --bpe gpt2 --encoder-json $(GPT2_BPE)/encoder.json \
           --vocab-bpe $(GPT2_BPE)/vocab.bpe --format $(NQ_FORMAT) --workers $(QA_WORKERS)
TYDI_BPE = --dict $(XLMR_DIR)/dict.txt --bpe sentencepiece \
           --sentencepiece-model $(XLMR_DIR)/sentencepiece.bpe.model --workers $(QA_WORKERS)

.PHONY: nq-convert nq-binarize nq-train nq-predict nq-test tydi-convert tydi-binarize tydi-train tydi-predict tydi-test

nq-convert: install
	$(PY) -m fairseq_poolingformer.convert roberta --checkpoint $(ROBERTA_DIR)/model.pt \
	    --dict $(ROBERTA_DIR)/dict.txt --output-dir $(NQ_OUT)/pretrained --arch poolingformer_roberta_large

nq-binarize: install
	PYTHON=$(PY) recipes/nq/binarize.sh $(NQ_OUT) --train $(NQ_TRAIN) --valid $(NQ_DEV) $(NQ_BPE)

nq-train: install
	PYTHON=$(PY) recipes/nq/train.sh $(NQ_OUT)/bin $(NQ_OUT)/pretrained/model.pt $(NQ_OUT)/checkpoints

nq-predict: install
	PYTHON=$(PY) recipes/nq/predict.sh $(NQ_OUT)/checkpoints/checkpoint_best.pt $(NQ_OUT)/bin \
	    $(NQ_OUT)/predictions.json

nq-test: install
	@test -n "$(NQ_TEST)" || { echo "make $@: set NQ_TEST=<NQ test records, annotations not needed>" >&2; exit 2; }
	PYTHON=$(PY) recipes/nq/binarize.sh $(NQ_OUT) --test $(NQ_TEST) $(NQ_BPE)
	PYTHON=$(PY) recipes/nq/predict.sh $(NQ_OUT)/checkpoints/checkpoint_best.pt $(NQ_OUT)/bin \
	    $(NQ_OUT)/test_predictions.json --split test

tydi-convert: install
	$(PY) -m fairseq_poolingformer.convert roberta --checkpoint $(XLMR_DIR)/model.pt \
	    --dict $(XLMR_DIR)/dict.txt --output-dir $(TYDI_OUT)/pretrained --arch poolingformer_xlmr_large

tydi-binarize: install
	PYTHON=$(PY) recipes/tydi/binarize.sh $(TYDI_OUT) --train $(TYDI_TRAIN) --valid $(TYDI_DEV) $(TYDI_BPE)

tydi-train: install
	PYTHON=$(PY) recipes/tydi/train.sh $(TYDI_OUT)/bin $(TYDI_OUT)/pretrained/model.pt $(TYDI_OUT)/checkpoints

tydi-predict: install
	PYTHON=$(PY) recipes/tydi/predict.sh $(TYDI_OUT)/checkpoints/checkpoint_best.pt $(TYDI_OUT)/bin \
	    $(TYDI_OUT)/predictions.jsonl

tydi-test: install
	@test -n "$(TYDI_TEST)" || { echo "make $@: set TYDI_TEST=<TyDi QA test records, annotations not needed>" >&2; exit 2; }
	PYTHON=$(PY) recipes/tydi/binarize.sh $(TYDI_OUT) --test $(TYDI_TEST) $(TYDI_BPE)
	PYTHON=$(PY) recipes/tydi/predict.sh $(TYDI_OUT)/checkpoints/checkpoint_best.pt $(TYDI_OUT)/bin \
	    $(TYDI_OUT)/test_predictions.jsonl --split test

# ---------------------------------------------------------------------------------------
# Long-document summarization: the paper's arXiv table at 4k and 16k source tokens
# (GPU). Binarize (GPT-2 BPE) -> convert BART (positions loop-copied, level 2 from level 1) ->
# fine-tune (batch 128, 10 epochs, lr 2e-4) -> generate (beam 5, lenpen 2) -> ROUGE.
#   make arxiv-16k BART=pretrained/bart.large ARXIV=data/arxiv-dataset
# BART: directory with a Fairseq BART model.pt and dict.txt; ARXIV: Cohan et al.'s
# train.txt/val.txt/test.txt. Training settings are environment variables of
# recipes/arxiv/train.sh (NGPUS, NNODES, NODE_RANK, MASTER_ADDR, PRECISION, ...).
BART          ?=
ARXIV         ?= data/arxiv-dataset
ARXIV_OUT     ?= work/arxiv

.PHONY: arxiv-4k arxiv-16k

arxiv-4k arxiv-16k: arxiv-%: install
	@test -n "$(BART)" || { echo "make $@: set BART=<directory with a Fairseq BART model.pt and dict.txt>" >&2; exit 2; }
	PYTHON=$(PY) GPT2_BPE=$(GPT2_BPE) recipes/arxiv/reproduce.sh $(if $(filter 4k,$*),4096,16384) \
	    $(BART) $(ARXIV) $(ARXIV_OUT)
