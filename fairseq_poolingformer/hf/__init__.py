"""Hugging Face ``save_pretrained`` directories -> what ``convert`` reads from Fairseq releases.

``convert bart|roberta|led --hf DIR`` reads ``DIR/config.json``, the weights
(``model.safetensors``, ``pytorch_model.bin`` or their sharded ``*.index.json`` forms) and the
tokenizer files, and translates them into a Fairseq-release state dict, model arguments and
``dict.txt``; :mod:`fairseq_poolingformer.convert` then does what it does for Fairseq releases
(positions, level 2, checkpoint). ``transformers`` is never imported: weights are read with
``safetensors`` / ``torch.load(weights_only=True)``, configs and tokenizers as JSON.

Every tensor of the HF checkpoint is accounted for by a :class:`TensorLedger`: mapped (renamed),
folded (added into another tensor, exactly), or dropped with a reason; a tensor left over (one
this module does not know) or one that is missing is an error naming it.

Vocabulary (ids must equal the HF tokenizer's ids, and the embedding rows):

- Fairseq's ``Dictionary`` puts ``<s> <pad> </s> <unk>`` at ids 0-3 and reads the other symbols
  from ``dict.txt`` in order; BART, RoBERTa, XLM-R and LED vocabularies already put their
  specials at 0-3 (checked), so ``dict.txt`` lists HF ids 4, 5, ... in order.
- GPT-2 byte-level BPE (BART, RoBERTa, LED): Fairseq's ``gpt2`` BPE turns text into the ids of
  its ``encoder.json`` written as strings, which ``dict.txt`` maps to rows. We write the HF
  vocabulary itself as ``encoder.json`` (token -> HF id) and its merges as ``vocab.bpe``, and
  ``dict.txt`` line ``k - 4`` is the string ``k``: text -> HF id -> the same row.
- sentencepiece (XLM-R): ``dict.txt`` holds the pieces in HF id order, and the sentencepiece model
  (``sentencepiece.bpe.model``, required in DIR) is copied; its pieces are checked against the
  HF vocabulary (XLM-R: HF id = sentencepiece id + 1).
- RoBERTa / XLM-R: the last row (``<mask>``) is left out of ``dict.txt``: the ``long_qa`` task adds
  ``<mask>`` itself, as Fairseq's masked-LM task does. BART / LED: every row is in ``dict.txt``.
"""

from __future__ import annotations

import argparse
import os
import shutil

from fairseq_poolingformer.convert import ConversionError
from fairseq_poolingformer.hf.bart import bart_from_hf, led_from_hf
from fairseq_poolingformer.hf.directory import (ACTIVATIONS, FAIRSEQ_SPECIALS, WEIGHT_FILES, HFDirectory,
                                                read_hf_directory)
from fairseq_poolingformer.hf.ledger import TensorLedger, log_summary
from fairseq_poolingformer.hf.roberta import roberta_from_hf
from fairseq_poolingformer.hf.vocab import HFVocabulary, dictionary_symbols, read_hf_vocabulary, write_tokenizer_files

__all__ = ["ACTIVATIONS", "FAIRSEQ_SPECIALS", "WEIGHT_FILES", "HFDirectory", "HFVocabulary", "TRANSLATORS",
           "TensorLedger", "bart_from_hf", "convert_hf", "dictionary_symbols", "led_from_hf", "read_hf_directory",
           "read_hf_vocabulary", "roberta_from_hf", "write_tokenizer_files"]

TRANSLATORS = {"bart": bart_from_hf, "led": led_from_hf, "roberta": roberta_from_hf}


def convert_hf(args: argparse.Namespace, family: str) -> str:
    """``convert bart|roberta|led --hf DIR``: translate DIR, then run the Fairseq-release path."""
    from fairseq_poolingformer import convert

    if getattr(args, "dict", None) or getattr(args, "keep_level2", False):
        raise ConversionError("--dict and --keep-level2 go with --checkpoint; with --hf the dictionary is built "
                              "from DIR's tokenizer (and a Hugging Face model has no level 2)")
    hf = read_hf_directory(args.hf)
    weights, src_args, ledger = TRANSLATORS[family](hf)
    vocab = read_hf_vocabulary(args.hf)
    output_dir = os.path.abspath(args.output_dir)
    tmp = convert._staging_dir(output_dir)
    try:
        if family == "roberta":
            rows = weights["encoder.sentence_encoder.embed_tokens.weight"].shape[0]
            files = write_tokenizer_files(vocab, rows, False, tmp) + [log_summary(ledger, tmp)]
            lm_head_is_new = "encoder.lm_head.weight" not in weights
            return convert.convert_roberta_weights(
                args, weights, src_args, files[0], hf.path, files[1:],
                new_key=lambda k: convert.is_level2_key(k) or (lm_head_is_new and k.startswith("encoder.lm_head.")))
        if getattr(args, "max_source_positions", None) is None:  # LED: its own length by default
            args.max_source_positions = src_args.max_source_positions
        rows = weights["encoder.embed_tokens.weight"].shape[0]
        files = write_tokenizer_files(vocab, rows, True, tmp) + [log_summary(ledger, tmp)]
        return convert.convert_bart_weights(args, weights, src_args, files[0], hf.path, files[1:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
