"""HF BART and LED -> Fairseq BART state dict and model arguments (LED's Longformer
self-attention becomes level 1; its positions get Fairseq's two reserved rows)."""

from __future__ import annotations

import argparse
import re
from typing import Dict, Optional, Tuple

import torch

from fairseq_poolingformer.convert.core.errors import ConversionError
from fairseq_poolingformer.convert.core.ledger import TensorLedger, key_prefix, layer_count
from fairseq_poolingformer.convert.readers.hf.directory import (HFDirectory, activation, check_model_type,
                                                                check_special_ids, config_value)


def _shared_embedding(ledger: TensorLedger, p: str, hf: HFDirectory) -> None:
    """BART/LED token embeddings: ``shared``, with tied copies dropped after an equality check."""
    names = [n for n in (f"{p}shared.weight", f"{p}encoder.embed_tokens.weight") if ledger.has(n)]
    if not names:
        raise ConversionError(f"{ledger.source}: tensor {p}shared.weight is missing")
    shared = ledger.take(names[0])
    ledger.out["encoder.embed_tokens.weight"] = shared
    ledger.out["decoder.embed_tokens.weight"] = shared
    ledger.events.append(("mapped", names[0], "encoder.embed_tokens.weight, decoder.embed_tokens.weight "
                          "(and the output projection: Fairseq BART ties all three)"))
    for name in (f"{p}encoder.embed_tokens.weight", f"{p}decoder.embed_tokens.weight", "lm_head.weight"):
        if ledger.has(name):
            ledger.drop_duplicate(name, shared, names[0])
    if hf.config.get("tie_word_embeddings", True) is False:
        raise ConversionError(f"{hf.path}/config.json: tie_word_embeddings is false; Fairseq BART ties the "
                              "output projection to the token embeddings")


def _final_logits_bias(ledger: TensorLedger) -> None:
    """``final_logits_bias`` (1, V): Fairseq's output projection has no bias. All zeros in every
    released BART/LED (it is a buffer that training never changes), so dropping it is exact; a
    non-zero bias would change every decoding step, so it is an error."""
    if not ledger.has("final_logits_bias"):
        return
    bias = ledger.remaining["final_logits_bias"]
    if bias.abs().max().item() != 0:
        raise ConversionError(f"{ledger.source}: final_logits_bias is not zero (max |b| = "
                              f"{bias.abs().max().item():.3g}); the Fairseq decoder's output projection "
                              "has no bias, so it cannot be converted exactly")
    ledger.drop("final_logits_bias", "all zeros (the Fairseq output projection has no bias; "
                                     "a zero bias changes nothing)")


def _map_decoder(ledger: TensorLedger, p: str, n_layers: int, positions: Optional[torch.Tensor] = None,
                 positions_detail: str = "") -> None:
    """BART-style decoder (BART and LED name it identically to Fairseq, under ``{p}decoder.``)."""
    ledger.map(f"{p}decoder.embed_positions.weight", "decoder.embed_positions.weight", positions, positions_detail)
    for part in ("weight", "bias"):
        ledger.map(f"{p}decoder.layernorm_embedding.{part}", f"decoder.layernorm_embedding.{part}")
    for i in range(n_layers):
        for module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                       "self_attn_layer_norm", "encoder_attn.q_proj", "encoder_attn.k_proj",
                       "encoder_attn.v_proj", "encoder_attn.out_proj", "encoder_attn_layer_norm",
                       "fc1", "fc2", "final_layer_norm"):
            for part in ("weight", "bias"):
                ledger.map(f"{p}decoder.layers.{i}.{module}.{part}", f"decoder.layers.{i}.{module}.{part}")


