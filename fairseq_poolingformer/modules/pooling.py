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

Specification: ``reference.ref_pool``, which every valid segment of ``pool_segments`` must equal.
"""

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .checks import LDCONV_POOLINGS


def num_segments(length: int, stride: int) -> int:
    return math.ceil(length / stride)


def segment_taps(x: torch.Tensor, valid: Optional[torch.Tensor], kernel: int, stride: int) -> Tuple[List[torch.Tensor], torch.Tensor]:
    """The kernel offsets of every segment.

    x: (B, T, ...) aligned; valid: (B, T) bool or None (= no padding).
    Returns taps: kernel strided views of x, taps[j] of shape (B, S_j, ...) holding position
    s*stride + j of segments s < S_j (the later segments have no tap j: it is past T), and
    tap_valid: (B, S, kernel) bool. Views, so pooling keeps no copy of x for backward.
    """
    batch, length = x.shape[:2]
    segments = num_segments(length, stride)
    if valid is None:
        valid = torch.ones(batch, length, dtype=torch.bool, device=x.device)
    padded = (segments - 1) * stride + kernel
    valid_pad = F.pad(valid, (0, padded - length), value=False)
    end = (segments - 1) * stride + 1
    taps = _taps(x, kernel, stride)
    tap_valid = torch.stack([valid_pad[:, j : j + end : stride] for j in range(kernel)], dim=-1)
    return taps, tap_valid


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
    return pool_projected(x, lengths, kernel, stride, pooling, weight, valid, project=None)


def pool_projected(
    x: torch.Tensor,
    lengths: torch.Tensor,
    kernel: int,
    stride: int,
    pooling: str,
    weight: Optional[torch.Tensor],
    valid: Optional[torch.Tensor],
    project: Optional[nn.Linear],
) -> Tuple[torch.Tensor, torch.Tensor]:
    """pool_segments(project(x)), computed cheaply where pooling allows it.

    x: (B, T, ...) aligned. mean, ldconv and mean_ldconv pool with weights that sum to one, so
    for an affine ``project`` pooling then projecting equals projecting then pooling on every
    valid segment: only the S = T/stride pooled vectors (and the centres or means that the
    weights come from) are projected. max does not commute and projects every position.
    LDConv's weights softmax(W_p project(v)) come from the unprojected vectors through the
    folded map W_p W (and bias W_p b): a (kernel x C) product instead of projecting them.
    Returns pooled (B, S, ...) and seg_valid (B, S); invalid segments hold no meaningful value.
    """
    apply = project if project is not None else (lambda t: t)
    if pooling == "max":
        taps, tap_valid = segment_taps(apply(x), valid, kernel, stride)
        return _masked_max(taps, tap_valid), tap_valid.any(dim=-1)
    _, tap_valid = segment_taps(x, valid, kernel, stride)
    weights = _mean_weights(tap_valid)
    if pooling in LDCONV_POOLINGS:
        if pooling == "ldconv":
            source = _centres(x, lengths, tap_valid.shape[1], kernel, stride)
        else:
            source = _weighted_sum(x, weights, stride)
        weights = _dynamic_weights(source, *_folded(weight, project), tap_valid)
    return apply(_weighted_sum(x, weights, stride)), tap_valid.any(dim=-1)


def _folded(weight: torch.Tensor, project: Optional[nn.Linear]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """W_p after the projection as one map on its input: W_p (W v + b) = (W_p W) v + W_p b.

    weight: (kernel, C_out) -> ((kernel, C_in), (kernel,) or None), in float32."""
    weight = weight.float()
    if project is None:
        return weight, None
    bias = None if project.bias is None else weight @ project.bias.float()
    return weight @ project.weight.float(), bias


def _mean_weights(tap_valid: torch.Tensor) -> torch.Tensor:
    """tap_valid: (B, S, kernel) -> (B, S, kernel) float: 1/m on real taps, 0 elsewhere."""
    w = tap_valid.float()
    return w / w.sum(dim=-1, keepdim=True).clamp(min=1.0)


def _weighted_sum(x: torch.Tensor, weights: torch.Tensor, stride: int) -> torch.Tensor:
    """sum_j weights[:, s, j] * x[:, s*stride + j] over the taps j < kernel that exist.

    x: (B, T, ...) aligned; weights: (B, S, kernel). Returns (B, S, ...). Accumulates in
    float32 for half inputs: the gradient of the weights sums over all features and
    overflows in fp16."""
    return _WeightedSum.apply(x, weights, stride)


def _accumulator(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _taps(x: torch.Tensor, kernel: int, stride: int) -> List[torch.Tensor]:
    """segment_taps' views: taps[j] = x[:, j::stride], (B, S_j, ...)."""
    return [x[:, j::stride] for j in range(min(kernel, x.shape[1]))]


