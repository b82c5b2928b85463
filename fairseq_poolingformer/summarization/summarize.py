"""``pf-summarize``: summarize long documents (text files or stdin) with a Poolingformer-BART checkpoint.

    pf-summarize --checkpoint DIR paper1.txt paper2.txt        # one summary line per file
    cat paper.txt | pf-summarize --checkpoint DIR --beam 4 --lenpen 2.0 --max-len-b 256

The model, dictionaries and BPE come through the summarizer hub
(``summarization.hub.from_pretrained``: dictionaries and BPE files beside the checkpoint, in
the order ``inference.files`` documents, or given; a relative ``--dict`` is relative to the
working directory). Decoding flags are ``fairseq-generate``'s and default to
``summarization.decoding.DEFAULTS`` (beam 5, length penalty 2, max length 0 * source + 512,
min length 56, no repeated trigram), the table the hub and ``recipes/arxiv/generate.sh`` read
too, so the same checkpoint gives the same summaries. A document longer than the model's
source positions is truncated, as in training. Writes one summary per document, one line each,
in input order, to stdout or ``--output FILE`` (a file complete or absent, a FIFO or device
streamed, never a document, the checkpoint or a file of the model: ``inference.output``,
``inference.files.model_files``). Every option is checked when parsed
(exit status 2, one line naming the flag); bad input (an empty document, a file that is not
UTF-8, BPE or dictionary files that do not parse, a QA checkpoint) is one ``pf-summarize:
error:`` line, exit status 1, nothing written; Ctrl-C exits 130. Quiet but for the progress
bar (on a terminal) and errors; ``--verbose`` adds Fairseq's log lines.
"""
from __future__ import annotations

import argparse
import os
from typing import Sequence

from fairseq_poolingformer.inference.console import progress_bar
from fairseq_poolingformer.inference.device import place
from fairseq_poolingformer.inference.files import CHECKPOINT_NAMES, model_files, resolve_checkpoint
from fairseq_poolingformer.inference.options import (add_run_options, finite_float, nonnegative_float, nonnegative_int,
                                                     positive_int, tool_main)
from fairseq_poolingformer.inference.output import check_output, open_output
from fairseq_poolingformer.inference.text import read_text
from fairseq_poolingformer.summarization.decoding import DEFAULTS, check_decoding
from fairseq_poolingformer.summarization.errors import SummarizerError
from fairseq_poolingformer.summarization.hub import FLAGS, from_pretrained


def flag(option: str) -> str:
    """The command-line flag of a decoding option (``min_len`` -> ``--min-len``)."""
    return "--" + option.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pf-summarize", description="Summarize long documents with a "
                                "Poolingformer-BART checkpoint; one summary line per document.")
    p.add_argument("files", nargs="*", metavar="FILE", help="documents (UTF-8 text); none: stdin is one document")
    p.add_argument("--checkpoint", required=True, help="checkpoint file, or a directory holding "
                   f"{' / '.join(CHECKPOINT_NAMES)} with the dictionaries and BPE files beside it")
    p.add_argument("--dict", default=None, help="the binarized data directory (dict.source.txt, dict.target.txt) "
                   "or a joined dict.txt (default: those beside the checkpoint, else the dict.txt beside it)")
    p.add_argument("--bpe", choices=["gpt2", "sentencepiece", "none"], default=None,
                   help="default: found beside the checkpoint (sentencepiece or GPT-2 files)")
    p.add_argument("--sentencepiece-model", help="sentencepiece model")
    p.add_argument("--gpt2-encoder-json", help="GPT-2 BPE encoder.json")
    p.add_argument("--gpt2-vocab-bpe", help="GPT-2 BPE vocab.bpe")
    g = p.add_argument_group("decoding (fairseq-generate's flags; the defaults of the hub and generate.sh)")
    g.add_argument("--beam", type=positive_int, default=DEFAULTS.beam)
    g.add_argument("--lenpen", type=finite_float, default=DEFAULTS.lenpen)
    g.add_argument("--max-len-a", type=nonnegative_float, default=DEFAULTS.max_len_a)
    g.add_argument("--max-len-b", type=positive_int, default=DEFAULTS.max_len_b)
    g.add_argument("--min-len", type=nonnegative_int, default=DEFAULTS.min_len)
    g.add_argument("--no-repeat-ngram-size", type=nonnegative_int, default=DEFAULTS.no_repeat_ngram_size)
    p.add_argument("--batch-size", type=positive_int, default=4, help="documents per batch")
    add_run_options(p)
    return p


def decoding_options(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name) for name in DEFAULTS.as_kwargs()}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options, each checked against its meaning (argparse's error and exit status 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_decoding(decoding_options(args), name=flag)
    except SummarizerError as e:
        parser.error(str(e))
    return args


def summarize(args: argparse.Namespace) -> int:
    """pf-summarize's work, after parsing: raises the errors ``run`` reports in one line."""
    files = args.files or ["-"]
    # an output that is a document, the checkpoint or one of its files is refused, before any work
    inputs = [*files, *model_files(args.checkpoint, args.dict, args.sentencepiece_model, args.gpt2_encoder_json,
                                   args.gpt2_vocab_bpe)]
    check_output(args.output, inputs)
    checkpoint = resolve_checkpoint(args.checkpoint)
    documents = []
    for path in files:  # every file read and checked before the model runs
        text = read_text(path)
        if not text.strip():
            raise SummarizerError(f"{'stdin' if path == '-' else path}: empty document")
        documents.append(text)
    summarizer = from_pretrained(
        checkpoint, data_name_or_path=os.path.abspath(args.dict) if args.dict else ".", bpe=args.bpe,
        gpt2_encoder_json=args.gpt2_encoder_json, gpt2_vocab_bpe=args.gpt2_vocab_bpe,
        sentencepiece_model=args.sentencepiece_model, batch_size=args.batch_size, names=FLAGS)
    options = decoding_options(args)
    check_decoding(options, summarizer.max_target_tokens, summarizer.max_source_tokens, name=flag)
    summarizer, _ = place(summarizer, args.cpu, args.fp16)
    with open_output(args.output, inputs) as out, progress_bar(len(documents), "pf-summarize") as bar:
        for start in range(0, len(documents), args.batch_size):
            batch = documents[start:start + args.batch_size]
            for summary in summarizer.sample(batch, **options):
                out.write(summary.replace("\n", " ") + "\n")
            bar.update(len(batch))
    return 0


# parse, then summarize; exits with 0, 1 (one error line), 2 (usage) or 130 (Ctrl-C); cli_main: setup.py's
main = cli_main = tool_main("pf-summarize", parse_args, summarize)

if __name__ == "__main__":
    main()