def _bart_args(hf: HFDirectory, source_positions: int, target_positions: int, scale: bool) -> argparse.Namespace:
    # fields of old BART configs (mBART-style variants): only BART's own values convert
    for key, bart_value in (("normalize_before", False), ("add_final_layer_norm", False),
                            ("normalize_embedding", True), ("static_position_embeddings", False)):
        if hf.config.get(key, bart_value) != bart_value:
            raise ConversionError(f"{hf.path}/config.json: {key} is {hf.config[key]}; only BART's "
                                  f"{bart_value} has a Poolingformer-BART equivalent")
    d_model = config_value(hf, "d_model")
    return argparse.Namespace(
        arch="bart_large" if d_model >= 1024 else "bart_base",
        encoder_embed_dim=d_model, decoder_embed_dim=d_model,
        decoder_output_dim=d_model, decoder_input_dim=d_model,
        encoder_ffn_embed_dim=config_value(hf, "encoder_ffn_dim"),
        decoder_ffn_embed_dim=config_value(hf, "decoder_ffn_dim"),
        encoder_layers=config_value(hf, "encoder_layers"), decoder_layers=config_value(hf, "decoder_layers"),
        encoder_attention_heads=config_value(hf, "encoder_attention_heads"),
        decoder_attention_heads=config_value(hf, "decoder_attention_heads"),
        max_source_positions=source_positions, max_target_positions=target_positions,
        dropout=hf.config.get("dropout", 0.1), attention_dropout=hf.config.get("attention_dropout", 0.0),
        activation_dropout=hf.config.get("activation_dropout", 0.0),
        activation_fn=activation(hf, "activation_function"),
        encoder_learned_pos=True, decoder_learned_pos=True, layernorm_embedding=True,
        encoder_normalize_before=False, decoder_normalize_before=False, no_scale_embedding=not scale,
        share_all_embeddings=True, share_decoder_input_output_embed=True,
    )


def _seq2seq_layout(hf: HFDirectory) -> Tuple[TensorLedger, str, int, int]:
    """Shared start of BART and LED: a ledger over the tensors, the key prefix (``model.`` or
    none), the encoder/decoder layer counts (checked against config.json), the shared embedding
    mapped."""
    ledger = TensorLedger(hf.weights_file, hf.tensors)
    p = key_prefix(hf.tensors, "encoder.embed_positions.weight", hf.path)
    n_enc = layer_count(ledger, re.escape(p) + r"encoder\.layers\.(\d+)\.")
    n_dec = layer_count(ledger, re.escape(p) + r"decoder\.layers\.(\d+)\.")
    for key, n in (("encoder_layers", n_enc), ("decoder_layers", n_dec)):
        if config_value(hf, key) != n:
            raise ConversionError(f"{hf.path}: config.json has {key} {hf.config[key]} but the weights have {n}")
    _shared_embedding(ledger, p, hf)
    return ledger, p, n_enc, n_dec


def bart_from_hf(hf: HFDirectory) -> Tuple[Dict[str, torch.Tensor], argparse.Namespace, TensorLedger]:
    """HF BART (``BartForConditionalGeneration`` / ``BartModel``) -> Fairseq BART state dict and args."""
    check_model_type(hf, ["bart"], "bart")
    check_special_ids(hf)
    ledger, p, n_enc, n_dec = _seq2seq_layout(hf)
    # HF BART keeps Fairseq's layout: positions start at row 2 (offset = padding_idx + 1)
    ledger.map(f"{p}encoder.embed_positions.weight", "encoder.embed_positions.weight")
    for part in ("weight", "bias"):
        ledger.map(f"{p}encoder.layernorm_embedding.{part}", f"encoder.layernorm_embedding.{part}")
    for i in range(n_enc):
        for module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                       "self_attn_layer_norm", "fc1", "fc2", "final_layer_norm"):
            for part in ("weight", "bias"):
                ledger.map(f"{p}encoder.layers.{i}.{module}.{part}", f"encoder.layers.{i}.{module}.{part}")
    _map_decoder(ledger, p, n_dec)
    _final_logits_bias(ledger)
    for name in [n for n in ledger.remaining if n.startswith("classification_head.")]:
        ledger.drop(name, "sequence-classification head (not part of the summarization model)")
    max_pos = config_value(hf, "max_position_embeddings")
    args = _bart_args(hf, max_pos, max_pos, bool(hf.config.get("scale_embedding", False)))
    return ledger.finish(), args, ledger


