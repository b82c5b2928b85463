"""A Fairseq-BART :class:`Source` -> a ``poolingformer_bart`` checkpoint (summarization).

Encoder positions are extended to ``--max-source-positions`` by loop copy after BART's
``padding_idx + 1`` reserved rows; every other weight loads by name (level 1 = the pretrained
self-attention); level 2 starts from level 1. OUTPUT_DIR gets ``model.pt``, ``dict.txt`` and
``dict.{source,target}.txt`` (so it is also a data directory for the ``translation`` task).
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


def convert_bart_weights(args: argparse.Namespace, source: Source) -> str:
    """``source`` (a Fairseq-BART state dict + its args + dict.txt) -> OUTPUT_DIR (model.pt, dict
    files and ``source.extra_files`` copied beside them); nothing is written on failure. Returns
    the path of model.pt."""
    import fairseq_poolingformer  # noqa: F401  (registers poolingformer_bart)
    from fairseq.data import Dictionary

    from fairseq_poolingformer.models.encoder import describe_layers
    from fairseq_poolingformer.models.poolingformer_bart import PoolingformerBARTModel

    weights, bart_args, dict_path = source.weights, source.args, source.dict_path
    bart_arch = source_arch(bart_args)
    pos_key = "encoder.embed_positions.weight"
    if pos_key not in weights or "decoder.embed_tokens.weight" not in weights:
        raise ConversionError(
            f"{source.name}: not a BART encoder-decoder checkpoint (arch {bart_arch!r}, "
            f"no {pos_key} or decoder.embed_tokens.weight)"
        )
    if not getattr(bart_args, "encoder_learned_pos", False):
        raise ConversionError(f"{source.name}: encoder positions are not learned (arch {bart_arch!r})")

    dictionary = Dictionary.load(dict_path)
    rows = weights["encoder.embed_tokens.weight"].shape[0]
    if rows not in (len(dictionary), len(dictionary) + 1):  # BART checkpoints add <mask>
        raise ConversionError(
            f"{dict_path}: {len(dictionary)} symbols but {source.name} embeds {rows} tokens: "
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
    output_dir = os.path.abspath(args.output_dir)
    with staging_directory(output_dir) as staging:
        write_dictionaries(dict_path, staging, langs)
        copy_into(source.extra_files, staging)
        train_argv = [
            staging, "--task", "translation", "--source-lang", langs[0], "--target-lang", langs[1],
            "--arch", pf_arch, "--max-source-positions", str(args.max_source_positions),
            "--truncate-source", "--cpu",
        ] + pf_flags(args)
        cfg, model = build_converted_model(train_argv, PoolingformerBARTModel, bart_args, ["max_source_positions"])
        weights = dict(weights)
        weights[pos_key] = extend_positions(weights[pos_key], args.max_source_positions, offset)
        n_new = finish_conversion(model, cfg, weights, model.encoder.two_level_layer_indices(), staging, output_dir,
                                  keep_level2=source.keep_level2, new_key=source.new_key)

    out_path = os.path.join(output_dir, "model.pt")
    logger.info(
        "converted %s (%s, %d positions) -> %s (%s, %d positions; level 2 in encoder layers %s: "
        "%d new tensors, %s)", source.name, bart_arch, old_max,
        out_path, pf_arch, args.max_source_positions,
        describe_layers(model.encoder.two_level_layer_indices(), len(model.encoder.layers)), n_new,
        "kept from the checkpoint where present" if source.keep_level2 else "initialised from level 1",
    )
    return out_path
