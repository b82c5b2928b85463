"""Convert pretrained Fairseq or Hugging Face checkpoints into Poolingformer checkpoints.

Sources: a Fairseq release (``--checkpoint model.pt --dict dict.txt``) or a Hugging Face
``save_pretrained`` directory (``--hf DIR``: BART, RoBERTa / XLM-R, and LED with ``convert led``),
which :mod:`fairseq_poolingformer.hf` translates into what a Fairseq release holds
(state dict, model args, dict.txt, BPE files) before the same conversion runs (docs/convert_hf.md).
A checkpoint that is already a Poolingformer (arch ``poolingformer_*`` or level-2 tensors) is
refused unless ``--keep-level2`` (then its level 2 and ``--pf-*`` settings are kept).

BART (a Fairseq ``model.pt`` and its ``dict.txt``)::

    python -m fairseq_poolingformer.convert bart --checkpoint bart.large/model.pt \\
        --dict bart.large/dict.txt --max-source-positions 16384 --output-dir bart.large.pf16k \\
        [--pf-w1 128 --pf-w2 512 --pf-kernel 5 --pf-stride 4 --pf-pooling ldconv --pf-layers 5-10 ...]

writes ``OUTPUT_DIR/model.pt`` (a Fairseq checkpoint of ``poolingformer_bart``, loadable by
``fairseq-train --restore-file``, ``fairseq-generate`` and ``fairseq_poolingformer.hub``) and
``OUTPUT_DIR/dict.txt`` (plus ``dict.source.txt`` / ``dict.target.txt``, so the directory is
also a data directory for the ``translation`` task).

What is copied, and how the new weights start:

- Encoder positions are extended to ``--max-source-positions`` N by copying the pretrained
  rows in a loop (:func:`extend_positions`): new position ``p`` (0-based) takes pretrained
  position ``p mod M`` (M = the pretrained maximum). Fairseq's learned positions reserve the
  first ``padding_idx + 1`` rows (BART: rows 0 and 1), which are kept as they are.
- Every other pretrained weight is loaded by name (level 1 = the pretrained self-attention).
- Level 2 (:func:`init_level2`): q2/k2/v2 copy the level-1 q/k/v projections, the level-2
  output projection is zero and the LDConv weights W_p are zero (uniform pooling weights). So
  the converted model computes exactly what the pretrained model computes wherever the level-1
  window covers the input, and fine-tuning grows level 2 from zero.

The reusable pieces (:func:`extend_positions`, :func:`init_level2`, :func:`load_checkpoint`,
:func:`load_pretrained_weights`, :func:`save_checkpoint`, :func:`write_dictionaries`, and the
cores :func:`convert_bart_weights` / :func:`convert_roberta_weights`, which take a Fairseq-release
state dict + args + dict.txt from any source) are meant for other converters too (register a
sub-command in ``SUBCOMMANDS``).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

logger = logging.getLogger("fairseq_poolingformer.convert")

LEVEL2_PARAM_NAMES = ("q2_proj", "k2_proj", "v2_proj", "out2_proj", "k_pool_weight", "v_pool_weight")


class ConversionError(ValueError):
    """A checkpoint or dictionary that cannot be converted (the message says which and why)."""


# ----------------------------------------------------------------------------- tensor helpers


def extend_positions(weight: torch.Tensor, max_positions: int, offset: int) -> torch.Tensor:
    """Learned positions (offset + M, C) -> (offset + max_positions, C) by loop-copying.

    Rows ``[0, offset)`` are reserved (padding and below) and kept; new position ``p`` takes the
    pretrained row of position ``p % M``. ``max_positions < M`` keeps the first rows.
    """
    if weight.dim() != 2:
        raise ConversionError(f"position embedding must be 2-D (rows, C), got shape {tuple(weight.shape)}")
    if max_positions <= 0:
        raise ConversionError(f"max_positions must be positive, got {max_positions}")
    pretrained = weight.shape[0] - offset  # M
    if offset < 0 or pretrained <= 0:
        raise ConversionError(
            f"position embedding has {weight.shape[0]} rows, not more than the offset {offset}"
        )
    source_rows = offset + torch.arange(max_positions) % pretrained  # (max_positions,)
    return torch.cat([weight[:offset], weight[source_rows]], dim=0).clone()


def is_level2_key(key: str) -> bool:
    """True for parameters that only Poolingformer's level 2 has (absent from pretrained models)."""
    return any(f".{name}." in f".{key}" or key.endswith(f".{name}") for name in LEVEL2_PARAM_NAMES)


