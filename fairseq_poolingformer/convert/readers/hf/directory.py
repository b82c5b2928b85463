"""Reading a Hugging Face ``save_pretrained`` directory: ``config.json``, the weights
(``model.safetensors``, ``pytorch_model.bin`` or their sharded ``*.index.json`` forms), and the
checks on config fields that every translator shares (model type, special ids, activation).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, Sequence

import torch

from fairseq_poolingformer.convert.core.errors import ConversionError

FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0-3 of every Fairseq Dictionary
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
# HF activation names -> Fairseq's (``fairseq.utils.get_activation_fn``)
ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_accurate", "gelu_fast": "gelu_fast",
               "tanh": "tanh", "linear": "linear"}


@dataclass
class HFDirectory:
    """A read ``save_pretrained`` directory: its config.json and every tensor of its weights."""

    path: str
    config: dict
    tensors: Dict[str, torch.Tensor]
    weights_file: str


def read_json(path: str) -> dict:
    """A JSON file; a missing or invalid one is a ``ConversionError`` naming it."""
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
    config = read_json(os.path.join(directory, "config.json"))
    for name in WEIGHT_FILES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            break
    else:
        raise ConversionError(f"{directory}: no weights (looked for {', '.join(WEIGHT_FILES)})")
    if name.endswith(".index.json"):
        weight_map = read_json(path).get("weight_map")
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


def config_value(hf: HFDirectory, key: str) -> Any:
    """``config.json``'s ``key``; an error naming the field when it is missing."""
    value = hf.config.get(key)
    if value is None:
        raise ConversionError(f"{hf.path}/config.json: field {key!r} is missing")
    return value


def activation(hf: HFDirectory, key: str) -> str:
    """Fairseq's name of the activation that config.json's ``key`` names (see ``ACTIVATIONS``)."""
    name = config_value(hf, key)
    if name not in ACTIVATIONS:
        raise ConversionError(f"{hf.path}/config.json: {key} {name!r} has no Fairseq equivalent "
                              f"(supported: {sorted(ACTIVATIONS)})")
    return ACTIVATIONS[name]


def check_model_type(hf: HFDirectory, allowed: Sequence[str], command: str) -> str:
    """config.json's ``model_type``, which must be one of ``allowed`` (else an error naming
    ``convert COMMAND --hf``)."""
    model_type = hf.config.get("model_type")
    if model_type not in allowed:
        raise ConversionError(f"{hf.path}/config.json: model_type {model_type!r} cannot be converted by "
                              f"'convert {command} --hf' (expected one of {list(allowed)})")
    return model_type


def check_special_ids(hf: HFDirectory) -> None:
    """<s>, <pad>, </s> must have Fairseq's ids 0, 1, 2 in config.json."""
    for key, want in (("bos_token_id", 0), ("pad_token_id", 1), ("eos_token_id", 2)):
        value = hf.config.get(key, want)
        if value != want:
            raise ConversionError(f"{hf.path}/config.json: {key} is {value}, but Fairseq dictionaries "
                                  f"have {FAIRSEQ_SPECIALS[want]} at id {want}")
