"""Summarize long documents from Python, like Fairseq's hub interface.

    from fairseq_poolingformer.hub import from_pretrained
    summarizer = from_pretrained("checkpoints/", checkpoint_file="checkpoint_best.pt",
                                 data_name_or_path="data-bin/arxiv",
                                 sentencepiece_model="data/bpe/spm.model")
    summaries = summarizer.sample([doc1, doc2], beam=5, lenpen=2.0, max_len_b=256)

``model_name_or_path`` is a checkpoint directory (with ``checkpoint_file`` in it) or the
checkpoint file itself. ``data_name_or_path`` is the binarized data directory (its
``dict.source.txt``/``dict.target.txt``), a single ``dict.txt`` (joined dictionary), or a
path relative to the checkpoint directory (default ``"."``: the dictionaries lie beside the
checkpoint, as ``fairseq_poolingformer.convert`` writes them).

Text goes through the same steps as the training data: BPE (GPT-2 with
``gpt2_encoder_json``/``gpt2_vocab_bpe``, or ``sentencepiece_model``; found automatically in
the checkpoint directory as ``encoder.json`` + ``vocab.bpe`` or ``spm.model``; with none given
and none found, loading fails: pass ``bpe="none"`` for documents that are already BPE tokens), then the
dictionary with ``</s>`` appended. Sources longer than the model's maximum are truncated (as
``--truncate-source`` does in training); the summary is decoded back to text.

Questions on long documents: ``load_reader`` (a ``long_qa`` checkpoint; ``fairseq_poolingformer.reader``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from argparse import Namespace
from typing import Any, List, Optional, Union

import torch
from fairseq.data import encoders
from fairseq.hub_utils import GeneratorHubInterface

from fairseq_poolingformer.load import check_task, find_beside, load_for_inference, read_checkpoint
from fairseq_poolingformer.preprocess.bpe import check_gpt2_files
from fairseq_poolingformer.reader import QAReader, load_reader  # noqa: F401  (the QA reader, docs/qa.md)

# The models are registered (and compat applied) by fairseq_poolingformer/__init__.py, which Python
# runs before this module; importing it here again would close the cycle
# fairseq_poolingformer -> models.poolingformer_bart -> hub -> fairseq_poolingformer (tests/test_imports.py).

logger = logging.getLogger(__name__)


class PoolingformerSummarizer(GeneratorHubInterface):
    """Fairseq's ``GeneratorHubInterface`` with source truncation and the paper's decoding defaults."""

    def __init__(self, cfg, task, models, bpe=None, tmp_dir: Optional[str] = None):
        super().__init__(cfg, task, models)
        if bpe is not None:
            self.bpe = bpe
        self._tmp_dir = tmp_dir  # a dictionary directory made from a single dict.txt
        limits = self.max_positions  # (source, target) for translation tasks
        self.max_source_tokens = int(limits[0] if isinstance(limits, (tuple, list)) else limits)

    def __del__(self):
        if getattr(self, "_tmp_dir", None):
            shutil.rmtree(self._tmp_dir, ignore_errors=True)

    def encode(self, sentence: str) -> torch.LongTensor:
        """Text -> (n,) token ids ending in </s>, at most the model's source length."""
        if not sentence or not sentence.strip():
            raise ValueError("cannot summarize an empty document")
        tokens = super().encode(sentence)  # (n,) with </s> last
        if tokens.numel() > self.max_source_tokens:
            eos = tokens[-1:]
            tokens = torch.cat([tokens[: self.max_source_tokens - 1], eos])
        return tokens

    def sample(self, sentences: Union[str, List[str]], beam: int = 5, verbose: bool = False,
               lenpen: float = 2.0, max_len_b: int = 256, **kwargs: Any):
        """Summaries of ``sentences`` (documents), in order. Decoding arguments are those of
        ``fairseq-generate`` (``min_len``, ``max_len_a``, ``no_repeat_ngram_size``, ...)."""
        return super().sample(sentences, beam=beam, verbose=verbose, lenpen=lenpen,
                              max_len_b=max_len_b, **kwargs)


SPM_NAMES = ("spm.model", "sentencepiece.bpe.model")  # looked for beside the checkpoint
GPT2_NAMES = ("encoder.json", "vocab.bpe")