def init_level2(model: nn.Module, missing_keys: Optional[Sequence[str]] = None) -> int:
    """Call ``init_level2_from_level1()`` on every two-level attention (with ``missing_keys``:
    only on those with a key in it, i.e. whose level 2 did not come from the checkpoint);
    returns how many."""
    count = 0
    for name, module in model.named_modules():
        init = getattr(module, "init_level2_from_level1", None)
        if not callable(init):
            continue
        if missing_keys is not None and not any(k.startswith(name + ".") for k in missing_keys):
            continue
        init()
        count += 1
    return count


def already_poolingformer(weights: Dict[str, torch.Tensor], src_args: argparse.Namespace, path: str,
                          keep_level2: bool) -> bool:
    """True if the checkpoint is already a Poolingformer (arch ``poolingformer_*`` or level-2
    tensors). Converting one again would reset its (trained) level 2, so without ``keep_level2``
    that is an error naming what shows it."""
    arch = _source_arch(src_args)
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


def keep_pf_settings(args: argparse.Namespace, src_args: argparse.Namespace) -> None:
    """--keep-level2: every --pf-* flag not given takes the checkpoint's own value."""
    from fairseq_poolingformer.models.encoder import PAPER_DEFAULTS  # every pf_* key

    for key in PAPER_DEFAULTS:
        if getattr(args, key, None) is None and getattr(src_args, key, None) is not None:
            setattr(args, key, getattr(src_args, key))


# ----------------------------------------------------------------------------- checkpoint I/O


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


def load_pretrained_weights(
    model: nn.Module,
    state_dict: Dict[str, torch.Tensor],
    model_cfg: Any = None,
    new_key: Callable[[str], bool] = is_level2_key,
) -> List[str]:
    """Load ``state_dict`` into a Fairseq model; only keys with ``new_key(k)`` may be missing.

    Any other missing key or any unexpected key raises ``ConversionError`` listing them.
    Returns the missing (new) keys.
    """
    try:
        result = model.load_state_dict(state_dict, strict=False, model_cfg=model_cfg)
    except RuntimeError as err:  # shape mismatches: say so in one line
        raise ConversionError(f"pretrained weights do not fit the Poolingformer model: {err}") from None
    missing = [k for k in result.missing_keys if not new_key(k)]
    if missing or result.unexpected_keys:
        raise ConversionError(
            "pretrained weights do not match the Poolingformer model: "
            f"missing {missing[:20]}{' ...' if len(missing) > 20 else ''}, "
            f"unexpected {result.unexpected_keys[:20]}"
            f"{' ...' if len(result.unexpected_keys) > 20 else ''}"
        )
    return [k for k in result.missing_keys if new_key(k)]


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


def model_arg_names(model_class: type) -> List[str]:
    """The ``dest`` of every argument a Fairseq model class registers in ``add_args``."""
    parser = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    model_class.add_args(parser)
    return [a.dest for a in parser._actions if a.dest != "help"]


# ----------------------------------------------------------------------------- BART


def _pf_flags(args: argparse.Namespace) -> List[str]:
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


def _staging_dir(output_dir: str) -> str:
    """A temporary directory next to ``output_dir`` (moved into place only on success)."""
    os.makedirs(os.path.dirname(output_dir), exist_ok=True)
    return tempfile.mkdtemp(prefix=".convert.", dir=os.path.dirname(output_dir))


def _copy_into(paths: Sequence[str], directory: str) -> None:
    for path in paths:
        shutil.copyfile(path, os.path.join(directory, os.path.basename(path)))


def _source_arch(src_args: argparse.Namespace) -> str:
    return str(getattr(src_args, "arch", None) or getattr(src_args, "_name", None) or "")


def convert_bart(args: argparse.Namespace) -> str:
    """Convert a Fairseq BART checkpoint (``--checkpoint``/``--dict``) or a Hugging Face BART
    directory (``--hf``; see :mod:`fairseq_poolingformer.hf`); returns the output path."""
    return _convert_source(args, "bart", convert_bart_weights)


