"""The index of a ``fairseq-preprocess`` binary split, for the recipes' checks.

``fairseq-preprocess`` writes ``PREFIX.bin`` (every example's token ids, flat) and ``PREFIX.idx``
(Fairseq's ``MMapIndexedDataset`` index), read here with Fairseq's own reader. Its ``sizes`` is
a view into a memory map that the reader unmaps when it is garbage-collected, so
``read_index`` copies what it returns: ``dtype`` (the token dtype) and ``sizes`` ((N,) tokens per
example, ``</s>`` included).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from fairseq.data.indexed_dataset import MMapIndexedDataset


@dataclass
class SplitIndex:
    dtype: type
    sizes: np.ndarray  # (N,) int32


def read_index(prefix: str | os.PathLike) -> SplitIndex:
    """``PREFIX.idx`` through Fairseq's reader, copied out of its memory map (FileNotFoundError
    naming it when it is missing)."""
    path = os.fspath(prefix) + ".idx"
    if not os.path.isfile(path):  # before Fairseq's reader, whose half-built object then fails in __del__
        raise FileNotFoundError(f"not found: {path}")
    index = MMapIndexedDataset.Index(path)
    return SplitIndex(index.dtype, np.array(index.sizes))
