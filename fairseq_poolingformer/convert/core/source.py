"""What every reader hands the core: a pretrained model in the form of a Fairseq release."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable, Dict, Sequence

import torch

from fairseq_poolingformer.convert.core.weights import is_level2_key


@dataclass
class Source:
    """A pretrained model as a Fairseq release holds it, from whichever source it was read.

    ``weights`` is a Fairseq state dict (BART: ``encoder.*``/``decoder.*``; RoBERTa / XLM-R:
    ``encoder.sentence_encoder.*``), ``args`` its model hyper-parameters (arch, dims, layers,
    dropouts, positions), ``dict_path`` its ``dict.txt`` and ``name`` the checkpoint or directory
    that error messages and the log name. ``extra_files`` are copied beside the converted
    ``model.pt`` (BPE files, ``hf_conversion.txt``). ``keep_level2``: the source already is a
    Poolingformer whose level 2 is kept. ``new_key(k)``: the model parameters the source may lack.
    """

    weights: Dict[str, torch.Tensor]
    args: argparse.Namespace
    dict_path: str
    name: str
    extra_files: Sequence[str] = ()
    keep_level2: bool = False
    new_key: Callable[[str], bool] = is_level2_key