def _convert_source(args: argparse.Namespace, family: str, convert_weights: Callable[..., str]) -> str:
    """The source-reading half of ``convert bart|roberta``: an HF directory (``--hf``) or a
    Fairseq checkpoint + dictionary, refused when it already is a Poolingformer unless
    ``--keep-level2``; ``convert_weights(args, weights, src_args, dict, source, keep_level2=)``
    does the conversion."""
    if args.hf:
        from fairseq_poolingformer.hf import convert_hf

        return convert_hf(args, family)
    _require_checkpoint_and_dict(args)
    state = load_checkpoint(args.checkpoint)
    src_args = checkpoint_model_args(state, args.checkpoint)
    keep = already_poolingformer(state["model"], src_args, args.checkpoint, args.keep_level2)
    if keep:
        keep_pf_settings(args, src_args)
    return convert_weights(args, dict(state["model"]), src_args, args.dict, args.checkpoint, keep_level2=keep)


def convert_bart_weights(
    args: argparse.Namespace, weights: Dict[str, torch.Tensor], bart_args: argparse.Namespace, dict_path: str,
    source: str, extra_files: Sequence[str] = (), keep_level2: bool = False,
) -> str:
    """A Fairseq-BART state dict + its args + dict.txt -> OUTPUT_DIR (model.pt, dict files and
    ``extra_files`` copied beside them); nothing is written on failure."""
    import fairseq_poolingformer  # noqa: F401  (registers poolingformer_bart)
    from fairseq.data import Dictionary

    from fairseq_poolingformer.models.encoder import describe_layers
    from fairseq_poolingformer.models.poolingformer_bart import PoolingformerBARTModel

    bart_arch = _source_arch(bart_args)
    pos_key = "encoder.embed_positions.weight"
    if pos_key not in weights or "decoder.embed_tokens.weight" not in weights:
        raise ConversionError(
            f"{source}: not a BART encoder-decoder checkpoint (arch {bart_arch!r}, "
            f"no {pos_key} or decoder.embed_tokens.weight)"
        )
    if not getattr(bart_args, "encoder_learned_pos", False):
        raise ConversionError(f"{source}: encoder positions are not learned (arch {bart_arch!r})")

    dictionary = Dictionary.load(dict_path)
    rows = weights["encoder.embed_tokens.weight"].shape[0]
    if rows not in (len(dictionary), len(dictionary) + 1):  # BART checkpoints add <mask>
        raise ConversionError(
            f"{dict_path}: {len(dictionary)} symbols but {source} embeds {rows} tokens: "
            "wrong dict.txt for this checkpoint?"
        )
    offset = dictionary.pad() + 1  # Fairseq's learned positions start after padding_idx
    old_max = weights[pos_key].shape[0] - offset

    langs = (args.source_lang, args.target_lang)
    if args.arch:
        pf_arch = args.arch
    elif bart_arch.startswith("poolingformer_"):
        pf_arch = bart_arch
    else:
        pf_arch = "poolingformer_bart_large" if "large" in bart_arch else "poolingformer_bart_base"
    # Everything is built in a staging directory next to OUTPUT_DIR and moved into place at
    # the end: a failed conversion leaves no partial output.
    output_dir = os.path.abspath(args.output_dir)
    staging = _staging_dir(output_dir)
    try:
        write_dictionaries(dict_path, staging, langs)
        _copy_into(extra_files, staging)
        train_argv = [
            staging, "--task", "translation", "--source-lang", langs[0], "--target-lang", langs[1],
            "--arch", pf_arch, "--max-source-positions", str(args.max_source_positions),
            "--truncate-source", "--cpu",
        ] + _pf_flags(args)
        cfg, model = build_converted_model(train_argv, PoolingformerBARTModel, bart_args, ["max_source_positions"])
        weights = dict(weights)
        weights[pos_key] = extend_positions(weights[pos_key], args.max_source_positions, offset)
        n_new = finish_conversion(model, cfg, weights, model.encoder.two_level_layer_indices(), staging, output_dir,
                                  keep_level2=keep_level2)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    out_path = os.path.join(output_dir, "model.pt")
    logger.info(
        "converted %s (%s, %d positions) -> %s (%s, %d positions; level 2 in encoder layers %s: "
        "%d new tensors, %s)", source, bart_arch, old_max,
        out_path, pf_arch, args.max_source_positions,
        describe_layers(model.encoder.two_level_layer_indices(), len(model.encoder.layers)), n_new,
        "kept from the checkpoint where present" if keep_level2 else "initialised from level 1",
    )
    return out_path


