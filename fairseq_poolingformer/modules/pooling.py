"""Pooling of keys/values into overlapping segments (level 2's compressed memory).

Segment s covers positions [s*stride, s*stride + kernel) clipped to the sequence; there are
ceil(T / stride) segments. Padding never enters a pooled value; a segment without any real
position is invalid (its pooled value is 0 and level 2 masks it). Pooling of the real
positions v_1..v_m of a segment:
    mean         (1/m) sum_j v_j
    max          element-wise max_j v_j
    ldconv       sum_j softmax(W_p v_c)_j v_j     v_c: the centre, offset (kernel-1)//2, or the
                                                  segment's last real position if it is short
    mean_ldconv  sum_j softmax(W_p mean(v))_j v_j
W_p has shape (kernel, H*D): the weights come from the full model-dimension vector and are
shared by all heads.
"""

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F


def num_segments(length: int, stride: int) -> int:
    return math.ceil(length / stride)


def pool_segments(
    x: torch.Tensor,
    lengths: torch.Tensor,
    kernel: int,
    stride: int,
    pooling: str,
    weight: Optional[torch.Tensor] = None,
    valid: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """x: (B, T, H, D) aligned (real tokens first); lengths: (B,) real tokens per sequence;
    valid: (B, T) bool or None (= no padding); weight: (kernel, H*D) for ldconv/mean_ldconv.

    Returns pooled (B, S, H, D) and segment validity (B, S) bool, S = ceil(T / stride).
    """
    batch, length, heads, dim = x.shape
    segments = num_segments(length, stride)
    padded = (segments - 1) * stride + kernel
    x_pad = F.pad(x, (0, 0, 0, 0, 0, padded - length))
    if valid is None:
        valid = torch.ones(batch, length, dtype=torch.bool, device=x.device)
    valid_pad = F.pad(valid, (0, padded - length), value=False)
    # the kernel offsets of every segment: views, no copy.  taps[j]: (B, S, H, D), tap_valid[j]: (B, S)
    taps = [x_pad[:, j : j + (segments - 1) * stride + 1 : stride] for j in range(kernel)]
    tap_valid = torch.stack(
        [valid_pad[:, j : j + (segments - 1) * stride + 1 : stride] for j in range(kernel)], dim=-1
    )  # (B, S, kernel)
    seg_valid = tap_valid.any(dim=-1)  # (B, S)

    if pooling == "max":
        pooled = _masked_max(taps, tap_valid)
    else:
        if pooling == "mean":
            weights = _mean_weights(tap_valid)
        else:
            if pooling == "ldconv":
                source = _centres(x, lengths, segments, kernel, stride)  # (B, S, H, D)
            else:  # mean_ldconv
                source = _weighted_sum(taps, _mean_weights(tap_valid))
            weights = _dynamic_weights(source, weight, tap_valid)
        pooled = _weighted_sum(taps, weights)
    return pooled, seg_valid


def _mean_weights(tap_valid: torch.Tensor) -> torch.Tensor:
    """tap_valid: (B, S, kernel) -> (B, S, kernel) float: 1/m on real taps, 0 elsewhere."""
    w = tap_valid.float()
    return w / w.sum(dim=-1, keepdim=True).clamp(min=1.0)


def _weighted_sum(taps: List[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """taps: kernel x (B, S, H, D); weights: (B, S, kernel). Returns (B, S, H, D).

    Accumulates in float32 for half inputs: the gradient of the weights sums over all H*D
    features and overflows in fp16."""
    dtype = taps[0].dtype
    acc = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    weights = weights.to(acc)
    out = taps[0].to(acc) * weights[:, :, 0, None, None]
    for j in range(1, len(taps)):
        out = out + taps[j].to(acc) * weights[:, :, j, None, None]
    return out.to(dtype)


def _masked_max(taps: List[torch.Tensor], tap_valid: torch.Tensor) -> torch.Tensor:
    """Element-wise max over the real taps; 0 for segments without any. Returns (B, S, H, D)."""
    lowest = torch.finfo(taps[0].dtype).min
    out = None
    for j, tap in enumerate(taps):
        tap = tap.masked_fill(~tap_valid[:, :, j, None, None], lowest)
        out = tap if out is None else torch.maximum(out, tap)
    return out.masked_fill(~tap_valid.any(dim=-1)[:, :, None, None], 0.0)


def _centres(x: torch.Tensor, lengths: torch.Tensor, segments: int, kernel: int, stride: int) -> torch.Tensor:
    """v_c of every segment: offset (kernel-1)//2, clipped to the last real position. Returns (B, S, H, D)."""
    starts = torch.arange(segments, device=x.device) * stride
    centre = (starts[None, :] + (kernel - 1) // 2).clamp(max=(lengths[:, None] - 1).clamp(min=0))  # (B, S)
    return x[torch.arange(x.shape[0], device=x.device)[:, None], centre]


def _dynamic_weights(source: torch.Tensor, weight: torch.Tensor, tap_valid: torch.Tensor) -> torch.Tensor:
    """softmax(W_p source) over the real taps. source: (B, S, H, D); weight: (kernel, H*D).

    Returns (B, S, kernel) float32 (zeros for segments without a real tap)."""
    batch, segments = source.shape[:2]
    logits = F.linear(source.reshape(batch, segments, -1).float(), weight.float())  # (B, S, kernel)
    logits = logits.masked_fill(~tap_valid, float("-inf"))
    # a segment with no real tap would give softmax(-inf...) = NaN (and NaN gradients): use 0 logits
    logits = logits.masked_fill(~tap_valid.any(dim=-1, keepdim=True), 0.0)
    probs = torch.softmax(logits, dim=-1)
    return probs.masked_fill(~tap_valid, 0.0)
