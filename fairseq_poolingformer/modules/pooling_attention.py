"""Level 2: pooling attention.

Keys and values of the whole sequence are pooled once into segments (see ``pooling``). Token i
attends to segment s iff the segment holds a real position and its centre
c_s = s*stride + (kernel-1)/2 satisfies |c_s - i| <= w2; a sequence with w2 >= its length sees
every segment. Positions count from each sequence's first real token.

Specification: ``reference.ref_pooling_attention`` (and ``reference.ref_pool`` for the pooling),
which ``pooling_attention`` must equal. The function and ``PoolingformerSelfAttention`` run the
same code, ``pooling_aligned``; the module only adds the projections.
"""

import math
from typing import Callable, Optional, Tuple

import torch
from torch import nn

from .blocks import Band, BandMask, band_mask, blocked_attention
from .checks import check_mask, check_pool_weight, check_pooling, check_positive_int, check_qkv
from .forward_cache import ForwardCache, cached
from .layout import Layout, from_aligned_zeroed, make_layout, query_valid, to_aligned
from .pooling import pool_projected

DEFAULT_BLOCK = 128  # queries per level-2 block (rounded to a multiple of stride)


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
    Equals ``reference.ref_pooling_attention`` (without dropout).
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
    return from_aligned_zeroed(out, layout).transpose(1, 2)


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
    q_proj: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    k_proj: Optional[nn.Linear] = None,
    v_proj: Optional[nn.Linear] = None,
    cache: Optional[ForwardCache] = None,
    attention: Optional[Callable[..., torch.Tensor]] = None,
) -> torch.Tensor:
    """Level 2 on aligned inputs: keys and values pooled into segments, then attended within w2.

    Without projections q, k, v: (B, T, H, D). The modules pass their level-2 source (B, T, C) as
    q, k and v with its projections: k_proj / v_proj (``nn.Linear``) make the keys / values,
    applied after pooling where the pooling allows it (see ``pool_projected``) and split into
    the heads of the queries q_proj(q): (B, T, H, D), computed after the pooling (the order of
    the ops, and so of the gradients' sums, is then that of the modules before they shared this
    function). cache: shares the band and mask with the other layers of the forward.
    attention: another kernel for the last step, with ``segment_attention``'s arguments but
    ``block`` (``flex.segment_attention_flex``); default ``segment_attention``.
    Returns (B, T, H, D); rows of padding hold finite garbage (callers zero them)."""
    k_pooled, seg_valid = pool_projected(k, layout.lengths, kernel, stride, pooling, k_pool_weight, layout.valid, k_proj)
    v_pooled, _ = pool_projected(v, layout.lengths, kernel, stride, pooling, v_pool_weight, layout.valid, v_proj)
    if q_proj is not None:
        q = q_proj(q)
    heads = q.shape[2:]  # (H, D)
    k_pooled, v_pooled = (x.view(x.shape[:2] + heads) for x in (k_pooled, v_pooled))  # (B, S, H, D)
    if attention is not None:
        return attention(q, k_pooled, v_pooled, seg_valid, w2, kernel, stride, layout, dropout_p, cache=cache)
    return segment_attention(q, k_pooled, v_pooled, seg_valid, w2, kernel, stride, layout, dropout_p, block, cache)


def segment_attention(
    q: torch.Tensor,
    k_pooled: torch.Tensor,
    v_pooled: torch.Tensor,
    seg_valid: torch.Tensor,
    w2: int,
    kernel: int,
    stride: int,
    layout: Layout,
    dropout_p: float,
    block: int = DEFAULT_BLOCK,
    cache: Optional[ForwardCache] = None,
) -> torch.Tensor:
    """Token i attends to valid segments s with |c_s - i| <= w2 (all of them if w2 >= its length).

    q: (B, T, H, D) aligned; k_pooled, v_pooled: (B, S, H, D); seg_valid: (B, S).
    cache: shares the band and mask with the other layers of the forward.
    Returns (B, T, H, D); rows of padding hold finite garbage (callers zero them); real rows
    that see no segment are zero.
    """
    batch, length = q.shape[:2]
    segments = k_pooled.shape[1]
    band, mask = cached(
        cache, ("level2", length, batch, segments, w2, kernel, stride, block, q.dtype, q.device),
        lambda: segment_plan(length, segments, seg_valid, w2, kernel, stride, layout, block, q.dtype, q.device))
    return blocked_attention(q, k_pooled, v_pooled, band, mask, dropout_p)


def segment_plan(
    length: int, segments: int, seg_valid: torch.Tensor, w2: int, kernel: int, stride: int, layout: Layout,
    block: int, dtype: torch.dtype, device: torch.device,
) -> Tuple[Band, BandMask]:
    """The segment band of every query block and its mask; seg_valid: (B, S) bool."""
    batch = seg_valid.shape[0]
    band = _segment_band(length, segments, block, w2, kernel, stride)
    qpos = band.query_positions(length, device)  # (nb, block)
    spos = band.key_positions(length, device)  # (nb, L) segment indices
    inside = (spos >= 0) & (spos < segments)
    # |c_s - i| <= w2 with c_s = s*stride + (kernel-1)/2, in integers (times 2)
    near = (2 * stride * spos[:, None, :] + (kernel - 1) - 2 * qpos[:, :, None]).abs() <= 2 * w2  # (nb, block, L)
    whole = (layout.lengths <= w2)[:, None, None, None]  # (B, 1, 1, 1): w2 covers the sequence
    key_ok = inside.unsqueeze(0) & seg_valid[:, spos.clamp(0, segments - 1)]  # (B, nb, L)
    mask = (near.unsqueeze(0) | whole) & key_ok.unsqueeze(2)  # (B, nb, block, L)
    if layout.valid is not None or band.num_blocks(length) * band.block != length:
        # padding rows see their whole band (finite) and are zeroed by the caller
        mask = mask | ~query_valid(layout, qpos, length).unsqueeze(-1)
    # a real token i lies in segment i // stride, whose centre is within stride + kernel of i
    may_be_empty = w2 < stride + kernel
    return band, band_mask(mask, batch, dtype, rows_may_be_empty=may_be_empty)


def _segment_band(length: int, segments: int, block: int, w2: int, kernel: int, stride: int) -> Band:
    """The segments each query block may need.

    Blocks are a multiple of stride long, so consecutive blocks' bands move by block/stride
    segments. Block [a, a+block) needs centres in [a - w2, a + block - 1 + w2]; a margin of
    ceil(kernel / stride) + 1 segments on each side also covers sequences shorter than w2 (they
    see every segment, whose centres reach (kernel-1)/2 past their last token)."""
    block = stride * max(1, round(block / stride))
    margin = math.ceil(kernel / stride) + 1
    half = (kernel - 1) / 2
    lo = math.floor((-w2 - half) / stride) - margin
    hi = math.ceil((block - 1 + w2 - half) / stride) + margin
    if hi - lo + 1 >= segments or block >= length:  # one block holding every query and every segment
        return Band(block=stride * math.ceil(length / stride), first=0, step=1, keys=segments)
    return Band(block=block, first=lo, step=block // stride, keys=hi - lo + 1)
