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
import json
import logging
import os
import re
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from fairseq_poolingformer.convert import ConversionError

logger = logging.getLogger("fairseq_poolingformer.convert")

FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0-3 of every Fairseq Dictionary
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
# HF activation names -> Fairseq's (``fairseq.utils.get_activation_fn``)
ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_accurate", "gelu_fast": "gelu_fast",
               "tanh": "tanh", "linear": "linear"}


# ----------------------------------------------------------------------------- reading DIR


@dataclass
class HFDirectory:
    path: str
    config: dict
    tensors: Dict[str, torch.Tensor]
    weights_file: str


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ConversionError(f"{path}: not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConversionError(f"{path}: not valid JSON: {err}") from None


def _load_weight_file(path: str) -> Dict[str, torch.Tensor]:
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(path, device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # safetensors / pickle errors do not name the file
        raise ConversionError(f"{path}: cannot read the weights: {err}") from err


def read_hf_directory(directory: str) -> HFDirectory:
    """config.json and every weight of a ``save_pretrained`` directory (shards joined)."""
    if not os.path.isdir(directory):
        raise ConversionError(f"{directory}: not a directory (expected a Hugging Face save_pretrained directory)")
    config = _read_json(os.path.join(directory, "config.json"))
    for name in WEIGHT_FILES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            break
    else:
        raise ConversionError(f"{directory}: no weights (looked for {', '.join(WEIGHT_FILES)})")
    if name.endswith(".index.json"):
        weight_map = _read_json(path).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ConversionError(f"{path}: no 'weight_map' object")
        tensors: Dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            tensors.update(_load_weight_file(os.path.join(directory, shard)))
        missing = sorted(set(weight_map) - set(tensors))
        if missing:
            raise ConversionError(f"{path}: tensors listed but in no shard: {missing[:10]}")
    else:
        tensors = _load_weight_file(path)
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise ConversionError(f"{path}: not a state dict of tensors")
    return HFDirectory(directory, config, dict(tensors), path)


def _config_value(hf: HFDirectory, key: str, default=None, required: bool = True):
    value = hf.config.get(key, default)
    if value is None and required:
        raise ConversionError(f"{hf.path}/config.json: field {key!r} is missing")
    return value


def _activation(hf: HFDirectory, key: str) -> str:
    name = _config_value(hf, key)
    if name not in ACTIVATIONS:
        raise ConversionError(f"{hf.path}/config.json: {key} {name!r} has no Fairseq equivalent "
                              f"(supported: {sorted(ACTIVATIONS)})")
    return ACTIVATIONS[name]


def _check_model_type(hf: HFDirectory, allowed: Sequence[str], command: str) -> str:
    model_type = hf.config.get("model_type")
    if model_type not in allowed:
        raise ConversionError(f"{hf.path}/config.json: model_type {model_type!r} cannot be converted by "
                              f"'convert {command} --hf' (expected one of {list(allowed)})")
    return model_type


def _check_special_ids(hf: HFDirectory) -> None:
    for key, want in (("bos_token_id", 0), ("pad_token_id", 1), ("eos_token_id", 2)):
        value = hf.config.get(key, want)
        if value != want:
            raise ConversionError(f"{hf.path}/config.json: {key} is {value}, but Fairseq dictionaries "
                                  f"have {FAIRSEQ_SPECIALS[want]} at id {want}")


# ----------------------------------------------------------------------------- tensor accounting


@dataclass
class TensorLedger:
    """The source tensors, each taken exactly once: mapped, folded or dropped (with a reason)."""

    source: str
    tensors: Dict[str, torch.Tensor]
    out: "OrderedDict[str, torch.Tensor]" = field(default_factory=OrderedDict)
    events: List[Tuple[str, str, str]] = field(default_factory=list)  # (kind, source name, detail)

    def __post_init__(self) -> None:
        self.remaining = dict(self.tensors)

    def has(self, name: str) -> bool:
        return name in self.remaining

    def take(self, name: str) -> torch.Tensor:
        if name not in self.remaining:
            known = "already used" if name in self.tensors else "missing"
            raise ConversionError(f"{self.source}: tensor {name} is {known}")
        return self.remaining.pop(name)

    def map(self, name: str, target: str, value: Optional[torch.Tensor] = None, detail: str = "") -> None:
        """Rename ``name`` to ``target`` (``value``: the tensor after an exact transformation,
        described by ``detail``)."""
        if value is None:
            tensor = self.take(name)
        elif name in self.tensors:  # already taken by the caller, who transformed it
            tensor = value
            self.remaining.pop(name, None)
        else:
            raise ConversionError(f"{self.source}: tensor {name} is missing")
        if target in self.out:
            raise ConversionError(f"{self.source}: two tensors map to {target}")
        self.out[target] = tensor
        self.events.append(("mapped", name, f"{target} ({detail})" if detail else target))

    def fold(self, name: str, detail: str) -> torch.Tensor:
        self.events.append(("folded", name, detail))
        return self.take(name)

    def drop(self, name: str, reason: str) -> None:
        self.take(name)
        self.events.append(("dropped", name, reason))

    def drop_duplicate(self, name: str, of: torch.Tensor, what: str) -> None:
        """Drop ``name`` if it equals ``of`` (a tied copy); an untied, different copy is an error."""
        tensor = self.take(name)
        if tensor.shape != of.shape or not torch.equal(tensor, of):
            raise ConversionError(f"{self.source}: {name} differs from {what}; the Fairseq model ties them, "
                                  "so this checkpoint cannot be converted exactly")
        self.events.append(("dropped", name, f"a tied copy of {what} (equal)"))

    def finish(self) -> "OrderedDict[str, torch.Tensor]":
        if self.remaining:
            names = sorted(self.remaining)
            raise ConversionError(f"{self.source}: unknown tensors (not converted): {names[:20]}"
                                  f"{' ...' if len(names) > 20 else ''}")
        return self.out

    def summary(self) -> List[str]:
        """One line per (kind, name pattern, detail), layer indices collapsed to ``{i}``."""
        groups: "OrderedDict[Tuple[str, str, str], List[str]]" = OrderedDict()
        for kind, name, detail in self.events:
            key = (kind, re.sub(r"\.\d+\.", ".{i}.", name), re.sub(r"\.\d+\.", ".{i}.", detail))
            groups.setdefault(key, []).append(name)
        lines = []
        for (kind, name, detail), names in groups.items():
            count = f" (x{len(names)})" if len(names) > 1 else ""
            arrow = "->" if kind == "mapped" else ":"
            lines.append(f"{kind:8s} {name}{count} {arrow} {detail}")
        return lines


def _prefix(tensors: Dict[str, torch.Tensor], suffix: str, source: str) -> str:
    """The prefix of the one key ending in ``suffix`` ('model.', 'led.', 'roberta.' or '')."""
    found = [k[: -len(suffix)] for k in tensors if k.endswith(suffix) and (k == suffix or k[-len(suffix) - 1] == ".")]
    if len(found) != 1:
        raise ConversionError(f"{source}: expected one tensor named *{suffix}, found {sorted(found) or 'none'}")
    return found[0]


def _layer_count(ledger: TensorLedger, pattern: str) -> int:
    indices = {int(m.group(1)) for k in ledger.tensors for m in [re.match(pattern, k)] if m}
    return max(indices) + 1 if indices else 0


# ----------------------------------------------------------------------------- BART and LED


def _shared_embedding(ledger: TensorLedger, p: str, hf: HFDirectory) -> torch.Tensor:
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
    return shared


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
    d_model = _config_value(hf, "d_model")
    return argparse.Namespace(
        arch="bart_large" if d_model >= 1024 else "bart_base",
        encoder_embed_dim=d_model, decoder_embed_dim=d_model,
        decoder_output_dim=d_model, decoder_input_dim=d_model,
        encoder_ffn_embed_dim=_config_value(hf, "encoder_ffn_dim"),
        decoder_ffn_embed_dim=_config_value(hf, "decoder_ffn_dim"),
        encoder_layers=_config_value(hf, "encoder_layers"), decoder_layers=_config_value(hf, "decoder_layers"),
        encoder_attention_heads=_config_value(hf, "encoder_attention_heads"),
        decoder_attention_heads=_config_value(hf, "decoder_attention_heads"),
        max_source_positions=source_positions, max_target_positions=target_positions,
        dropout=hf.config.get("dropout", 0.1), attention_dropout=hf.config.get("attention_dropout", 0.0),
        activation_dropout=hf.config.get("activation_dropout", 0.0),
        activation_fn=_activation(hf, "activation_function"),
        encoder_learned_pos=True, decoder_learned_pos=True, layernorm_embedding=True,
        encoder_normalize_before=False, decoder_normalize_before=False, no_scale_embedding=not scale,
        share_all_embeddings=True, share_decoder_input_output_embed=True,
    )


def bart_from_hf(hf: HFDirectory) -> Tuple[Dict[str, torch.Tensor], argparse.Namespace, TensorLedger]:
    """HF BART (``BartForConditionalGeneration`` / ``BartModel``) -> Fairseq BART state dict and args."""
    _check_model_type(hf, ["bart"], "bart")
    _check_special_ids(hf)
    ledger = TensorLedger(hf.weights_file, hf.tensors)
    p = _prefix(hf.tensors, "encoder.embed_positions.weight", hf.path)
    n_enc = _layer_count(ledger, re.escape(p) + r"encoder\.layers\.(\d+)\.")
    n_dec = _layer_count(ledger, re.escape(p) + r"decoder\.layers\.(\d+)\.")
    for key, n in (("encoder_layers", n_enc), ("decoder_layers", n_dec)):
        if _config_value(hf, key) != n:
            raise ConversionError(f"{hf.path}: config.json has {key} {hf.config[key]} but the weights have {n}")
    _shared_embedding(ledger, p, hf)
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
    max_pos = _config_value(hf, "max_position_embeddings")
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
    _check_model_type(hf, ["led"], "led")
    _check_special_ids(hf)
    ledger = TensorLedger(hf.weights_file, hf.tensors)
    p = _prefix(hf.tensors, "encoder.embed_positions.weight", hf.path)
    n_enc = _layer_count(ledger, re.escape(p) + r"encoder\.layers\.(\d+)\.")
    n_dec = _layer_count(ledger, re.escape(p) + r"decoder\.layers\.(\d+)\.")
    for key, n in (("encoder_layers", n_enc), ("decoder_layers", n_dec)):
        if _config_value(hf, key) != n:
            raise ConversionError(f"{hf.path}: config.json has {key} {hf.config[key]} but the weights have {n}")
    _shared_embedding(ledger, p, hf)
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
    args = _bart_args(hf, _config_value(hf, "max_encoder_position_embeddings"),
                      _config_value(hf, "max_decoder_position_embeddings"), scale=False)
    return ledger.finish(), args, ledger


# ----------------------------------------------------------------------------- RoBERTa / XLM-R


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
    model_type = _check_model_type(hf, ["roberta", "xlm-roberta"], "roberta")
    _check_special_ids(hf)
    if hf.config.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError(f"{hf.path}/config.json: position_embedding_type "
                              f"{hf.config['position_embedding_type']!r}: only 'absolute' has a Fairseq equivalent")
    eps = hf.config.get("layer_norm_eps", 1e-5)
    if abs(eps - 1e-5) > 1e-9:  # released RoBERTa / XLM-R use 1e-05; the difference is ~eps / var
        logger.warning("%s/config.json: layer_norm_eps %g; Fairseq's LayerNorm uses 1e-05, so outputs differ "
                       "slightly (relative ~1e-5)", hf.path, eps)
    ledger = TensorLedger(hf.weights_file, hf.tensors)
    p = _prefix(hf.tensors, "embeddings.word_embeddings.weight", hf.path)
    e = "encoder.sentence_encoder."
    n_layers = _layer_count(ledger, re.escape(p) + r"encoder\.layer\.(\d+)\.")
    if _config_value(hf, "num_hidden_layers") != n_layers:
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
    heads = _config_value(hf, "num_attention_heads")
    hidden = _config_value(hf, "hidden_size")
    padding_idx = _config_value(hf, "pad_token_id")
    large = hidden >= 1024
    args = argparse.Namespace(
        arch=("xlmr.large" if model_type == "xlm-roberta" else "roberta_large") if large else "roberta_base",
        encoder_layers=n_layers, encoder_embed_dim=hidden, encoder_ffn_embed_dim=_config_value(hf, "intermediate_size"),
        encoder_attention_heads=heads, max_positions=_config_value(hf, "max_position_embeddings") - padding_idx - 1,
        activation_fn=_activation(hf, "hidden_act"), dropout=hf.config.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.config.get("attention_probs_dropout_prob", 0.1), activation_dropout=0.0,
        encoder_normalize_before=False, layernorm_embedding=True, no_scale_embedding=True,
        untie_weights_roberta=False,
    )
    args.hf_has_lm_head = has_lm_head
    return ledger.finish(), args, ledger


# ----------------------------------------------------------------------------- vocabulary


@dataclass
class HFVocabulary:
    """The HF tokenizer's vocabulary: ``tokens[i]`` is the token of id i (None: no token)."""

    kind: str  # "gpt2" (byte-level BPE) or "sentencepiece"
    tokens: List[Optional[str]]
    merges: List[str]  # gpt2: "a b" per line
    spm_model: Optional[str]  # sentencepiece: path of the model file
    source: str


def _tokens_by_id(pairs: Dict[str, int], source: str) -> List[Optional[str]]:
    tokens: List[Optional[str]] = [None] * (max(pairs.values()) + 1 if pairs else 0)
    for token, idx in pairs.items():
        if not isinstance(idx, int) or idx < 0:
            raise ConversionError(f"{source}: token {token!r} has id {idx!r}")
        if tokens[idx] is not None and tokens[idx] != token:
            raise ConversionError(f"{source}: id {idx} is both {tokens[idx]!r} and {token!r}")
        tokens[idx] = token
    return tokens


def _merge_line(merge, source: str) -> str:
    text = merge if isinstance(merge, str) else " ".join(merge)
    if len(text.split(" ")) != 2:
        raise ConversionError(f"{source}: merge {merge!r} is not two symbols")
    return text


def read_hf_vocabulary(directory: str) -> HFVocabulary:
    """The tokenizer of DIR: ``tokenizer.json`` (BPE or Unigram model, plus added tokens), else
    ``vocab.json`` + ``merges.txt``; a Unigram (sentencepiece) tokenizer also needs
    ``sentencepiece.bpe.model`` in DIR."""
    tok_json = os.path.join(directory, "tokenizer.json")
    vocab_json = os.path.join(directory, "vocab.json")
    spm_path = os.path.join(directory, "sentencepiece.bpe.model")
    if os.path.isfile(tok_json):
        data = _read_json(tok_json)
        model = data.get("model") or {}
        mtype = model.get("type")
        if mtype == "BPE":
            if "ByteLevel" not in json.dumps(data.get("pre_tokenizer")):
                raise ConversionError(f"{tok_json}: a BPE tokenizer that is not byte-level (pre_tokenizer "
                                      f"{(data.get('pre_tokenizer') or {}).get('type')!r}); Fairseq's gpt2 BPE "
                                      "is GPT-2's byte-level BPE")
            if '"add_prefix_space": true' in json.dumps(data.get("pre_tokenizer")):
                raise ConversionError(f"{tok_json}: the byte-level pre-tokenizer adds a prefix space; Fairseq's "
                                      "gpt2 BPE does not, so the ids would differ (BART/RoBERTa tokenizers do not)")
            tokens = _tokens_by_id(model.get("vocab") or {}, tok_json)
            merges = [_merge_line(m, tok_json) for m in model.get("merges") or []]
            kind = "gpt2"
        elif mtype == "Unigram":
            tokens = [entry[0] for entry in model.get("vocab") or []]
            merges, kind = [], "sentencepiece"
        else:
            raise ConversionError(f"{tok_json}: tokenizer model type {mtype!r} (expected BPE or Unigram)")
        for added in data.get("added_tokens") or []:
            idx, content = added.get("id"), added.get("content")
            while len(tokens) <= idx:
                tokens.append(None)
            if tokens[idx] not in (None, content):
                raise ConversionError(f"{tok_json}: added token {content!r} takes id {idx} of {tokens[idx]!r}")
            tokens[idx] = content
        source = tok_json
    elif os.path.isfile(vocab_json):
        tokens = _tokens_by_id(_read_json(vocab_json), vocab_json)
        merges_path = os.path.join(directory, "merges.txt")
        if not os.path.isfile(merges_path):
            raise ConversionError(f"{directory}: vocab.json without merges.txt")
        with open(merges_path, encoding="utf-8") as f:
            merges = [_merge_line(line.rstrip("\n"), merges_path)
                      for line in f if line.strip() and not line.startswith("#version")]
        kind, source = "gpt2", vocab_json
    elif os.path.isfile(spm_path):
        tokens, merges, kind, source = _xlmr_tokens_from_spm(spm_path), [], "sentencepiece", spm_path
    else:
        raise ConversionError(f"{directory}: no tokenizer (looked for tokenizer.json, vocab.json + merges.txt, "
                              "sentencepiece.bpe.model)")
    if kind == "sentencepiece" and not os.path.isfile(spm_path):
        raise ConversionError(f"{directory}: a sentencepiece (Unigram) tokenizer but no sentencepiece.bpe.model: "
                              "Fairseq tokenizes with the sentencepiece model itself; copy it into the directory "
                              "(e.g. from the original xlm-roberta checkpoint)")
    for idx, special in enumerate(FAIRSEQ_SPECIALS):
        if idx >= len(tokens) or tokens[idx] != special:
            raise ConversionError(f"{source}: id {idx} is {tokens[idx] if idx < len(tokens) else None!r}, but "
                                  f"Fairseq dictionaries have {special} there")
    vocab = HFVocabulary(kind, tokens, merges, spm_path if kind == "sentencepiece" else None, source)
    if kind == "sentencepiece":
        _check_spm_matches(vocab)
    return vocab


def _spm_processor(path: str):
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor()
    if not sp.Load(path):
        raise ConversionError(f"{path}: cannot load the sentencepiece model")
    return sp


def _xlmr_tokens_from_spm(path: str) -> List[Optional[str]]:
    """XLM-R's convention: specials at 0-3, then sentencepiece id i (i >= 3) at i + 1, <mask> last."""
    sp = _spm_processor(path)
    return list(FAIRSEQ_SPECIALS) + [sp.IdToPiece(i) for i in range(3, sp.GetPieceSize())] + ["<mask>"]


def _check_spm_matches(vocab: HFVocabulary) -> None:
    """Each HF piece (ids 4 ...) must be a piece of the sentencepiece model, so that Fairseq's
    sentencepiece BPE (pieces -> dict.txt) gives the HF ids."""
    sp = _spm_processor(vocab.spm_model)
    for idx, token in enumerate(vocab.tokens[4:], start=4):
        if token is None or token == "<mask>":
            continue
        if sp.PieceToId(token) == sp.unk_id() and token != sp.IdToPiece(sp.unk_id()):
            raise ConversionError(f"{vocab.spm_model}: HF token {token!r} (id {idx} in {vocab.source}) is not "
                                  "a piece of this sentencepiece model: wrong model for this tokenizer?")


def dictionary_symbols(vocab: HFVocabulary, rows: int, with_mask_row: bool) -> List[str]:
    """The ``dict.txt`` symbols for ids 4 .. rows - 1 (``rows - 2`` when the task adds <mask>)."""
    if len(vocab.tokens) > rows:
        extra = [t for t in vocab.tokens[rows:] if t is not None]
        raise ConversionError(f"{vocab.source}: {len(vocab.tokens)} token ids but the model embeds {rows} rows "
                              f"(tokens without a row: {extra[:5]})")
    last = rows if with_mask_row else rows - 1
    if not with_mask_row:
        mask = vocab.tokens[rows - 1] if rows - 1 < len(vocab.tokens) else None
        if mask != "<mask>":
            raise ConversionError(f"{vocab.source}: the last id {rows - 1} is {mask!r}, expected <mask> "
                                  "(RoBERTa / XLM-R tasks add <mask> as the last symbol)")
    symbols = []
    for idx in range(4, last):
        token = vocab.tokens[idx] if idx < len(vocab.tokens) else None
        if vocab.kind == "gpt2":
            symbols.append(str(idx))  # encoder.json maps the token to idx: see the module docstring
        elif token is None or any(c.isspace() for c in token):
            # a row without a token, or a piece holding whitespace ("\r"): neither Fairseq (which
            # splits BPE output on whitespace) nor HF (WhitespaceSplit) ever produces it, and a
            # dict.txt line cannot hold it: a placeholder keeps the rows aligned
            symbols.append(f"madeupword{idx:06d}")
        else:
            symbols.append(token)
    return symbols


def write_tokenizer_files(vocab: HFVocabulary, rows: int, with_mask_row: bool, directory: str) -> List[str]:
    """Write dict.txt plus encoder.json + vocab.bpe (gpt2) or sentencepiece.bpe.model into
    ``directory``; returns the paths (dict.txt first)."""
    symbols = dictionary_symbols(vocab, rows, with_mask_row)
    if len(set(symbols)) != len(symbols):
        dup = sorted({s for s in symbols if symbols.count(s) > 1})[:5]
        raise ConversionError(f"{vocab.source}: tokens {dup} appear twice; a Fairseq dictionary needs unique symbols")
    paths = [os.path.join(directory, "dict.txt")]
    with open(paths[0], "w", encoding="utf-8") as f:
        f.writelines(f"{s} 1\n" for s in symbols)
    if vocab.kind == "gpt2":
        encoder = {t: i for i, t in enumerate(vocab.tokens) if t is not None}
        paths.append(os.path.join(directory, "encoder.json"))
        with open(paths[-1], "w", encoding="utf-8") as f:
            json.dump(encoder, f)  # ASCII (\u escapes): fairseq opens it with the locale encoding
        paths.append(os.path.join(directory, "vocab.bpe"))
        with open(paths[-1], "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "".join(m + "\n" for m in vocab.merges))
    else:
        paths.append(os.path.join(directory, "sentencepiece.bpe.model"))
        shutil.copyfile(vocab.spm_model, paths[-1])
    return paths


# ----------------------------------------------------------------------------- the convert command

TRANSLATORS = {"bart": bart_from_hf, "led": led_from_hf, "roberta": roberta_from_hf}


def _log_summary(ledger: TensorLedger, out_dir: str) -> str:
    """Log the accounting (stderr) and write it as ``hf_conversion.txt``; returns its path."""
    counts = {kind: sum(1 for k, _, _ in ledger.events if k == kind) for kind in ("mapped", "folded", "dropped")}
    head = (f"{ledger.source}: {len(ledger.tensors)} tensors: {counts['mapped']} mapped, {counts['folded']} folded, "
            f"{counts['dropped']} dropped")
    lines = [head] + ledger.summary()
    for line in lines:
        logger.info(line)
    path = os.path.join(out_dir, "hf_conversion.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


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
    os.makedirs(os.path.dirname(output_dir), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".hf_vocab.", dir=os.path.dirname(output_dir))
    try:
        if family == "roberta":
            rows = weights["encoder.sentence_encoder.embed_tokens.weight"].shape[0]
            files = write_tokenizer_files(vocab, rows, False, tmp) + [_log_summary(ledger, tmp)]
            lm_head_is_new = not src_args.hf_has_lm_head
            return convert.convert_roberta_weights(
                args, weights, src_args, files[0], hf.path, files[1:],
                new_key=lambda k: convert.is_level2_key(k) or (lm_head_is_new and k.startswith("encoder.lm_head.")))
        if getattr(args, "max_source_positions", None) is None:  # LED: its own length by default
            args.max_source_positions = src_args.max_source_positions
        rows = weights["encoder.embed_tokens.weight"].shape[0]
        files = write_tokenizer_files(vocab, rows, True, tmp) + [_log_summary(ledger, tmp)]
        return convert.convert_bart_weights(args, weights, src_args, files[0], hf.path, files[1:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
