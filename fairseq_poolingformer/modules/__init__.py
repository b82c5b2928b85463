"""Poolingformer attention: torch only (no Fairseq import), usable outside Fairseq.

Functional core on (B, H, T, D) tensors and ``nn.Module``s on Fairseq's (T, B, C) layout, both
running the same kernels; ``reference`` is their specification, the two levels written out as
dense, straight-line code.
"""

from .checks import POOLING_TYPES
from .forward_cache import ForwardCache
from .pooling import pool_segments
from .pooling_attention import pooling_attention
from .self_attention import PoolingformerSelfAttention, SlidingWindowSelfAttention
from .sliding_window import sliding_window_attention

__all__ = [
    "ForwardCache",
    "POOLING_TYPES",
    "PoolingformerSelfAttention",
    "SlidingWindowSelfAttention",
    "pool_segments",
    "pooling_attention",
    "sliding_window_attention",
]
