"""Level 2: pooling attention.

Keys and values of the whole sequence are pooled once into segments (see ``pooling``). Token i
attends to segment s iff the segment holds a real position and its centre
c_s = s*stride + (kernel-1)/2 satisfies |c_s - i| <= w2; a sequence with w2 >= its length sees
every segment. Positions count from each sequence's first real token.
"""

import math
from typing import Optional

import torch

from .blocks import block_positions, blocked_attention
from .checks import check_mask, check_pool_weight, check_pooling, check_positive_int, check_qkv
from .layout import Layout, from_aligned, make_layout, to_aligned
from .pooling import pool_segments
from .sliding_window import _query_valid

DEFAULT_BLOCK = 128


def pooling_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    w2: int,
    kernel: int,
    stride: int,
    pooling: str = "mean",
    key_padding_mask: Optional[torch.Tensor] = None,
    k_pool_weight: Optional[torch.Tensor] = None,
    v_pool_weight: Optional[torch.Tensor] = None,
    dropout_p: float = 0.0,
    block: int = DEFAULT_BLOCK,
) -> torch.Tensor:
    """q, k, v: (B, H, T, D); key_padding_mask: (B, T) bool, True = padding;
    k_pool_weight, v_pool_weight: W_p of shape (kernel, H*D) for ldconv / mean_ldconv.

    Returns (B, H, T, D); padded query rows (and rows that see no segment) are zeros.
    """
    check_qkv(q, k, v)
    check_positive_int("w2", w2)
    check_pooling(pooling, kernel, stride)
    check_positive_int("block", block)
    batch, heads, length, dim = q.shape
    check_mask("key_padding_mask", key_padding_mask, batch, length)
    check_pool_weight("k_pool_weight", k_pool_weight, pooling, kernel, heads * dim)
    check_pool_weight("v_pool_weight", v_pool_weight, pooling, kernel, heads * dim)
    layout = make_layout(key_padding_mask, batch, length, q.device)
    qt, kt, vt = (to_aligned(x.transpose(1, 2), layout) for x in (q, k, v))  # (B, T, H, D)
    out = pooling_aligned(qt, kt, vt, w2, kernel, stride, pooling, layout, k_pool_weight, v_pool_weight, dropout_p, block)
    return from_aligned(out, layout).transpose(1, 2)


def pooling_aligned(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    w2: int,
    kernel: int,
    stride: int,
    pooling: str,
    layout: Layout,
    k_pool_weight: Optional[torch.Tensor],
    v_pool_weight: Optional[torch.Tensor],
    dropout_p: float,
    block: int = DEFAULT_BLOCK,
) -> torch.Tensor:
    """Level 2 on aligned inputs. q, k, v: (B, T, H, D). Returns (B, T, H, D)."""
    batch, length = q.shape[:2]
    device = q.device
    k_pooled, seg_valid = pool_segments(k, layout.lengths, kernel, stride, pooling, k_pool_weight, layout.valid)
    v_pooled, _ = pool_segments(v, layout.lengths, kernel, stride, pooling, v_pool_weight, layout.valid)
    segments = k_pooled.shape[1]

    block = min(block, length)
    qpos = block_positions(length, block, device)  # (nb, block)
    key_index = _segment_band(qpos[:, 0], block, segments, w2, kernel, stride)  # (nb, L)
    # |c_s - i| <= w2 with c_s = s*stride + (kernel-1)/2, in integers (times 2)
    centre2 = 2 * stride * key_index + (kernel - 1)  # (nb, L)
    near = (centre2[:, None, :] - 2 * qpos[:, :, None]).abs() <= 2 * w2  # (nb, block, L)
    whole = (layout.lengths <= w2)[:, None, None, None]  # (B, 1, 1, 1): w2 covers the sequence
    mask = (near.unsqueeze(0) | whole) & seg_valid[:, key_index].unsqueeze(2)
    mask = mask & _query_valid(layout, qpos, length).unsqueeze(-1)  # (B, nb, block, L)
    return blocked_attention(q, k_pooled, v_pooled, key_index, mask, block, dropout_p)


def _segment_band(starts: torch.Tensor, block: int, segments: int, w2: int, kernel: int, stride: int) -> torch.Tensor:
    """Segment indices each query block may need: (nb, L), all inside [0, S).

    Block [a, a+block) needs centres in [a - w2, a + block - 1 + w2]; we add a margin of
    ceil(kernel / stride) + 1 segments on each side, which also covers sequences shorter than w2
    (they see every segment, whose centres reach (kernel-1)/2 past their last token)."""
    margin = math.ceil(kernel / stride) + 1
    half = (kernel - 1) / 2
    lo = math.floor((-w2 - half) / stride) - margin  # relative to a / stride
    hi = math.ceil((block - 1 + w2 - half) / stride) + margin
    keys = min(hi - lo + 1 + 1, segments)  # +1: a / stride rounds differently per block
    first = torch.div(starts, stride, rounding_mode="floor") + lo
    first = first.clamp(0, segments - keys)
    return first[:, None] + torch.arange(keys, device=starts.device)
