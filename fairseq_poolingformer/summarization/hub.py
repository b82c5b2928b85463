"""Summarize long documents from Python, like Fairseq's hub interface.

    from fairseq_poolingformer.summarization import from_pretrained
    summarizer = from_pretrained("checkpoints/", checkpoint_file="checkpoint_best.pt",
                                 data_name_or_path="data-bin/arxiv",
                                 sentencepiece_model="data/bpe/spm.model")
    summaries = summarizer.sample([doc1, doc2])      # decoding.DEFAULTS; or beam=4, max_len_b=256, ...

``model_name_or_path`` is the checkpoint file itself or a checkpoint directory: its
``checkpoint_file`` when given, else the first of ``model.pt``, ``checkpoint_best.pt``,
``checkpoint_last.pt`` (``inference.files``, the order of ``pf-summarize`` and every tool).
``data_name_or_path`` is the binarized data directory (its
``dict.source.txt``/``dict.target.txt``; else its ``dict.txt``), a single ``dict.txt`` (joined
dictionary), or a path starting with ``.``, relative to the checkpoint directory (default
``"."``: the dictionaries lie beside the checkpoint, as ``fairseq_poolingformer.convert``
writes them).

Text goes through the same steps as the training data: BPE (GPT-2 with
``gpt2_encoder_json``/``gpt2_vocab_bpe``, or ``sentencepiece_model``; found beside the
checkpoint in the order ``fairseq_poolingformer.inference.files`` documents; with none given
and none found, loading fails: pass ``bpe="none"`` for documents that are already BPE tokens),
then the dictionary with ``</s>`` appended. Sources longer than the model's maximum are truncated (as
``--truncate-source`` does in training); the summary is decoded back to text. The model runs
with ``--attention-impl auto`` whatever it was trained with (``attention_impl=...`` overrides).
Every error, of the checkpoint, its files or the options, is a ``SummarizerError`` (one line).
"""

from __future__ import annotations

import logging
import os
from argparse import Namespace
from dataclasses import asdict, dataclass
from contextlib import nullcontext
from typing import Any, List, Optional, Union

import torch
from fairseq.data import encoders
from fairseq.hub_utils import GeneratorHubInterface

from fairseq_poolingformer.inference.checkpoint import (INFERENCE_ATTENTION, TOOL_ADVICE, check_task, load_for_inference,
                                                        read_checkpoint)
from fairseq_poolingformer.inference.dictionary import dictionary_dir
from fairseq_poolingformer.inference.errors import CheckpointError
from fairseq_poolingformer.inference.files import (BPE_KINDS, DICT_NAME, GPT2_NAMES, SPM_NAMES, check_dictionary,
                                                   find_beside, find_bpe, resolve_checkpoint)
from fairseq_poolingformer.summarization.decoding import DEFAULTS, check_decoding
from fairseq_poolingformer.summarization.errors import SummarizerError

# The models are registered (and compat applied) by fairseq_poolingformer/__init__.py, which Python
# runs before this module; importing it here again would close the cycle
# fairseq_poolingformer -> models.poolingformer_bart -> summarization -> fairseq_poolingformer.

logger = logging.getLogger(__name__)


class PoolingformerSummarizer(GeneratorHubInterface):
    """Fairseq's ``GeneratorHubInterface`` with source truncation and the decoding defaults of
    ``summarization.decoding``."""

    def __init__(self, cfg, task, models, bpe=None):
        super().__init__(cfg, task, models)
        if bpe is not None:
            self.bpe = bpe
        limits = self.max_positions  # (source, target) for translation tasks
        self.max_source_tokens = int(limits[0] if isinstance(limits, (tuple, list)) else limits)
        # the longest summary the decoder can write (Fairseq's generator keeps one position back)
        self.max_target_tokens = int(limits[1]) - 1 if isinstance(limits, (tuple, list)) else None

    def encode(self, sentence: str) -> torch.LongTensor:
        """Text -> (n,) token ids ending in </s>, at most the model's source length."""
        if not sentence or not sentence.strip():
            raise SummarizerError("cannot summarize an empty document")
        tokens = super().encode(sentence)  # (n,) with </s> last
        if tokens.numel() > self.max_source_tokens:
            eos = tokens[-1:]
            tokens = torch.cat([tokens[: self.max_source_tokens - 1], eos])
        return tokens

    def sample(self, sentences: Union[str, List[str]], verbose: bool = False, **kwargs: Any):
        """Summaries of ``sentences`` (documents), in order. Decoding arguments are those of
        ``fairseq-generate`` (``beam``, ``lenpen``, ``min_len``, ``max_len_b``,
        ``no_repeat_ngram_size``, ...); those not given are ``decoding.DEFAULTS``. Options that
        cannot be honoured (``min_len`` above ``max_len_b``, ``beam=0``) raise SummarizerError."""
        options = {**DEFAULTS.as_kwargs(), **kwargs}
        check_decoding(options, self.max_target_tokens)
        return super().sample(sentences, verbose=verbose, **options)


@dataclass(frozen=True)
class Names:
    """How errors name the summarizer's options: the hub's parameters, or pf-summarize's flags."""
    sentencepiece_model: str = "sentencepiece_model"
    encoder_json: str = "gpt2_encoder_json"
    vocab_bpe: str = "gpt2_vocab_bpe"
    data: str = "data_name_or_path"
    given: str = "{}=PATH"        # an option with a path
    no_bpe: str = "bpe='none'"


