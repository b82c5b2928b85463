"""How many tokens of a binarized split became ``<unk>``, and a check that fails above a rate.

A dictionary that does not belong to the BPE (e.g. GPT-2 ids binarized against another
model's ``dict.txt``) makes ``fairseq-preprocess`` succeed while almost every token becomes
``<unk>``: a model trained on that learns nothing. Correct data has no ``<unk>`` at all
(GPT-2 BPE covers every byte; sentencepiece with byte fallback too), so the default limit
(1%) never fires on real text.

Usage (``recipes/arxiv/binarize.sh`` runs it on its temporary ``bin/`` before moving it)::

    python -m fairseq_poolingformer.preprocess.unk_rate DATA_BIN --splits train valid test \\
        [--max-unk-rate 0.01] [--dict D --bpe-files "..."]   # named in the error message

Exit status 1, with one ``error:`` line per split side above the limit, naming the dictionary
and the BPE files.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fairseq_poolingformer.preprocess.common import MAX_UNK_RATE
from fairseq_poolingformer.preprocess.mmap_index import read_index

SIDES = ("source", "target")
CHUNK = 1 << 24  # tokens read at a time
UNK = 3  # fairseq.data.Dictionary puts <s>, <pad>, </s>, <unk> first, whatever the dict.txt holds


@dataclass
class UnkCount:
    split: str
    side: str
    unk: int
    tokens: int  # tokens without the </s> that ends each example

    @property
    def rate(self) -> float:
        return self.unk / self.tokens if self.tokens else 0.0


def count_unk(data_bin: str, split: str, side: str) -> UnkCount:
    """Count ``<unk>`` among the tokens of ``DATA_BIN/{split}.source-target.{side}.{bin,idx}``."""
    prefix = os.path.join(data_bin, f"{split}.source-target.{side}")
    index = read_index(prefix)
    n_tokens = int(index.sizes.sum())
    unk = 0
    if n_tokens:
        tokens = np.memmap(prefix + ".bin", dtype=index.dtype, mode="r", shape=(n_tokens,))  # all examples, flat
        unk = sum(int(np.count_nonzero(tokens[i:i + CHUNK] == UNK)) for i in range(0, n_tokens, CHUNK))
    return UnkCount(split, side, unk, n_tokens - len(index.sizes))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fairseq_poolingformer.preprocess.unk_rate",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("data_bin", help="fairseq-preprocess output directory")
    p.add_argument("--splits", nargs="+", required=True)
    p.add_argument("--max-unk-rate", type=float, default=MAX_UNK_RATE,
                   help="largest fraction of <unk> tokens allowed per split side (default %(default)s)")
    p.add_argument("--dict", default=None, help="the dictionary used (named in the error)")
    p.add_argument("--bpe-files", default=None, help="the BPE files used (named in the error)")
    args = p.parse_args(argv)
    if not 0 <= args.max_unk_rate <= 1:
        p.error(f"--max-unk-rate must be between 0 and 1, got {args.max_unk_rate}")
    try:
        counts = [count_unk(args.data_bin, split, side) for split in args.splits for side in SIDES]
    except (FileNotFoundError, ValueError) as e:
        p.exit(1, f"error: {e} (the fairseq-preprocess output of {' '.join(args.splits)} in {args.data_bin})\n")
    print("<unk> rate: " + ", ".join(f"{c.split}.{c.side} {100 * c.rate:.2f}%" for c in counts), file=sys.stderr)
    bad = [c for c in counts if c.rate > args.max_unk_rate]
    for c in bad:
        print(f"error: {100 * c.rate:.1f}% of the {c.tokens} tokens of {c.split}.{c.side} became <unk> "
              f"(limit {100 * args.max_unk_rate:g}%, --max-unk-rate): the dictionary {args.dict or '(given)'} "
              f"does not belong to the BPE ({args.bpe_files or 'as given'})", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
