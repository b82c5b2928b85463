"""A Fairseq RoBERTa / XLM-R :class:`Source` -> a ``poolingformer_roberta`` checkpoint (``long_qa``).

Positions are loop-copied to ``--max-positions`` after the reserved rows ``[0, padding_idx]``
(RoBERTa and XLM-R positions start at padding_idx + 1); level 2 starts from level 1; the QA head
starts from its random initialisation. OUTPUT_DIR gets ``model.pt`` and ``dict.txt``.
"""

from __future__ import annotations

import argparse
import logging
import os

from fairseq_poolingformer.convert.core.errors import ConversionError
from fairseq_poolingformer.convert.core.output import (copy_into, finish_conversion, staging_directory,
                                                       write_dictionaries)
from fairseq_poolingformer.convert.core.settings import build_converted_model, pf_flags, source_arch
from fairseq_poolingformer.convert.core.source import Source
from fairseq_poolingformer.convert.core.weights import extend_positions

logger = logging.getLogger("fairseq_poolingformer.convert")


def convert_roberta_weights(args: argparse.Namespace, source: Source) -> str:
    """``source`` (a Fairseq RoBERTa/XLM-R state dict + args + dict.txt) -> OUTPUT_DIR (model.pt,
    dict.txt and ``source.extra_files``); nothing is written on failure. Returns the path of
    model.pt."""
    import fairseq_poolingformer  # noqa: F401  (registers poolingformer_roberta, long_qa)
    from fairseq.data import Dictionary

    from fairseq_poolingformer.models.encoder import describe_layers
    from fairseq_poolingformer.models.poolingformer_roberta import PoolingformerRobertaModel

    src_arch = source_arch(source.args)
    weights = dict(source.weights)
    # old releases name the encoder "decoder"; the model's state-dict upgrade renames the rest
    pos_keys = [k for k in weights if k.endswith("sentence_encoder.embed_positions.weight")]
    if len(pos_keys) != 1 or "decoder.embed_tokens.weight" in weights:
        raise ConversionError(f"{source.name}: not a RoBERTa / XLM-R checkpoint (arch {src_arch!r}, "
                              f"position keys {pos_keys})")
    pos_key = pos_keys[0]
    dictionary = Dictionary.load(source.dict_path)
    rows = weights[pos_key.replace("embed_positions", "embed_tokens")].shape[0]
    if rows != len(dictionary) + 1:  # RoBERTa / XLM-R checkpoints add <mask>
        raise ConversionError(f"{source.dict_path}: {len(dictionary)} symbols (+ <mask>) but {source.name} "
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
    with staging_directory(output_dir) as staging:
        write_dictionaries(source.dict_path, staging, [])
        copy_into(source.extra_files, staging)
        train_argv = [staging, "--task", "long_qa", "--criterion", "long_qa", "--arch", pf_arch,
                      "--max-positions", str(args.max_positions), "--cpu"] + pf_flags(args)
        cfg, model = build_converted_model(train_argv, PoolingformerRobertaModel, source.args, ["max_positions"])
        two_level = model.encoder.sentence_encoder.two_level_layer_indices()
        n_new = finish_conversion(model, cfg, weights, two_level, staging, output_dir,
                                  keep_level2=source.keep_level2, new_key=source.new_key)
    out_path = os.path.join(output_dir, "model.pt")
    logger.info("converted %s (%s, %d positions) -> %s (%s, %d positions; level 2 in layers %s: %d new "
                "tensors, %s)", source.name, src_arch, old_max, out_path, pf_arch,
                args.max_positions, describe_layers(two_level, len(model.encoder.sentence_encoder.layers)), n_new,
                "kept from the checkpoint where present" if source.keep_level2 else "initialised from level 1")
    return out_path