def _reserve_position_rows(positions: torch.Tensor) -> torch.Tensor:
    """LED positions (M, C), position p at row p -> Fairseq's (2 + M, C), position p at row p + 2:
    rows 0 and 1 are Fairseq's reserved rows (below and at padding_idx, never read for a real
    token), added as zeros."""
    return torch.cat([positions.new_zeros(2, positions.shape[1]), positions], dim=0)


def led_from_hf(hf: HFDirectory) -> Tuple[Dict[str, torch.Tensor], argparse.Namespace, TensorLedger]:
    """HF LED (``LEDForConditionalGeneration`` / ``LEDModel``) -> Fairseq BART state dict and args.

    - encoder self-attention: Longformer's local ``query/key/value`` -> level 1 ``q/k/v_proj``,
      ``output`` -> ``out_proj``;
    - ``query_global/key_global/value_global``: dropped. Poolingformer computes global tokens
      with the same q/k/v as local ones (one projection per level); LED's global projections
      are used only for the rows of tokens marked global in LED's ``global_attention_mask``.
      With no global token the converted encoder computes what LED computes (tested); the
      Poolingformer global token (the first) starts from the local projections.
    - positions: LED has no reserved rows (position p at row p); two zero rows are prepended
      so that position p is at Fairseq's row p + 2.
    """
    check_model_type(hf, ["led"], "led")
    check_special_ids(hf)
    ledger, p, n_enc, n_dec = _seq2seq_layout(hf)
    reserved = "2 zero rows prepended: Fairseq's reserved rows 0 and padding_idx"
    ledger.map(f"{p}encoder.embed_positions.weight", "encoder.embed_positions.weight",
               _reserve_position_rows(ledger.take(f"{p}encoder.embed_positions.weight")), reserved)
    for part in ("weight", "bias"):
        ledger.map(f"{p}encoder.layernorm_embedding.{part}", f"encoder.layernorm_embedding.{part}")
    for i in range(n_enc):
        attn = f"{p}encoder.layers.{i}.self_attn."
        for hf_name, fs_name in (("longformer_self_attn.query", "q_proj"), ("longformer_self_attn.key", "k_proj"),
                                 ("longformer_self_attn.value", "v_proj"), ("output", "out_proj")):
            for part in ("weight", "bias"):
                ledger.map(f"{attn}{hf_name}.{part}", f"encoder.layers.{i}.self_attn.{fs_name}.{part}")
        for kind in ("query_global", "key_global", "value_global"):
            for part in ("weight", "bias"):
                ledger.drop(f"{attn}longformer_self_attn.{kind}.{part}",
                            "LED's projection for global tokens; Poolingformer computes global tokens with "
                            "the level-1 q/k/v (no global token in LED = same function)")
        for module in ("self_attn_layer_norm", "fc1", "fc2", "final_layer_norm"):
            for part in ("weight", "bias"):
                ledger.map(f"{p}encoder.layers.{i}.{module}.{part}", f"encoder.layers.{i}.{module}.{part}")
    _map_decoder(ledger, p, n_dec, _reserve_position_rows(ledger.take(f"{p}decoder.embed_positions.weight")),
                 reserved)
    _final_logits_bias(ledger)
    for name in [n for n in ledger.remaining if n.startswith("classification_head.")]:
        ledger.drop(name, "sequence-classification head (not part of the summarization model)")
    args = _bart_args(hf, config_value(hf, "max_encoder_position_embeddings"),
                      config_value(hf, "max_decoder_position_embeddings"), scale=False)
    return ledger.finish(), args, ledger
