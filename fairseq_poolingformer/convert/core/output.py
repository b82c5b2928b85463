"""The staged save: everything is written into a staging directory next to OUTPUT_DIR and moved
into place only when the whole conversion succeeded, so a failure leaves no partial output."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Any, Callable, Dict, Iterator, Sequence

import torch
from torch import nn

from fairseq_poolingformer.convert.core.errors import ConversionError
from fairseq_poolingformer.convert.core.weights import init_level2, is_level2_key, load_pretrained_weights


@contextlib.contextmanager
def staging_directory(output_dir: str) -> Iterator[str]:
    """A temporary directory next to ``output_dir`` (same file system: files move into place by
    rename), removed with whatever is left in it when the block ends."""
    os.makedirs(os.path.dirname(output_dir), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".convert.", dir=os.path.dirname(output_dir))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def copy_into(paths: Sequence[str], directory: str) -> None:
    """Copy each file of ``paths`` into ``directory`` under its own name."""
    for path in paths:
        shutil.copyfile(path, os.path.join(directory, os.path.basename(path)))


def write_dictionaries(dict_path: str, output_dir: str, langs: Sequence[str]) -> str:
    """Copy ``dict.txt`` to OUTPUT_DIR as dict.txt and dict.{lang}.txt; returns its path."""
    if not os.path.isfile(dict_path):
        raise ConversionError(f"dictionary not found: {dict_path}")
    os.makedirs(output_dir, exist_ok=True)
    targets = ["dict.txt"] + [f"dict.{lang}.txt" for lang in langs]
    for name in targets:
        dst = os.path.join(output_dir, name)
        if os.path.abspath(dst) != os.path.abspath(dict_path):
            tmp = dst + ".tmp"
            shutil.copyfile(dict_path, tmp)
            os.replace(tmp, dst)
    return os.path.join(output_dir, "dict.txt")


def save_checkpoint(path: str, cfg: Any, model: nn.Module) -> None:
    """Write a Fairseq checkpoint (the layout of ``Trainer.state_dict``) atomically."""
    from fairseq import checkpoint_utils
    from omegaconf import OmegaConf

    state = {
        "args": None,
        "cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
        if OmegaConf.is_config(cfg) else cfg,
        "model": model.state_dict(),
        "criterion": None,
        "optimizer_history": [{
            "criterion_name": "CrossEntropyCriterion",
            "optimizer_name": "NoOptimizer",
            "lr_scheduler_state": {},
            "num_updates": 0,
        }],
        "task_state": {},
        "extra_state": {"converted_by": "fairseq_poolingformer.convert"},
    }
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".model.", suffix=".pt.tmp", dir=directory)
    os.close(fd)
    try:
        checkpoint_utils.torch_persistent_save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def finish_conversion(
    model: nn.Module, cfg: Any, weights: Dict[str, torch.Tensor], two_level: Sequence[int], staging: str,
    output_dir: str, keep_level2: bool = False, new_key: Callable[[str], bool] = is_level2_key,
) -> int:
    """Load the pretrained weights, start level 2 from level 1 (``keep_level2``: only where the
    checkpoint has none), save the checkpoint in ``staging`` and move everything staged into
    ``output_dir``. Returns the number of new tensors."""
    new_keys = load_pretrained_weights(model, weights, model_cfg=cfg.model, new_key=new_key)
    n_two_level = init_level2(model, [k for k in new_keys if is_level2_key(k)] if keep_level2 else None)
    if not keep_level2 and n_two_level != len(two_level):
        raise ConversionError(f"initialised level 2 in {n_two_level} layers, expected {len(two_level)}")
    cfg.task.data = output_dir  # the staging path must not end up in the checkpoint
    if getattr(cfg.model, "data", None) is not None:
        cfg.model.data = output_dir
    save_checkpoint(os.path.join(staging, "model.pt"), cfg, model)
    os.makedirs(output_dir, exist_ok=True)
    for name in sorted(os.listdir(staging)):
        os.replace(os.path.join(staging, name), os.path.join(output_dir, name))
    return len(new_keys)
