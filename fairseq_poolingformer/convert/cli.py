"""``python -m fairseq_poolingformer.convert bart|roberta|led``: the command line.

BART (a Fairseq ``model.pt`` and its ``dict.txt``)::

    python -m fairseq_poolingformer.convert bart --checkpoint bart.large/model.pt \\
        --dict bart.large/dict.txt --max-source-positions 16384 --output-dir bart.large.pf16k \\
        [--pf-w1 128 --pf-w2 512 --pf-kernel 5 --pf-stride 4 --pf-pooling ldconv --pf-layers 5-10 ...]

writes ``OUTPUT_DIR/model.pt`` (a Fairseq checkpoint of ``poolingformer_bart``, loadable by
``fairseq-train --restore-file``, ``fairseq-generate`` and ``fairseq_poolingformer.summarization``) and
``OUTPUT_DIR/dict.txt`` (plus ``dict.source.txt`` / ``dict.target.txt``). ``roberta`` does the
same for RoBERTa / XLM-R (``--max-positions``; a ``poolingformer_roberta`` for ``long_qa``);
``--hf DIR`` reads a Hugging Face directory instead (and ``led`` reads only those).

Each sub-command picks a reader for its source (:mod:`~fairseq_poolingformer.convert.readers`)
and hands what it read to the core (:mod:`~fairseq_poolingformer.convert.core`). A new source
or model family is a new entry in :data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from typing import Callable, ContextManager, Dict, Iterable, Optional, Tuple

from fairseq_poolingformer.convert.core.bart import convert_bart_weights
from fairseq_poolingformer.convert.core.errors import ConversionError
from fairseq_poolingformer.convert.core.roberta import convert_roberta_weights
from fairseq_poolingformer.convert.core.source import Source
from fairseq_poolingformer.convert.readers.hf.source import hf_source
from fairseq_poolingformer.convert.readers.release import release_source

# ----------------------------------------------------------------------------- sources


def open_source(args: argparse.Namespace, family: str) -> ContextManager[Source]:
    """The source the flags name: a Hugging Face directory (``--hf``) or a Fairseq release."""
    if args.hf:
        return hf_source(args, family)
    return contextlib.nullcontext(release_source(args))


def convert_bart(args: argparse.Namespace) -> str:
    """A Fairseq BART checkpoint (``--checkpoint``/``--dict``) or a Hugging Face BART directory
    (``--hf``) -> ``poolingformer_bart``; returns the output path."""
    with open_source(args, "bart") as source:
        return convert_bart_weights(args, source)


def convert_led(args: argparse.Namespace) -> str:
    """A Hugging Face LED directory -> ``poolingformer_bart`` (at LED's own length by default)."""
    with hf_source(args, "led") as source:
        if args.max_source_positions is None:
            args.max_source_positions = source.args.max_source_positions
        return convert_bart_weights(args, source)


def convert_roberta(args: argparse.Namespace) -> str:
    """Fairseq RoBERTa / XLM-R ``model.pt`` (or ``--hf DIR``) -> ``poolingformer_roberta`` for
    ``long_qa``; returns the output path."""
    with open_source(args, "roberta") as source:
        return convert_roberta_weights(args, source)


# ----------------------------------------------------------------------------- arguments


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


def add_bart_args(parser: argparse.ArgumentParser) -> None:
    """The flags of ``convert bart``."""
    _add_source_args(parser, "BART")
    _add_seq2seq_args(parser)


def add_led_args(parser: argparse.ArgumentParser) -> None:
    """The flags of ``convert led`` (a Hugging Face directory only)."""
    parser.add_argument("--hf", metavar="DIR", required=True,
                        help="a Hugging Face LED save_pretrained directory (e.g. allenai/led-large-16384)")
    parser.set_defaults(checkpoint=None, dict=None, keep_level2=False)
    _add_seq2seq_args(parser)
    parser.set_defaults(max_source_positions=None)  # default: LED's own (e.g. 16384)


def add_roberta_args(parser: argparse.ArgumentParser) -> None:
    """The flags of ``convert roberta``."""
    from fairseq_poolingformer.models.encoder import add_poolingformer_args

    _add_source_args(parser, "RoBERTa / XLM-R")
    parser.add_argument("--output-dir", required=True, help="where model.pt and dict.txt go")
    parser.add_argument("--max-positions", type=int, default=4096,
                        help="positions of the converted model (default 4096)")
    parser.add_argument("--arch", default=None, help="poolingformer_roberta_{base,large} or "
                        "poolingformer_xlmr_large (default: from the checkpoint's arch name / size)")
    add_poolingformer_args(parser)


# ----------------------------------------------------------------------------- main

SUBCOMMANDS: Dict[str, Tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], str]]] = {
    # name: (help, add_arguments(parser), convert(args) -> output path)
    "bart": ("Fairseq or Hugging Face BART -> poolingformer_bart", add_bart_args, convert_bart),
    "roberta": ("Fairseq or Hugging Face RoBERTa / XLM-R -> poolingformer_roberta (long_qa)", add_roberta_args,
                convert_roberta),
    "led": ("Hugging Face LED -> poolingformer_bart", add_led_args, convert_led),
}


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m fairseq_poolingformer.convert`` (one sub-parser per sub-command)."""
    parser = argparse.ArgumentParser(
        prog="python -m fairseq_poolingformer.convert",
        description="Convert pretrained Fairseq or Hugging Face checkpoints into Poolingformer checkpoints.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, _) in SUBCOMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Optional[Iterable[str]] = None) -> str:
    """Run one sub-command; prints and returns the converted checkpoint's path. Bad input ends
    in one line ``convert CMD: error: ...`` and exit status 1."""
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
                        level=logging.INFO, stream=sys.stderr)
    args = build_parser().parse_args(None if argv is None else list(argv))
    try:
        out = SUBCOMMANDS[args.command][2](args)
    except (ConversionError, ValueError) as err:
        raise SystemExit(f"convert {args.command}: error: {err}") from None
    print(out)
    return out
