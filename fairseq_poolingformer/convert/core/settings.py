"""The converted model's settings: the ``--pf-*`` flags, the pretrained hyper-parameters it
keeps, and the model built from both as ``fairseq-train`` would build it."""

from __future__ import annotations

import argparse
from typing import Any, List, Sequence, Tuple

from torch import nn


def source_arch(src_args: argparse.Namespace) -> str:
    """The arch name a checkpoint's model args record (``arch``, else ``_name``; '' if neither)."""
    return str(getattr(src_args, "arch", None) or getattr(src_args, "_name", None) or "")


def keep_pf_settings(args: argparse.Namespace, src_args: argparse.Namespace) -> None:
    """--keep-level2: every --pf-* flag not given takes the checkpoint's own value."""
    from fairseq_poolingformer.models.encoder import PAPER_DEFAULTS  # every pf_* key

    for key in PAPER_DEFAULTS:
        if getattr(args, key, None) is None and getattr(src_args, key, None) is not None:
            setattr(args, key, getattr(src_args, key))


def pf_flags(args: argparse.Namespace) -> List[str]:
    """The --pf-* flags given to the converter, as fairseq-train would receive them."""
    flags = []
    for key in ("pf_w1", "pf_w2", "pf_kernel", "pf_stride", "pf_pooling", "pf_layers", "pf_global"):
        value = getattr(args, key, None)
        if value is not None:
            flags += [f"--{key.replace('_', '-')}", str(value)]
    for key in ("pf_mix", "pf_share_weights"):
        if getattr(args, key, None):
            flags.append(f"--{key.replace('_', '-')}")
    return flags


def model_arg_names(model_class: type) -> List[str]:
    """The ``dest`` of every argument a Fairseq model class registers in ``add_args``."""
    parser = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    model_class.add_args(parser)
    return [a.dest for a in parser._actions if a.dest != "help"]


def build_converted_model(
    train_argv: List[str], model_class: type, pretrained_args: argparse.Namespace, own_keys: Sequence[str]
) -> Tuple[Any, nn.Module]:
    """Parse ``train_argv`` like fairseq-train, then take every model hyper-parameter (dims, layers,
    dropouts, ...) from the pretrained checkpoint, except the ``pf_*`` ones and ``own_keys``.
    Returns (cfg, model)."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    new_args = options.parse_args_and_arch(options.get_training_parser(), train_argv)
    for key in model_arg_names(model_class):
        if key.startswith("pf_") or key in own_keys:
            continue
        value = getattr(pretrained_args, key, None)
        if value is not None:
            setattr(new_args, key, value)
    cfg = convert_namespace_to_omegaconf(new_args)
    return cfg, tasks.setup_task(cfg.task).build_model(cfg.model)
