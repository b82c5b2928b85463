"""``pf-summarize``: summarize long documents (text files or stdin) with a Poolingformer-BART checkpoint.

    pf-summarize --checkpoint DIR paper1.txt paper2.txt        # one summary line per file
    cat paper.txt | pf-summarize --checkpoint DIR --beam 4 --lenpen 2.0 --max-len-b 256

The model, dictionaries and BPE come through the summarizer hub
(``summarization.hub.from_pretrained``: dictionaries and BPE files beside the checkpoint, in
the order ``inference.files`` documents, or given). Decoding flags are ``fairseq-generate``'s
and default to ``summarization.decoding.DEFAULTS`` (beam 5, length penalty 2, max length
0 * source + 512, min length 56, no repeated trigram), the table the hub and
``recipes/arxiv/generate.sh`` read too, so the same checkpoint gives the same summaries. A document longer than the model's
source positions is truncated, as in training. Writes one summary per document, one line each,
in input order, to stdout or ``--output FILE`` (complete or absent). Bad input (an empty
document, a file that is not UTF-8, a QA checkpoint) is one ``pf-summarize: error:`` line,
exit status 1, nothing written.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from fairseq_poolingformer.inference.device import place
from fairseq_poolingformer.inference.errors import InferenceError
from fairseq_poolingformer.inference.files import CHECKPOINT_NAMES, resolve_checkpoint
from fairseq_poolingformer.inference.lines import progress_bar, write_lines
from fairseq_poolingformer.inference.text import read_text
from fairseq_poolingformer.summarization.decoding import DEFAULTS
from fairseq_poolingformer.summarization.errors import SummarizerError

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pf-summarize", description="Summarize long documents with a "
                                "Poolingformer-BART checkpoint; one summary line per document.")
    p.add_argument("files", nargs="*", metavar="FILE", help="documents (UTF-8 text); none: stdin is one document")
    p.add_argument("--checkpoint", required=True, help="checkpoint file, or a directory holding "
                   f"{' / '.join(CHECKPOINT_NAMES)} with the dictionaries and BPE files beside it")
    p.add_argument("--dict", default=".", help="the binarized data directory (dict.source.txt, dict.target.txt) "
                   "or a joined dict.txt (default: beside the checkpoint)")
    p.add_argument("--bpe", choices=["gpt2", "sentencepiece", "none"], default=None,
                   help="default: found beside the checkpoint (sentencepiece or GPT-2 files)")
    p.add_argument("--sentencepiece-model", help="sentencepiece model")
    p.add_argument("--gpt2-encoder-json", help="GPT-2 BPE encoder.json")
    p.add_argument("--gpt2-vocab-bpe", help="GPT-2 BPE vocab.bpe")
    g = p.add_argument_group("decoding (fairseq-generate's flags; the defaults of the hub and generate.sh)")
    g.add_argument("--beam", type=int, default=DEFAULTS.beam)
    g.add_argument("--lenpen", type=float, default=DEFAULTS.lenpen)
    g.add_argument("--max-len-a", type=float, default=DEFAULTS.max_len_a)
    g.add_argument("--max-len-b", type=int, default=DEFAULTS.max_len_b)
    g.add_argument("--min-len", type=int, default=DEFAULTS.min_len)
    g.add_argument("--no-repeat-ngram-size", type=int, default=DEFAULTS.no_repeat_ngram_size)
    p.add_argument("--batch-size", type=int, default=4, help="documents per batch")
    p.add_argument("--cpu", action="store_true", help="run on CPU even when CUDA is available")
    p.add_argument("--fp16", action="store_true", help="half precision (CUDA only)")
    p.add_argument("--output", help="write here (complete or absent) instead of stdout")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fairseq_poolingformer.summarization.hub import from_pretrained  # (Fairseq: after parsing)

    try:
        checkpoint = resolve_checkpoint(args.checkpoint)
        files = args.files or ["-"]
        documents = []
        for path in files:  # every file read and checked before the model runs
            text = read_text(path)
            if not text.strip():
                raise SummarizerError(f"{'stdin' if path == '-' else path}: empty document")
            documents.append(text)
        summarizer = from_pretrained(
            os.path.dirname(os.path.abspath(checkpoint)), checkpoint_file=os.path.basename(checkpoint),
            data_name_or_path=args.dict, bpe=args.bpe, gpt2_encoder_json=args.gpt2_encoder_json,
            gpt2_vocab_bpe=args.gpt2_vocab_bpe, sentencepiece_model=args.sentencepiece_model,
            batch_size=args.batch_size)
        summarizer, _ = place(summarizer, args.cpu, args.fp16)
        summaries = []
        with progress_bar(len(documents), "pf-summarize") as bar:
            for start in range(0, len(documents), args.batch_size):
                batch = documents[start:start + args.batch_size]
                summaries.extend(summarizer.sample(
                    batch, beam=args.beam, lenpen=args.lenpen, max_len_a=args.max_len_a, max_len_b=args.max_len_b,
                    min_len=args.min_len, no_repeat_ngram_size=args.no_repeat_ngram_size))
                bar.update(len(batch))
        write_lines([s.replace("\n", " ") for s in summaries], args.output)
    except (InferenceError, OSError) as e:
        print(f"pf-summarize: error: {e}; nothing written", file=sys.stderr)
        return 1
    return 0


def cli_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli_main()
