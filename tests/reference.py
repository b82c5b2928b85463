"""Independent dense reference of Poolingformer attention, written from ../shared/POOLINGFORMER.md.

Deliberately naive: one sequence at a time, its real tokens cut out (so positions count from
its first real token by construction), explicit (T x T) and (T x S) masks, per-segment Python
loops for pooling. Slow, but easy to check against the definitions by reading.
"""

import math
from typing import Optional

import torch


def _real_positions(key_padding_mask: Optional[torch.Tensor], b: int, length: int) -> torch.Tensor:
    if key_padding_mask is None:
        return torch.arange(length)
    return (~key_padding_mask[b]).nonzero().flatten()


def _masked_softmax_attention(q, k, v, allowed):
    """q: (H, Tq, D); k, v: (H, Tk, D); allowed: (Tq, Tk) bool. Rows with nothing allowed -> 0."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    probs = torch.where(allowed.any(-1, keepdim=True), probs, torch.zeros_like(probs))
    return probs @ v


def ref_sliding_window(q, k, v, w1, key_padding_mask=None, global_mask=None):
    """q, k, v: (B, H, T, D). Returns (B, H, T, D)."""
    batch, _, length, _ = q.shape
    out = torch.zeros_like(q)
    for b in range(batch):
        real = _real_positions(key_padding_mask, b, length)
        n = len(real)
        if n == 0:
            continue
        pos = torch.arange(n)
        glob = global_mask[b, real] if global_mask is not None else torch.zeros(n, dtype=torch.bool)
        allowed = (pos[:, None] - pos[None, :]).abs() <= w1  # (n, n)
        allowed = allowed | glob[None, :] | glob[:, None]
        out[b][:, real] = _masked_softmax_attention(q[b][:, real], k[b][:, real], v[b][:, real], allowed)
    return out


def ref_pool(x, kernel, stride, pooling, weight=None):
    """x: (H, n, D), one sequence's real tokens. Returns (H, S, D), S = ceil(n / stride)."""
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


def ref_pooling_attention(q, k, v, w2, kernel, stride, pooling="mean", key_padding_mask=None,
                          k_pool_weight=None, v_pool_weight=None):
    """q, k, v: (B, H, T, D). Returns (B, H, T, D)."""
    batch, _, length, _ = q.shape
    out = torch.zeros_like(q)
    for b in range(batch):
        real = _real_positions(key_padding_mask, b, length)
        n = len(real)
        if n == 0:
            continue
        kp = ref_pool(k[b][:, real], kernel, stride, pooling, k_pool_weight)
        vp = ref_pool(v[b][:, real], kernel, stride, pooling, v_pool_weight)
        centres = torch.arange(kp.shape[1], dtype=torch.float64) * stride + (kernel - 1) / 2
        pos = torch.arange(n, dtype=torch.float64)
        if w2 >= n:
            allowed = torch.ones(n, kp.shape[1], dtype=torch.bool)
        else:
            allowed = (centres[None, :] - pos[:, None]).abs() <= w2
        out[b][:, real] = _masked_softmax_attention(q[b][:, real], kp, vp, allowed)
    return out


def ref_self_attention(module, x, key_padding_mask=None, global_mask=None):
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