PARAMETERS = Names()
FLAGS = Names("--sentencepiece-model", "--gpt2-encoder-json", "--gpt2-vocab-bpe", "--dict", "{} PATH", "--bpe none")


def build_bpe(model_dir: str, bpe: Optional[str], gpt2_encoder_json: Optional[str],
              gpt2_vocab_bpe: Optional[str], sentencepiece_model: Optional[str], names: Names = PARAMETERS):
    """Fairseq's BPE object for the files given or beside the checkpoint (``inference.files``);
    None for ``bpe="none"``."""
    if bpe not in (None, "none", *BPE_KINDS):
        raise SummarizerError(f"bpe must be 'gpt2', 'sentencepiece' or 'none', got {bpe!r}")
    if bpe == "none":
        return None
    files = find_bpe(model_dir, bpe, sentencepiece_model, gpt2_encoder_json, gpt2_vocab_bpe)
    if files is None:  # token ids would come back as text ('732 732 732'): refuse
        raise SummarizerError(
            f"no BPE for the summarizer: none given and none beside the checkpoint in {model_dir} (looked for "
            f"{', '.join(SPM_NAMES)}, or {' + '.join(GPT2_NAMES)}); pass "
            f"{names.given.format(names.sentencepiece_model)}, or {names.given.format(names.encoder_json)} and "
            f"{names.given.format(names.vocab_bpe)}, or {names.no_bpe} if the documents are already BPE tokens")
    files.check(model_dir, asdict(names))  # present and parsing: CheckpointError naming the file
    if files.kind == "sentencepiece":
        return encoders.build_bpe(Namespace(bpe="sentencepiece", sentencepiece_model=files.sentencepiece_model))
    return encoders.build_bpe(Namespace(bpe="gpt2", gpt2_encoder_json=files.encoder_json,
                                        gpt2_vocab_bpe=files.vocab_bpe))


def _data_dir(model_dir: str, data_name_or_path: str, dictionaries: List[str], names: Names) -> str:
    """The binarized data directory or dict.txt that ``data_name_or_path`` names (a path starting
    with ``.``: relative to ``model_dir``), each dictionary the task will read checked: the one
    that does not parse is named, before the task reads them all."""
    data = data_name_or_path
    if data.startswith("."):
        data = os.path.normpath(os.path.join(model_dir, data))
    if not os.path.exists(data):
        raise SummarizerError(f"dictionary not found: {data} (the binarized data directory or a dict.txt)")
    if os.path.isdir(data) and not find_beside(data, *dictionaries):
        data = find_beside(data, DICT_NAME) or data  # a joined dict.txt (as convert writes it)
    if os.path.isfile(data):
        check_dictionary(data)  # named as given, not as the temporary copy the task reads
        return data
    for name in dictionaries:
        path = os.path.join(data, name)
        if not os.path.isfile(path):
            raise SummarizerError(f"dictionary not found: {path} (pass {names.data}: the binarized data directory "
                                  "or a dict.txt)")
        check_dictionary(path)
    return data


def from_pretrained(
    model_name_or_path: str,
    checkpoint_file: Optional[str] = None,
    data_name_or_path: str = ".",
    bpe: Optional[str] = None,
    gpt2_encoder_json: Optional[str] = None,
    gpt2_vocab_bpe: Optional[str] = None,
    sentencepiece_model: Optional[str] = None,
    source_lang: str = "source",
    target_lang: str = "target",
    batch_size: Optional[int] = None,  # documents per batch (default 4)
    max_tokens: Optional[int] = None,  # or source tokens per batch
    names: Names = PARAMETERS,  # how errors name the options (pf-summarize: its flags)
    **arg_overrides: Any,
) -> PoolingformerSummarizer:
    """Load a Poolingformer-BART checkpoint as a summarizer (see the module docstring); every
    error is a SummarizerError (one line)."""
    dictionaries = [f"dict.{lang}.txt" for lang in (source_lang, target_lang)]
    try:
        checkpoint = resolve_checkpoint(model_name_or_path, checkpoint_file)
        state = read_checkpoint(checkpoint)
        check_task(checkpoint, state, "translation")  # before looking for its files
        model_dir = os.path.dirname(os.path.abspath(checkpoint))
        bpe_model = build_bpe(model_dir, bpe, gpt2_encoder_json, gpt2_vocab_bpe, sentencepiece_model, names)  # first
        data = _data_dir(model_dir, data_name_or_path, dictionaries, names)
        # a single joined dict.txt is given to both sides, from a temporary directory
        with dictionary_dir(data, dictionaries) if os.path.isfile(data) else nullcontext(data) as data_dir:
            # the attention that fits the machine: a checkpoint trained with flex runs eagerly on a CPU
            overrides = {"data": data_dir, "source_lang": source_lang, "target_lang": target_lang,
                         **INFERENCE_ATTENTION, **arg_overrides}
            models, cfg, task = load_for_inference(checkpoint, overrides, None, state,  # task checked above
                                                   TOOL_ADVICE)  # another dictionary: named
    except CheckpointError as e:  # the floor's error, as the summarizer's (as qa's reader does)
        raise SummarizerError(str(e)) from None
    # the training batch limits may be smaller than one long document: use our own
    cfg.dataset.max_tokens = max_tokens
    cfg.dataset.batch_size = batch_size if batch_size is not None else (None if max_tokens else 4)
    summarizer = PoolingformerSummarizer(cfg, task, models, bpe=bpe_model)
    return summarizer.eval()
