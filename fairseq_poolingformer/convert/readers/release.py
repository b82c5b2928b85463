"""A Fairseq release (``--checkpoint model.pt --dict dict.txt``) -> a core :class:`Source`.

A checkpoint that is already a Poolingformer (arch ``poolingformer_*`` or level-2 tensors) is
refused unless ``--keep-level2`` (then its level 2 and ``--pf-*`` settings are kept).
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Dict

import torch

from fairseq_poolingformer.convert.core.errors import ConversionError
from fairseq_poolingformer.convert.core.settings import keep_pf_settings, source_arch
from fairseq_poolingformer.convert.core.source import Source
from fairseq_poolingformer.convert.core.weights import is_level2_key


def load_checkpoint(path: str) -> Dict[str, Any]:
    """Load a Fairseq checkpoint on CPU (old ``args`` checkpoints upgraded by Fairseq)."""
    import fairseq_poolingformer  # noqa: F401  (compat fixes for torch.load)
    from fairseq import checkpoint_utils

    if not os.path.isfile(path):
        raise ConversionError(f"checkpoint not found: {path}")
    try:
        state = checkpoint_utils.load_checkpoint_to_cpu(path)
    except Exception as err:  # torch/pickle errors are cryptic: say which file
        raise ConversionError(f"{path}: cannot load as a Fairseq checkpoint: {err}") from err
    if "model" not in state:
        raise ConversionError(f"{path}: no 'model' entry (keys: {sorted(state)})")
    return state


def checkpoint_model_args(state: Dict[str, Any], path: str = "checkpoint") -> argparse.Namespace:
    """The model hyper-parameters of a loaded checkpoint as a flat Namespace."""
    cfg = state.get("cfg")
    model_cfg = cfg["model"] if cfg is not None and cfg.get("model") is not None else None
    if model_cfg is None and state.get("args") is not None:
        model_cfg = state["args"]
    if model_cfg is None:
        raise ConversionError(f"{path}: neither cfg.model nor args in the checkpoint")
    if isinstance(model_cfg, argparse.Namespace):
        return argparse.Namespace(**vars(model_cfg))
    from omegaconf import OmegaConf

    return argparse.Namespace(**OmegaConf.to_container(model_cfg, resolve=True))


def already_poolingformer(weights: Dict[str, torch.Tensor], src_args: argparse.Namespace, path: str,
                          keep_level2: bool) -> bool:
    """True if the checkpoint is already a Poolingformer (arch ``poolingformer_*`` or level-2
    tensors). Converting one again would reset its (trained) level 2, so without ``keep_level2``
    that is an error naming what shows it."""
    arch = source_arch(src_args)
    level2 = sorted(k for k in weights if is_level2_key(k))
    if not arch.startswith("poolingformer") and not level2:
        return False
    if keep_level2:
        return True
    evidence = ", ".join([f"arch {arch!r}"] * arch.startswith("poolingformer") + [f"tensor {level2[0]}"] * bool(level2))
    raise ConversionError(
        f"{path}: already a Poolingformer checkpoint ({evidence}); converting it again would reset its "
        "level-2 weights to their initialisation. Give the original pretrained checkpoint, or pass "
        "--keep-level2 to keep its level-2 weights (e.g. to extend its positions)")


def release_source(args: argparse.Namespace) -> Source:
    """``--checkpoint``/``--dict`` (and ``--keep-level2``, which also fills the ``--pf-*`` flags
    not given from the checkpoint's own) -> the :class:`Source` the core converts."""
    if not args.checkpoint or not args.dict:
        raise ConversionError("give --checkpoint and --dict (a Fairseq release), or --hf DIR (a Hugging Face "
                              "save_pretrained directory)")
    state = load_checkpoint(args.checkpoint)
    src_args = checkpoint_model_args(state, args.checkpoint)
    keep = already_poolingformer(state["model"], src_args, args.checkpoint, args.keep_level2)
    if keep:
        keep_pf_settings(args, src_args)
    return Source(dict(state["model"]), src_args, args.dict, args.checkpoint, keep_level2=keep)
