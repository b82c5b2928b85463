"""Small probe classifiers built from the project's own encoder, and the ablation variants.

Every variant is a ``PoolingformerTransformerEncoder`` (the encoder the BART and RoBERTa
models use: Fairseq's post-norm layers, sinusoidal positions, scaled embeddings) with a
linear classifier on the final hidden state of the query (position 0). Variants differ only in
their attention (``PoolingformerConfig``); ``--pf-global none`` throughout, because a global
token would carry the far evidence to the query through level 1 and hide what level 2 does.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Dict, FrozenSet

import torch
from torch import nn

from fairseq.data import Dictionary
from fairseq.models.transformer import Embedding, TransformerConfig

from fairseq_poolingformer.models.encoder import (
    PoolingformerConfig,
    PoolingformerTransformerEncoder,
    parse_layer_spec,
)


@dataclass(frozen=True)
class ProbeModelConfig:
    """Encoder size and the attention knobs shared by all variants (the paper's names)."""

    dim: int = 16
    heads: int = 2
    ffn_dim: int = 32
    layers: int = 4
    w1: int = 4
    w2: int = 32
    kernel: int = 5
    stride: int = 4
    default_two_level: str = "2"  # 0-based, as --pf-layers


@dataclass(frozen=True)
class Variant:
    """One row of the ablation grid. ``two_level``: a ``--pf-layers`` spec or None for the
    default; ``full``: level 1 with ``w1 >= seq_len`` (every token sees every token)."""

    name: str
    description: str
    pooling: str = "ldconv"
    two_level: str | None = None
    mix: bool = False
    share_weights: bool = False
    full: bool = False


def paper_variants(cfg: ProbeModelConfig) -> Dict[str, Variant]:
    """The paper's ablations (pooling types, Mix, weight sharing, number of two-level layers)
    plus the two bounds: sliding window only and full attention."""
    n = cfg.layers
    some = f"1-{n - 2}" if n >= 4 else cfg.default_two_level
    variants = [
        Variant("level1", f"sliding window only (w1={cfg.w1}) in all {n} layers", two_level="none"),
        Variant("two_level_mean", "two-level, mean pooling", pooling="mean"),
        Variant("two_level_max", "two-level, max pooling", pooling="max"),
        Variant("two_level_ldconv", "two-level, LDConv pooling (the paper's choice)", pooling="ldconv"),
        Variant("two_level_mean_ldconv", "two-level, mean-LDConv pooling", pooling="mean_ldconv"),
        Variant("mix", "two-level (LDConv), level 2 reads the layer input X instead of Y", mix=True),
        Variant("share", "two-level (LDConv), level 2 reuses level 1's q/k/v projections",
                share_weights=True),
        Variant("layers_1", f"two-level (LDConv) in 1 layer (layer {cfg.default_two_level}, the default)",
                two_level=cfg.default_two_level),
        Variant("layers_some", f"two-level (LDConv) in layers {some} (0-based), last layer level 1",
                two_level=some),
        Variant("layers_all", f"two-level (LDConv) in all {n} layers", two_level="all"),
        Variant("full", "full attention: level 1 with w1 >= sequence length", two_level="none", full=True),
    ]
    return {v.name: v for v in variants}


def parse_default_layers(cfg: ProbeModelConfig) -> FrozenSet[int]:
    """0-based indices of the default two-level layers."""
    return parse_layer_spec(cfg.default_two_level, cfg.layers)


def pf_config(cfg: ProbeModelConfig, variant: Variant, seq_len: int) -> PoolingformerConfig:
    """The variant's ``PoolingformerConfig`` (full attention: ``w1 = seq_len``, no level 2)."""
    w1 = seq_len if variant.full else cfg.w1
    layers = variant.two_level if variant.two_level is not None else cfg.default_two_level
    return PoolingformerConfig(
        w1=w1, w2=cfg.w2, kernel=cfg.kernel, stride=cfg.stride, pooling=variant.pooling,
        layers=layers, mix=variant.mix, share_weights=variant.share_weights, global_tokens="none",
    )


class ProbeClassifier(nn.Module):
    """Embeddings -> Poolingformer encoder -> linear head on the query's final state."""

    def __init__(self, cfg: ProbeModelConfig, pf_cfg: PoolingformerConfig, symbols, num_classes: int,
                 seq_len: int) -> None:
        super().__init__()
        self.dictionary = Dictionary()
        for symbol in symbols:
            self.dictionary.add_symbol(symbol)
        args = argparse.Namespace(
            encoder_embed_dim=cfg.dim, encoder_ffn_embed_dim=cfg.ffn_dim, encoder_layers=cfg.layers,
            encoder_attention_heads=cfg.heads, dropout=0.0, attention_dropout=0.0,
            activation_dropout=0.0, max_source_positions=seq_len,
        )
        embed = Embedding(len(self.dictionary), cfg.dim, self.dictionary.pad())  # Fairseq's init
        self.encoder = PoolingformerTransformerEncoder(
            TransformerConfig.from_namespace(args), pf_cfg, self.dictionary, embed)
        self.head = nn.Linear(cfg.dim, num_classes)
        self.seq_len = seq_len

    @property
    def first_symbol(self) -> int:
        """Id of the task's first symbol (after Fairseq's four specials)."""
        return self.dictionary.nspecial

    def two_level_layers(self) -> FrozenSet[int]:
        return frozenset(self.encoder.two_level_layer_indices())

    def sees_everything(self) -> bool:
        """True when every layer is level 1 with w1 >= seq_len: exact full attention."""
        return not self.two_level_layers() and all(
            layer.self_attn.w1 >= self.seq_len for layer in self.encoder.layers)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (B, T) -> logits: (B, num_classes)."""
        if tokens.shape[1] > self.seq_len:
            raise ValueError(f"ProbeClassifier: sequences of {tokens.shape[1]} tokens, built for {self.seq_len}")
        states = self.encoder(tokens)["encoder_out"][0]  # (T, B, C)
        return self.head(states[0])  # the query, position 0: (B, C) -> (B, K)


def build_probe_model(cfg: ProbeModelConfig, variant: Variant, symbols, num_classes: int, seq_len: int,
                      seed: int) -> ProbeClassifier:
    """A freshly initialised classifier (``torch.manual_seed(seed)`` before building)."""
    torch.manual_seed(seed)
    model = ProbeClassifier(cfg, pf_config(cfg, variant, seq_len), symbols, num_classes, seq_len)
    if variant.full and not model.sees_everything():
        raise AssertionError(f"variant {variant.name!r} is meant to be full attention but is not")
    return model
