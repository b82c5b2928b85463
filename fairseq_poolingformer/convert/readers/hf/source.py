"""One HF directory -> a core :class:`Source`: its weights translated for its model family, its
tokenizer written as Fairseq's dict.txt and BPE files, and the tensor accounting beside them."""

from __future__ import annotations

import argparse
import contextlib
import os
from typing import Callable, Iterator

from fairseq_poolingformer.convert.core.errors import ConversionError
from fairseq_poolingformer.convert.core.ledger import log_summary
from fairseq_poolingformer.convert.core.output import staging_directory
from fairseq_poolingformer.convert.core.source import Source
from fairseq_poolingformer.convert.core.weights import is_level2_key
from fairseq_poolingformer.convert.readers.hf.bart import bart_from_hf, led_from_hf
from fairseq_poolingformer.convert.readers.hf.directory import read_hf_directory
from fairseq_poolingformer.convert.readers.hf.roberta import roberta_from_hf
from fairseq_poolingformer.convert.readers.hf.vocab import read_hf_vocabulary, write_tokenizer_files

TRANSLATORS = {"bart": bart_from_hf, "led": led_from_hf, "roberta": roberta_from_hf}
# the key of the token embeddings in each family's Fairseq state dict (its rows: the vocabulary)
EMBED_TOKENS = {"bart": "encoder.embed_tokens.weight", "led": "encoder.embed_tokens.weight",
                "roberta": "encoder.sentence_encoder.embed_tokens.weight"}


def level2_or_lm_head(lm_head_is_new: bool) -> Callable[[str], bool]:
    """The parameters a converted RoBERTa may lack: level 2's, and the LM head's when the HF
    model has none (``*Model`` and task models; ``long_qa`` never uses it)."""
    return lambda key: is_level2_key(key) or (lm_head_is_new and key.startswith("encoder.lm_head."))


@contextlib.contextmanager
def hf_source(args: argparse.Namespace, family: str) -> Iterator[Source]:
    """``convert bart|roberta|led --hf DIR``: DIR translated for ``family`` (a key of
    :data:`TRANSLATORS`). Its dict.txt, BPE files and ``hf_conversion.txt`` lie in a staging
    directory next to ``--output-dir`` until the block ends."""
    if getattr(args, "dict", None) or getattr(args, "keep_level2", False):
        raise ConversionError("--dict and --keep-level2 go with --checkpoint; with --hf the dictionary is built "
                              "from DIR's tokenizer (and a Hugging Face model has no level 2)")
    hf = read_hf_directory(args.hf)
    weights, src_args, ledger = TRANSLATORS[family](hf)
    vocab = read_hf_vocabulary(args.hf)
    with staging_directory(os.path.abspath(args.output_dir)) as tmp:
        rows = weights[EMBED_TOKENS[family]].shape[0]
        files = write_tokenizer_files(vocab, rows, family != "roberta", tmp) + [log_summary(ledger, tmp)]
        new_key = level2_or_lm_head("encoder.lm_head.weight" not in weights) if family == "roberta" else is_level2_key
        yield Source(weights, src_args, files[0], hf.path, files[1:], new_key=new_key)
