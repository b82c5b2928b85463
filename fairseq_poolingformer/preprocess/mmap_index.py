"""The index of a ``fairseq-preprocess`` binary split, for the recipes' checks.

``fairseq-preprocess`` writes ``PREFIX.bin`` (every example's token ids, flat) and ``PREFIX.idx``
(Fairseq's ``MMapIndexedDataset`` index). The index is read here without importing Fairseq
(whose import costs seconds per recipe step): a 9-byte magic ``MMIDIDX\\0\\0``, the version
(little-endian uint64, 1), the token dtype's code (uint8), the number of examples N (uint64),
then N int32 sizes (followed by the N int64 pointers and the document index, unused here).
``tests/test_preprocess_arxiv.py`` checks it against Fairseq's own reader. ``read_index``
returns ``dtype`` (the token dtype) and ``sizes`` ((N,) tokens per example, ``</s>`` included).
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np

MAGIC = b"MMIDIDX\x00\x00"
# Fairseq's dtype codes (fairseq.data.indexed_dataset): 6 and 7 both name float64
DTYPES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64,
          7: np.float64, 8: np.uint16, 9: np.uint32, 10: np.uint64}
_HEADER = struct.Struct("<9sQBQ")  # magic, version, dtype code, N


@dataclass
class SplitIndex:
    dtype: type
    sizes: np.ndarray  # (N,) int32


def read_index(prefix: str | os.PathLike) -> SplitIndex:
    """``PREFIX.idx`` (FileNotFoundError naming it when missing; ValueError naming it when it is
    not a fairseq-preprocess mmap index)."""
    path = os.fspath(prefix) + ".idx"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"not found: {path}")
    with open(path, "rb") as f:
        header = f.read(_HEADER.size)
        if len(header) < _HEADER.size or not header.startswith(MAGIC):
            raise ValueError(f"{path}: not a fairseq-preprocess index (no {MAGIC!r} header; "
                             "binarized with --dataset-impl mmap?)")
        _, version, code, n = _HEADER.unpack(header)
        if version != 1 or code not in DTYPES:
            raise ValueError(f"{path}: unsupported index (version {version}, dtype code {code})")
        sizes = np.fromfile(f, dtype="<i4", count=n)
    if len(sizes) != n:
        raise ValueError(f"{path}: truncated ({len(sizes)} of {n} sizes)")
    return SplitIndex(DTYPES[code], sizes.astype(np.int32))
