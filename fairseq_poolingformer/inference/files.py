"""The files beside a checkpoint, found in one order by every tool.

In a checkpoint's directory, the first name that is a file wins:

==============  ===============================================================
checkpoint      ``model.pt``, ``checkpoint_best.pt``, ``checkpoint_last.pt``
dictionary      ``dict.txt``
sentencepiece   ``sentencepiece.bpe.model`` (what ``convert`` writes), ``spm.model``
GPT-2 BPE       ``encoder.json`` + ``vocab.bpe``
==============  ===============================================================

Files given explicitly always win; without any, a sentencepiece model beside the checkpoint is
preferred to GPT-2 files beside it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from fairseq_poolingformer.inference.errors import CheckpointError
from fairseq_poolingformer.preprocess.bpe import check_gpt2_files

CHECKPOINT_NAMES = ("model.pt", "checkpoint_best.pt", "checkpoint_last.pt")
DICT_NAME = "dict.txt"
SPM_NAMES = ("sentencepiece.bpe.model", "spm.model")
GPT2_NAMES = ("encoder.json", "vocab.bpe")
BPE_KINDS = ("gpt2", "sentencepiece")
# each BPE file: what it is, and the names it has beside a checkpoint
BPE_FILES = {"sentencepiece_model": ("sentencepiece model", SPM_NAMES),
             "encoder_json": ("GPT-2 BPE file", GPT2_NAMES[:1]),
             "vocab_bpe": ("GPT-2 BPE file", GPT2_NAMES[1:])}


def find_beside(directory: str, *names: str) -> Optional[str]:
    """The first of ``names`` that is a file in ``directory``, or None."""
    return next((os.path.join(directory, n) for n in names if os.path.isfile(os.path.join(directory, n))), None)


def resolve_checkpoint(path: str, checkpoint_file: Optional[str] = None,
                       names: Sequence[str] = CHECKPOINT_NAMES) -> str:
    """A checkpoint file; in a directory, ``checkpoint_file`` when given, else the first of
    ``names``; CheckpointError otherwise."""
    if checkpoint_file and os.path.isdir(path):
        path = os.path.join(path, checkpoint_file)
    if os.path.isfile(path):
        return path
    if os.path.isdir(path):
        found = find_beside(path, *names)
        if found:
            return found
        raise CheckpointError(f"{path}: no checkpoint in this directory (looked for {', '.join(names)})")
    raise CheckpointError(f"checkpoint not found: {path}")


@dataclass(frozen=True)
class BpeFiles:
    """The BPE a model was trained with: ``kind`` and its files (None where none was found)."""
    kind: str                                  # "sentencepiece" or "gpt2"
    sentencepiece_model: Optional[str] = None
    encoder_json: Optional[str] = None
    vocab_bpe: Optional[str] = None

    def check(self, model_dir: str, labels: Mapping[str, str]) -> None:
        """CheckpointError naming the first file this BPE needs that is missing or is not what it
        should be (a sentencepiece model; GPT-2's encoder.json and vocab.bpe); ``labels``: how
        the tool calls each field (``--vocab-bpe``, ``gpt2_vocab_bpe``)."""
        fields = ("sentencepiece_model",) if self.kind == "sentencepiece" else ("encoder_json", "vocab_bpe")
        for name in fields:
            path, (what, beside) = getattr(self, name), BPE_FILES[name]
            if not path:
                raise CheckpointError(f"{what} {labels[name]} not found: none given, and no "
                                      f"{' or '.join(beside)} beside the checkpoint in {model_dir}")
            if not os.path.isfile(path):
                raise CheckpointError(f"{what} {labels[name]} not found: {path} (nothing is downloaded)")
        if self.kind == "sentencepiece":
            _check_sentencepiece(self.sentencepiece_model)
        else:
            try:
                check_gpt2_files(self.encoder_json, self.vocab_bpe)
            except ValueError as e:  # not GPT-2 files, or swapped
                raise CheckpointError(str(e)) from None


def not_a_dictionary(path: str, error: BaseException) -> CheckpointError:
    """The error for dictionary file(s) ``path`` that Fairseq cannot read (``error``)."""
    lines = str(error).strip().splitlines()
    return CheckpointError(f"{path}: not a Fairseq dictionary ({lines[0] if lines else type(error).__name__}); "
                           "give the dict.txt the checkpoint was trained with (lines '<symbol> <count>')")


def check_dictionary(path: str) -> None:
    """CheckpointError naming ``path`` unless Fairseq reads it as a dictionary."""
    from fairseq.data import Dictionary

    try:
        Dictionary.load(path)
    except (ValueError, RuntimeError) as e:  # a line without a count, a word twice, not UTF-8
        raise not_a_dictionary(path, e) from None


def _check_sentencepiece(path: str) -> None:
    import sentencepiece

    try:
        sentencepiece.SentencePieceProcessor(model_file=path)
    except (RuntimeError, OSError, ValueError):
        raise CheckpointError(f"{path}: not a sentencepiece model (the .model file written by "
                              "sentencepiece's trainer that the training data was encoded with)") from None


def find_bpe(model_dir: str, kind: Optional[str] = None, sentencepiece_model: Optional[str] = None,
             encoder_json: Optional[str] = None, vocab_bpe: Optional[str] = None) -> Optional[BpeFiles]:
    """The BPE files as given, the others found beside the checkpoint (the module docstring's
    order); ``kind`` forces the BPE. None when none is given and none lies beside it. The
    paths are not checked here (:meth:`BpeFiles.check`)."""
    if kind is None:
        gpt2_given = bool(encoder_json or vocab_bpe)
        if sentencepiece_model or (not gpt2_given and find_beside(model_dir, *SPM_NAMES)):
            kind = "sentencepiece"
        elif gpt2_given or find_beside(model_dir, *GPT2_NAMES):
            kind = "gpt2"
        else:
            return None
    if kind == "sentencepiece":
        return BpeFiles(kind, sentencepiece_model=sentencepiece_model or find_beside(model_dir, *SPM_NAMES))
    if kind == "gpt2":
        return BpeFiles(kind, encoder_json=encoder_json or find_beside(model_dir, GPT2_NAMES[0]),
                        vocab_bpe=vocab_bpe or find_beside(model_dir, GPT2_NAMES[1]))
    raise ValueError(f"bpe must be one of {BPE_KINDS} (or 'none'), got {kind!r}")


def _is_model_file(name: str) -> bool:
    return (name in CHECKPOINT_NAMES or name in SPM_NAMES or name in GPT2_NAMES or name.endswith(".pt")
            or (name.startswith("dict") and name.endswith(".txt")))


def model_files(checkpoint: str, *given: Optional[str]) -> list[str]:
    """Every file a tool may read for the model at ``checkpoint`` (a file or a directory): the
    checkpoint, the checkpoints, dictionaries and BPE files beside it, and the ``given`` files
    (``--dict``, BPE files; a directory given stands for the dictionaries in it). An output must
    be none of them: they are inputs of ``inference.output.check_output``."""
    def beside(directory: str) -> list[str]:
        names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
        return [os.path.join(directory, n) for n in names if _is_model_file(n)]

    directory = checkpoint if os.path.isdir(checkpoint) else os.path.dirname(checkpoint) or "."
    found = [checkpoint, *beside(directory)]
    for path in filter(None, given):
        found.extend(beside(path) if os.path.isdir(path) else [path])
    return found