def _build_bpe(model_dir: str, bpe: Optional[str], gpt2_encoder_json: Optional[str],
               gpt2_vocab_bpe: Optional[str], sentencepiece_model: Optional[str]):
    if bpe is None:
        if sentencepiece_model or (not gpt2_encoder_json and find_beside(model_dir, *SPM_NAMES)):
            bpe = "sentencepiece"
        elif gpt2_encoder_json or gpt2_vocab_bpe or any(find_beside(model_dir, name) for name in GPT2_NAMES):
            bpe = "gpt2"
    if bpe is None:  # token ids would come back as text ('732 732 732'): refuse
        raise FileNotFoundError(
            f"no BPE for the summarizer: none given and none beside the checkpoint in {model_dir} (looked for "
            f"{', '.join(SPM_NAMES)}, or {' + '.join(GPT2_NAMES)}); pass sentencepiece_model=PATH, or "
            "gpt2_encoder_json=PATH and gpt2_vocab_bpe=PATH, or bpe='none' if the documents are already "
            "BPE tokens")
    if bpe == "none":
        return None
    if bpe == "sentencepiece":
        path = sentencepiece_model or find_beside(model_dir, *SPM_NAMES)
        if not path or not os.path.isfile(path):
            raise FileNotFoundError(f"sentencepiece model not found: {path or model_dir + '/spm.model'}")
        return encoders.build_bpe(Namespace(bpe="sentencepiece", sentencepiece_model=path))
    if bpe == "gpt2":
        enc = gpt2_encoder_json or find_beside(model_dir, "encoder.json")
        voc = gpt2_vocab_bpe or find_beside(model_dir, "vocab.bpe")
        for what, path in (("gpt2_encoder_json", enc), ("gpt2_vocab_bpe", voc)):
            if not path or not os.path.isfile(path):
                raise FileNotFoundError(f"GPT-2 BPE file {what} not found: {path} (nothing is downloaded)")
        check_gpt2_files(enc, voc)
        return encoders.build_bpe(Namespace(bpe="gpt2", gpt2_encoder_json=enc, gpt2_vocab_bpe=voc))
    raise ValueError(f"bpe must be 'gpt2', 'sentencepiece' or 'none', got {bpe!r}")


def from_pretrained(
    model_name_or_path: str,
    checkpoint_file: str = "model.pt",
    data_name_or_path: str = ".",
    bpe: Optional[str] = None,
    gpt2_encoder_json: Optional[str] = None,
    gpt2_vocab_bpe: Optional[str] = None,
    sentencepiece_model: Optional[str] = None,
    source_lang: str = "source",
    target_lang: str = "target",
    batch_size: Optional[int] = None,  # documents per batch (default 4)
    max_tokens: Optional[int] = None,  # or source tokens per batch
    **arg_overrides: Any,
) -> PoolingformerSummarizer:
    """Load a Poolingformer-BART checkpoint as a summarizer (see the module docstring)."""
    if os.path.isfile(model_name_or_path):
        checkpoint = model_name_or_path
    else:
        checkpoint = os.path.join(model_name_or_path, checkpoint_file)
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    state = read_checkpoint(checkpoint)
    check_task(checkpoint, state, "translation")  # before looking for its files
    model_dir = os.path.dirname(os.path.abspath(checkpoint))
    bpe_model = _build_bpe(model_dir, bpe, gpt2_encoder_json, gpt2_vocab_bpe, sentencepiece_model)  # before any work

    data = data_name_or_path
    if data.startswith("."):
        data = os.path.normpath(os.path.join(model_dir, data))
    tmp_dir = None
    if os.path.isfile(data):  # a single joined dict.txt: make a data dir around it
        tmp_dir = tempfile.mkdtemp(prefix="pf_hub_dict.")
        for lang in (source_lang, target_lang):
            shutil.copyfile(data, os.path.join(tmp_dir, f"dict.{lang}.txt"))
        data = tmp_dir
    for lang in (source_lang, target_lang):
        if not os.path.isfile(os.path.join(data, f"dict.{lang}.txt")):
            raise FileNotFoundError(
                f"dictionary not found: {os.path.join(data, f'dict.{lang}.txt')} "
                "(pass data_name_or_path: the binarized data directory or a dict.txt)"
            )

    overrides = {"data": data, "source_lang": source_lang, "target_lang": target_lang, **arg_overrides}
    models, cfg, task = load_for_inference(checkpoint, overrides, "translation", state)  # CheckpointError: another dictionary
    # the training batch limits may be smaller than one long document: use our own
    cfg.dataset.max_tokens = max_tokens
    cfg.dataset.batch_size = batch_size if batch_size is not None else (None if max_tokens else 4)
    summarizer = PoolingformerSummarizer(cfg, task, models, bpe=bpe_model, tmp_dir=tmp_dir)
    return summarizer.eval()