class _WeightedSum(torch.autograd.Function):
    """``_weighted_sum`` with its own backward. Autograd's would give every tap a zero-filled
    gradient of the whole of x and sum them; here the taps j < stride, which cover every
    position of x exactly once (stride <= kernel), write the gradient of x and the later taps
    add into it: one x-sized buffer, no zero-fill."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weights: torch.Tensor, stride: int) -> torch.Tensor:
        acc = _accumulator(x.dtype)
        w = _feature_weights(weights.to(acc), x.dim())  # (B, S, kernel, 1, ...)
        taps = _taps(x, weights.shape[-1], stride)
        out = taps[0].to(acc) * w[:, :, 0]  # tap 0 exists for every segment
        for j in range(1, len(taps)):
            n = taps[j].shape[1]
            out[:, :n] += taps[j].to(acc) * w[:, :n, j]
        ctx.save_for_backward(x, weights)
        ctx.stride = stride
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        # grad: (B, S, ...) -> grads of x: (B, T, ...) and weights: (B, S, kernel)
        x, weights = ctx.saved_tensors
        acc, stride = _accumulator(x.dtype), ctx.stride
        grad = grad.to(acc)
        w = _feature_weights(weights.to(acc), x.dim())
        taps = _taps(x, weights.shape[-1], stride)
        grad_x = grad_weights = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.empty_like(x, memory_format=torch.contiguous_format)
            for j, slots in enumerate(_taps(grad_x, weights.shape[-1], stride)):
                term = grad[:, :slots.shape[1]] * w[:, :slots.shape[1], j]
                if j < stride:
                    slots.copy_(term)
                else:
                    slots += term.to(x.dtype)
        if ctx.needs_input_grad[1]:
            grad_weights = torch.zeros(weights.shape, dtype=acc, device=weights.device)
            for j, tap in enumerate(taps):
                n = tap.shape[1]
                grad_weights[:, :n, j] = (tap.to(acc) * grad[:, :n]).flatten(2).sum(dim=-1)
            grad_weights = grad_weights.to(weights.dtype)
        return grad_x, grad_weights, None


def _feature_weights(weights: torch.Tensor, dims: int) -> torch.Tensor:
    """weights: (B, S, kernel) -> (B, S, kernel, 1, ...) broadcasting over the (dims - 2) feature dims."""
    return weights.reshape(weights.shape + (1,) * (dims - 2))


def _masked_max(taps: List[torch.Tensor], tap_valid: torch.Tensor) -> torch.Tensor:
    """Element-wise max over the real taps; 0 for segments without any. Returns (B, S, ...)."""
    extra = (1,) * (taps[0].dim() - 2)
    lowest = torch.finfo(taps[0].dtype).min
    out = taps[0].masked_fill(~tap_valid[:, :, 0].reshape(tap_valid.shape[:2] + extra), lowest)
    for j in range(1, len(taps)):
        n = taps[j].shape[1]
        tap = taps[j].masked_fill(~tap_valid[:, :n, j].reshape((tap_valid.shape[0], n) + extra), lowest)
        if n < out.shape[1]:
            tap = torch.cat([tap, out[:, n:]], dim=1)
        out = torch.maximum(out, tap)
    return out.masked_fill(~tap_valid.any(dim=-1).reshape(tap_valid.shape[:2] + extra), 0.0)


def _centres(x: torch.Tensor, lengths: torch.Tensor, segments: int, kernel: int, stride: int) -> torch.Tensor:
    """v_c of every segment: offset (kernel-1)//2, clipped to the last real position. x: (B, T, ...) -> (B, S, ...)."""
    starts = torch.arange(segments, device=x.device) * stride
    centre = (starts[None, :] + (kernel - 1) // 2).clamp(max=(lengths[:, None] - 1).clamp(min=0))  # (B, S)
    return x[torch.arange(x.shape[0], device=x.device)[:, None], centre]


def _dynamic_weights(
    source: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], tap_valid: torch.Tensor
) -> torch.Tensor:
    """softmax(weight source + bias) over the real taps. source: (B, S, ...) with C features;
    weight: (kernel, C) float32; bias: (kernel,) or None.

    Returns (B, S, kernel) float32 (zeros for segments without a real tap)."""
    batch, segments = source.shape[:2]
    logits = F.linear(source.reshape(batch, segments, -1).float(), weight, bias)  # (B, S, kernel)
    logits = logits.masked_fill(~tap_valid, float("-inf"))
    # a segment with no real tap would give softmax(-inf...) = NaN (and NaN gradients): use 0 logits
    logits = logits.masked_fill(~tap_valid.any(dim=-1, keepdim=True), 0.0)
    probs = torch.softmax(logits, dim=-1)
    return probs.masked_fill(~tap_valid, 0.0)
