"""Tiny Poolingformer BART models built from an architecture and random sources, for the tests
of the encoder, its layers and what they share (test_bart_model.py, test_forward_cache.py)."""

import argparse
from typing import Any, List, Tuple

import torch

import fairseq_poolingformer  # noqa: F401  (registers the model)
from fairseq.data import Dictionary
from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY

VOCAB = 50


class TinyTask:
    """The source and target dictionaries a model is built with: VOCAB words after the specials."""

    def __init__(self):
        d = Dictionary()
        for i in range(VOCAB):
            d.add_symbol(f"w{i}")
        self.source_dictionary = self.target_dictionary = d


def build(arch: str = "poolingformer_bart_tiny", seed: int = 0, **overrides: Any) -> Tuple[torch.nn.Module, argparse.Namespace]:
    """The model of ``arch`` (dropouts 0 unless overridden), its weights drawn after seeding ``seed``."""
    args = argparse.Namespace(**{"arch": arch, "task": "translation", "dropout": 0.0, "attention_dropout": 0.0,
                                 **overrides})
    ARCH_CONFIG_REGISTRY[arch](args)
    torch.manual_seed(seed)
    return ARCH_MODEL_REGISTRY[arch].build_model(args, TinyTask()), args


def padded(lengths: List[int], left: bool = True, seed: int = 0) -> torch.Tensor:
    """(B, T) sources: random words, eos last, pad (1) on the left (Fairseq's default) or right."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    src = torch.ones(len(lengths), T, dtype=torch.long)
    for i, n in enumerate(lengths):
        seq = torch.cat([torch.randint(4, VOCAB + 4, (n - 1,), generator=g), torch.tensor([2])])
        if left:
            src[i, T - n:] = seq
        else:
            src[i, :n] = seq
    return src
