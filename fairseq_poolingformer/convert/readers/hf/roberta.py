"""HF RoBERTa / XLM-R -> Fairseq RoBERTa state dict and model arguments."""

from __future__ import annotations

import argparse
import logging
import re
from typing import Dict, Tuple

import torch

from fairseq_poolingformer.convert.core.errors import ConversionError
from fairseq_poolingformer.convert.core.ledger import TensorLedger, key_prefix, layer_count
from fairseq_poolingformer.convert.readers.hf.directory import (HFDirectory, activation, check_model_type,
                                                                check_special_ids, config_value)

logger = logging.getLogger("fairseq_poolingformer.convert")


def roberta_from_hf(hf: HFDirectory) -> Tuple[Dict[str, torch.Tensor], argparse.Namespace, TensorLedger]:
    """HF RoBERTa / XLM-R (``*ForMaskedLM``, ``*Model``, or a task model) -> Fairseq RoBERTa.

    - the single token-type embedding (type 0, what HF adds when no ``token_type_ids`` are
      given) is added into every row of the position embeddings: every token, real or padding,
      adds exactly one position row, so embeddings + LayerNorm are unchanged (the word
      embeddings are tied to the LM head, so they must not absorb it);
    - positions: HF RoBERTa already uses Fairseq's layout (row ``padding_idx + 1`` first);
    - pooler and task heads: dropped (Fairseq RoBERTa has no pooler; long_qa has its own head);
    - LM head: mapped when present (its decoder weight is the tied word embedding), else the
      converted model keeps a fresh LM head (long_qa never uses it).
    """
    model_type = check_model_type(hf, ["roberta", "xlm-roberta"], "roberta")
    check_special_ids(hf)
    if hf.config.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError(f"{hf.path}/config.json: position_embedding_type "
                              f"{hf.config['position_embedding_type']!r}: only 'absolute' has a Fairseq equivalent")
    eps = hf.config.get("layer_norm_eps", 1e-5)
    if abs(eps - 1e-5) > 1e-9:  # released RoBERTa / XLM-R use 1e-05; the difference is ~eps / var
        logger.warning("%s/config.json: layer_norm_eps %g; Fairseq's LayerNorm uses 1e-05, so outputs differ "
                       "slightly (relative ~1e-5)", hf.path, eps)
    ledger = TensorLedger(hf.weights_file, hf.tensors)
    p = key_prefix(hf.tensors, "embeddings.word_embeddings.weight", hf.path)
    e = "encoder.sentence_encoder."
    n_layers = layer_count(ledger, re.escape(p) + r"encoder\.layer\.(\d+)\.")
    if config_value(hf, "num_hidden_layers") != n_layers:
        raise ConversionError(f"{hf.path}: config.json has num_hidden_layers {hf.config['num_hidden_layers']} "
                              f"but the weights have {n_layers}")
    words = ledger.take(f"{p}embeddings.word_embeddings.weight")
    ledger.map(f"{p}embeddings.word_embeddings.weight", e + "embed_tokens.weight", words)
    types = ledger.fold(f"{p}embeddings.token_type_embeddings.weight",
                        f"row 0 added into every row of {e}embed_positions.weight (HF adds token type 0 "
                        "to every token; Fairseq RoBERTa has no token types)")
    if types.shape[0] > 1:
        ledger.events.append(("dropped", f"{p}embeddings.token_type_embeddings.weight[1:]",
                              "token types >= 1 (Fairseq RoBERTa inputs have no token_type_ids)"))
    positions = ledger.take(f"{p}embeddings.position_embeddings.weight")
    ledger.map(f"{p}embeddings.position_embeddings.weight", e + "embed_positions.weight", positions + types[0],
               "plus token type 0")
    for buffer in ("position_ids", "token_type_ids"):
        if ledger.has(f"{p}embeddings.{buffer}"):
            ledger.drop(f"{p}embeddings.{buffer}", "an index buffer, not a weight")
    for part in ("weight", "bias"):
        ledger.map(f"{p}embeddings.LayerNorm.{part}", f"{e}layernorm_embedding.{part}")
    for i in range(n_layers):
        hf_layer, fs_layer = f"{p}encoder.layer.{i}.", f"{e}layers.{i}."
        for hf_name, fs_name in (("attention.self.query", "self_attn.q_proj"),
                                 ("attention.self.key", "self_attn.k_proj"),
                                 ("attention.self.value", "self_attn.v_proj"),
                                 ("attention.output.dense", "self_attn.out_proj"),
                                 ("attention.output.LayerNorm", "self_attn_layer_norm"),
                                 ("intermediate.dense", "fc1"), ("output.dense", "fc2"),
                                 ("output.LayerNorm", "final_layer_norm")):
            for part in ("weight", "bias"):
                ledger.map(f"{hf_layer}{hf_name}.{part}", f"{fs_layer}{fs_name}.{part}")
    for part in ("weight", "bias"):
        if ledger.has(f"{p}pooler.dense.{part}"):
            ledger.drop(f"{p}pooler.dense.{part}", "HF's pooler (tanh of the <s> state): Fairseq RoBERTa has none; "
                                                  "neither masked-LM nor long_qa uses it")
    has_lm_head = ledger.has("lm_head.dense.weight")
    if has_lm_head:
        for name in ("dense.weight", "dense.bias", "layer_norm.weight", "layer_norm.bias"):
            ledger.map(f"lm_head.{name}", f"encoder.lm_head.{name}")
        ledger.map("lm_head.bias", "encoder.lm_head.bias")
        ledger.out["encoder.lm_head.weight"] = words  # Fairseq's LM head holds the tied embedding
        if ledger.has("lm_head.decoder.weight"):
            ledger.drop_duplicate("lm_head.decoder.weight", words, f"{p}embeddings.word_embeddings.weight")
        if ledger.has("lm_head.decoder.bias"):
            ledger.drop_duplicate("lm_head.decoder.bias", ledger.out["encoder.lm_head.bias"], "lm_head.bias")
    for name in [n for n in ledger.remaining if n.split(".")[0] in ("qa_outputs", "classifier")]:
        ledger.drop(name, "HF task head (long_qa has its own QA head)")
    heads = config_value(hf, "num_attention_heads")
    hidden = config_value(hf, "hidden_size")
    padding_idx = config_value(hf, "pad_token_id")
    large = hidden >= 1024
    args = argparse.Namespace(
        arch=("xlmr.large" if model_type == "xlm-roberta" else "roberta_large") if large else "roberta_base",
        encoder_layers=n_layers, encoder_embed_dim=hidden, encoder_ffn_embed_dim=config_value(hf, "intermediate_size"),
        encoder_attention_heads=heads, max_positions=config_value(hf, "max_position_embeddings") - padding_idx - 1,
        activation_fn=activation(hf, "hidden_act"), dropout=hf.config.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.config.get("attention_probs_dropout_prob", 0.1), activation_dropout=0.0,
        encoder_normalize_before=False, layernorm_embedding=True, no_scale_embedding=True,
        untie_weights_roberta=False,
    )
    return ledger.finish(), args, ledger