def _require_checkpoint_and_dict(args: argparse.Namespace) -> None:
    if not args.checkpoint or not args.dict:
        raise ConversionError("give --checkpoint and --dict (a Fairseq release), or --hf DIR (a Hugging Face "
                              "save_pretrained directory)")


def _add_source_args(parser: argparse.ArgumentParser, what: str) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help=f"Fairseq {what} model.pt (with --dict)")
    source.add_argument("--hf", metavar="DIR", help="a Hugging Face save_pretrained directory (config.json, "
                        "model.safetensors or pytorch_model.bin, tokenizer files); writes dict.txt and the "
                        "BPE files from its tokenizer")
    parser.add_argument("--dict", help="the dict.txt of --checkpoint")
    parser.add_argument("--keep-level2", action="store_true",
                        help="convert a checkpoint that is already a Poolingformer (e.g. fine-tuned), keeping its "
                             "level-2 weights and --pf-* settings (without it, such a checkpoint is refused)")


def add_bart_args(parser: argparse.ArgumentParser) -> None:
    _add_source_args(parser, "BART")
    _add_seq2seq_args(parser)


def _add_seq2seq_args(parser: argparse.ArgumentParser) -> None:
    from fairseq_poolingformer.models.encoder import add_poolingformer_args

    parser.add_argument("--output-dir", required=True, help="where model.pt and dict*.txt go")
    parser.add_argument("--max-source-positions", type=int, default=4096,
                        help="encoder positions of the converted model (default 4096)")
    parser.add_argument("--arch", default=None,
                        help="poolingformer_bart_{base,large} (default: from the BART arch name / size)")
    parser.add_argument("--source-lang", default="source", help="suffix of the source files")
    parser.add_argument("--target-lang", default="target", help="suffix of the target files")
    add_poolingformer_args(parser)


def add_led_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hf", metavar="DIR", required=True,
                        help="a Hugging Face LED save_pretrained directory (e.g. allenai/led-large-16384)")
    parser.set_defaults(checkpoint=None, dict=None, keep_level2=False)
    _add_seq2seq_args(parser)
    parser.set_defaults(max_source_positions=None)  # default: LED's own (e.g. 16384)


def convert_led(args: argparse.Namespace) -> str:
    from fairseq_poolingformer.hf import convert_hf

    return convert_hf(args, "led")


# ----------------------------------------------------------------------------- RoBERTa / XLM-R


def convert_roberta(args: argparse.Namespace) -> str:
    """Fairseq RoBERTa / XLM-R ``model.pt`` (or ``--hf DIR``) -> ``poolingformer_roberta`` for ``long_qa``.

    Positions are loop-copied to ``--max-positions`` after the reserved rows ``[0, padding_idx]``
    (RoBERTa and XLM-R positions start at padding_idx + 1); level 2 starts from level 1
    (:func:`init_level2`); the QA head starts from its random initialisation. Writes
    OUTPUT_DIR/model.pt and OUTPUT_DIR/dict.txt; nothing on failure.
    """
    return _convert_source(args, "roberta", convert_roberta_weights)


