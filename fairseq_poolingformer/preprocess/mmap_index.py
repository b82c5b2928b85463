"""Read the index of a ``fairseq-preprocess`` binary split without importing Fairseq.

``fairseq-preprocess`` writes ``PREFIX.bin`` (every example's token ids, flat) and
``PREFIX.idx`` (Fairseq's ``MMapIndexedDataset`` index): the magic ``MMIDIDX\\0\\0``, a version
(<Q), the token dtype code (<B), the number of examples (<Q), then one int32 size per example (tokens, ``</s>`` included) and the int64 byte offsets.
It needs only numpy: the recipes' checks read sizes and token ids, nothing more.

``read_index(prefix) -> MMapIndex`` (``dtype``, ``sizes``: (N,) int32 array).
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np

MAGIC = b"MMIDIDX\x00\x00"
HEADER = 26  # magic 9 + version 8 + dtype 1 + count 8
DTYPES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64, 7: np.double,
          8: np.uint16, 9: np.uint32, 10: np.uint64}


@dataclass
class MMapIndex:
    path: str
    dtype: type
    sizes: np.ndarray  # (N,) tokens per example, </s> included


def read_index(prefix: str | os.PathLike) -> MMapIndex:
    """Parse ``PREFIX.idx``; ``ValueError`` naming the file when it is not such an index."""
    path = os.fspath(prefix) + ".idx"
    with open(path, "rb") as f:
        head = f.read(HEADER)
        if len(head) < HEADER or head[:9] != MAGIC or head[17] not in DTYPES:
            raise ValueError(f"{path}: not a fairseq-preprocess mmap index")
        count = struct.unpack("<Q", head[18:26])[0]
        sizes = np.frombuffer(f.read(4 * count), dtype=np.int32)
    if len(sizes) != count:
        raise ValueError(f"{path}: truncated index ({len(sizes)} of {count} sizes)")
    return MMapIndex(path, DTYPES[head[17]], sizes)
