"""The specification of Poolingformer attention: a dense, straight-line definition of both levels.

The fast kernels (``sliding_window``, ``pooling``, ``pooling_attention``, ``self_attention``)
must compute what these functions compute; the tests compare them on every corner case.
Deliberately naive: one sequence at a time, its real tokens cut out (so positions count from
its first real token by construction), explicit (T x T) and (T x S) masks, per-segment Python
loops for pooling. Slow and quadratic in T, but readable against the rules of
docs/attention.md in one sitting:

- level 1: token i attends to real tokens j with |i - j| <= w1 and to every global token; a
  global token attends to every real token;
- level 2: keys and values pooled into segments [s*stride, s*stride + kernel) of the real
  tokens; token i attends to segment s iff |s*stride + (kernel-1)/2 - i| <= w2, or to every
  segment when the sequence is no longer than w2;
- the two-level layer returns Y + Z (Y = level 1 projected, Z = level 2 on Y, or on X for Mix).
"""

import math
from typing import Callable, Optional

import torch
from torch import Tensor, nn


def _real_positions(key_padding_mask: Optional[Tensor], b: int, length: int) -> Tensor:
    """(n,) positions of sequence b's real tokens."""
    if key_padding_mask is None:
        return torch.arange(length)
    return (~key_padding_mask[b]).nonzero().flatten()


def _each_sequence(q: Tensor, key_padding_mask: Optional[Tensor], attend: Callable[[int, Tensor], Tensor]) -> Tensor:
    """q: (B, H, T, D). out[b][:, real] = attend(b, real) for each sequence b and its real
    positions real: (n,), n >= 1. Returns (B, H, T, D), padded rows 0."""
    batch, _, length, _ = q.shape
    out = torch.zeros_like(q)
    for b in range(batch):
        real = _real_positions(key_padding_mask, b, length)
        if len(real):
            out[b][:, real] = attend(b, real)
    return out


def _masked_softmax_attention(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor) -> Tensor:
    """q: (H, Tq, D); k, v: (H, Tk, D); allowed: (Tq, Tk) bool. Rows with nothing allowed -> 0."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    probs = torch.where(allowed.any(-1, keepdim=True), probs, torch.zeros_like(probs))
    return probs @ v


def ref_sliding_window(q: Tensor, k: Tensor, v: Tensor, w1: int, key_padding_mask: Optional[Tensor] = None,
                       global_mask: Optional[Tensor] = None) -> Tensor:
    """Level 1. q, k, v: (B, H, T, D); masks: (B, T) bool. Returns (B, H, T, D), padded rows 0."""

    def attend(b: int, real: Tensor) -> Tensor:
        n = len(real)
        pos = torch.arange(n)
        glob = global_mask[b, real] if global_mask is not None else torch.zeros(n, dtype=torch.bool)
        allowed = (pos[:, None] - pos[None, :]).abs() <= w1  # (n, n)
        allowed = allowed | glob[None, :] | glob[:, None]
        return _masked_softmax_attention(q[b][:, real], k[b][:, real], v[b][:, real], allowed)

    return _each_sequence(q, key_padding_mask, attend)


def ref_pool(x: Tensor, kernel: int, stride: int, pooling: str, weight: Optional[Tensor] = None) -> Tensor:
    """Pooling of one sequence. x: (H, n, D), its real tokens; weight: W_p (kernel, H*D) for
    ldconv / mean_ldconv. Returns (H, S, D), S = ceil(n / stride)."""
    heads, n, dim = x.shape
    full = x.transpose(0, 1).reshape(n, heads * dim)  # (n, C)
    pooled = []
    for s in range(math.ceil(n / stride)):
        idx = list(range(s * stride, min(s * stride + kernel, n)))
        seg = full[idx]  # (m, C)
        if pooling == "mean":
            value = seg.mean(0)
        elif pooling == "max":
            value = seg.max(0).values
        else:
            if pooling == "ldconv":
                centre = min(s * stride + (kernel - 1) // 2, n - 1)
                src = full[centre]
            else:
                src = seg.mean(0)
            logits = weight @ src  # (kernel,)
            delta = torch.softmax(logits[: len(idx)], dim=0)  # absent taps: -inf logits
            value = (delta[:, None] * seg).sum(0)
        pooled.append(value)
    return torch.stack(pooled).view(-1, heads, dim).transpose(0, 1)


def ref_pooling_attention(q: Tensor, k: Tensor, v: Tensor, w2: int, kernel: int, stride: int, pooling: str = "mean",
                          key_padding_mask: Optional[Tensor] = None, k_pool_weight: Optional[Tensor] = None,
                          v_pool_weight: Optional[Tensor] = None) -> Tensor:
    """Level 2. q, k, v: (B, H, T, D); key_padding_mask: (B, T) bool; W_p: (kernel, H*D) for
    ldconv / mean_ldconv. Returns (B, H, T, D), padded rows 0."""

    def attend(b: int, real: Tensor) -> Tensor:
        n = len(real)
        kp = ref_pool(k[b][:, real], kernel, stride, pooling, k_pool_weight)
        vp = ref_pool(v[b][:, real], kernel, stride, pooling, v_pool_weight)
        centres = torch.arange(kp.shape[1], dtype=torch.float64) * stride + (kernel - 1) / 2
        pos = torch.arange(n, dtype=torch.float64)
        if w2 >= n:
            allowed = torch.ones(n, kp.shape[1], dtype=torch.bool)
        else:
            allowed = (centres[None, :] - pos[:, None]).abs() <= w2
        return _masked_softmax_attention(q[b][:, real], kp, vp, allowed)

    return _each_sequence(q, key_padding_mask, attend)


def ref_self_attention(
    module: nn.Module,
    x: Tensor,
    key_padding_mask: Optional[Tensor] = None,
    global_mask: Optional[Tensor] = None,
) -> Tensor:
    """Reference forward of SlidingWindowSelfAttention / PoolingformerSelfAttention.
    x: (T, B, C). Returns (T, B, C)."""
    length, batch, dim = x.shape
    heads = module.num_heads

    def split(t):  # (T, B, C) -> (B, H, T, D)
        return t.view(length, batch, heads, dim // heads).permute(1, 2, 0, 3)

    def merge(t):  # (B, H, T, D) -> (T, B, C)
        return t.permute(2, 0, 1, 3).reshape(length, batch, dim)

    if global_mask is None and module.global_first_token:
        global_mask = torch.zeros(batch, length, dtype=torch.bool)
        for b in range(batch):
            real = _real_positions(key_padding_mask, b, length)
            if len(real):
                global_mask[b, real[0]] = True
    q, k, v = (split(p(x)) for p in (module.q_proj, module.k_proj, module.v_proj))
    y = module.out_proj(merge(ref_sliding_window(q, k, v, module.w1, key_padding_mask, global_mask)))
    out = y
    if hasattr(module, "w2"):
        source = x if module.mix else y
        projs = (module.q_proj, module.k_proj, module.v_proj) if module.share_weights else (
            module.q2_proj, module.k2_proj, module.v2_proj)
        q2, k2, v2 = (split(p(source)) for p in projs)
        z = ref_pooling_attention(q2, k2, v2, module.w2, module.kernel, module.stride, module.pooling,
                                  key_padding_mask, module.k_pool_weight, module.v_pool_weight)
        out = y + module.out2_proj(merge(z))
    if key_padding_mask is not None:
        out = out.masked_fill(key_padding_mask.t().unsqueeze(-1), 0.0)
    return out