def convert_roberta_weights(
    args: argparse.Namespace, weights: Dict[str, torch.Tensor], src_args: argparse.Namespace, dict_path: str,
    source: str, extra_files: Sequence[str] = (), keep_level2: bool = False,
    new_key: Callable[[str], bool] = is_level2_key,
) -> str:
    """A Fairseq RoBERTa/XLM-R state dict + args + dict.txt -> OUTPUT_DIR (see :func:`convert_roberta`)."""
    import fairseq_poolingformer  # noqa: F401  (registers poolingformer_roberta, long_qa)
    from fairseq.data import Dictionary

    from fairseq_poolingformer.models.encoder import describe_layers
    from fairseq_poolingformer.models.poolingformer_roberta import PoolingformerRobertaModel

    src_arch = _source_arch(src_args)
    weights = dict(weights)
    # old releases name the encoder "decoder"; the model's state-dict upgrade renames the rest
    pos_keys = [k for k in weights if k.endswith("sentence_encoder.embed_positions.weight")]
    if len(pos_keys) != 1 or "decoder.embed_tokens.weight" in weights:
        raise ConversionError(f"{source}: not a RoBERTa / XLM-R checkpoint (arch {src_arch!r}, "
                              f"position keys {pos_keys})")
    pos_key = pos_keys[0]
    dictionary = Dictionary.load(dict_path)
    rows = weights[pos_key.replace("embed_positions", "embed_tokens")].shape[0]
    if rows != len(dictionary) + 1:  # RoBERTa / XLM-R checkpoints add <mask>
        raise ConversionError(f"{dict_path}: {len(dictionary)} symbols (+ <mask>) but {source} "
                              f"embeds {rows} tokens: wrong dict.txt for this checkpoint?")
    offset = dictionary.pad() + 1
    old_max = weights[pos_key].shape[0] - offset
    weights[pos_key] = extend_positions(weights[pos_key], args.max_positions, offset)
    if args.arch:
        pf_arch = args.arch
    elif src_arch.startswith("poolingformer_"):
        pf_arch = src_arch
    elif "xlmr" in src_arch and "large" in src_arch:
        pf_arch = "poolingformer_xlmr_large"
    else:
        pf_arch = "poolingformer_roberta_large" if "large" in src_arch else "poolingformer_roberta_base"

    output_dir = os.path.abspath(args.output_dir)
    staging = _staging_dir(output_dir)
    try:
        write_dictionaries(dict_path, staging, [])
        _copy_into(extra_files, staging)
        train_argv = [staging, "--task", "long_qa", "--criterion", "long_qa", "--arch", pf_arch,
                      "--max-positions", str(args.max_positions), "--cpu"] + _pf_flags(args)
        cfg, model = build_converted_model(train_argv, PoolingformerRobertaModel, src_args, ["max_positions"])
        two_level = model.encoder.sentence_encoder.two_level_layer_indices()
        n_new = finish_conversion(model, cfg, weights, two_level, staging, output_dir, keep_level2=keep_level2,
                                  new_key=new_key)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    out_path = os.path.join(output_dir, "model.pt")
    logger.info("converted %s (%s, %d positions) -> %s (%s, %d positions; level 2 in layers %s: %d new "
                "tensors, %s)", source, src_arch, old_max, out_path, pf_arch,
                args.max_positions, describe_layers(two_level, len(model.encoder.sentence_encoder.layers)), n_new,
                "kept from the checkpoint where present" if keep_level2 else "initialised from level 1")
    return out_path


def add_roberta_args(parser: argparse.ArgumentParser) -> None:
    from fairseq_poolingformer.models.encoder import add_poolingformer_args

    _add_source_args(parser, "RoBERTa / XLM-R")
    parser.add_argument("--output-dir", required=True, help="where model.pt and dict.txt go")
    parser.add_argument("--max-positions", type=int, default=4096,
                        help="positions of the converted model (default 4096)")
    parser.add_argument("--arch", default=None, help="poolingformer_roberta_{base,large} or "
                        "poolingformer_xlmr_large (default: from the checkpoint's arch name / size)")
    add_poolingformer_args(parser)


# ----------------------------------------------------------------------------- CLI

SUBCOMMANDS: Dict[str, tuple] = {
    # name: (help, add_arguments(parser), convert(args) -> output path)
    "bart": ("Fairseq or Hugging Face BART -> poolingformer_bart", add_bart_args, convert_bart),
    "roberta": ("Fairseq or Hugging Face RoBERTa / XLM-R -> poolingformer_roberta (long_qa)", add_roberta_args,
                convert_roberta),
    "led": ("Hugging Face LED -> poolingformer_bart", add_led_args, convert_led),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fairseq_poolingformer.convert",
        description="Convert pretrained Fairseq or Hugging Face checkpoints into Poolingformer checkpoints.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, _) in SUBCOMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Optional[Iterable[str]] = None) -> str:
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
                        level=logging.INFO, stream=sys.stderr)
    args = build_parser().parse_args(None if argv is None else list(argv))
    try:
        out = SUBCOMMANDS[args.command][2](args)
    except (ConversionError, ValueError) as err:
        raise SystemExit(f"convert {args.command}: error: {err}") from None
    print(out)
    return out


if __name__ == "__main__":
    main()
