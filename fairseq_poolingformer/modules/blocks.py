"""Blocked local attention: the one kernel both Poolingformer levels run on.

Queries are cut into blocks of ``block`` consecutive positions. Block j attends to a fixed-size
list of key rows ``key_index[j]`` (a band of tokens for level 1, a band of pooled segments for
level 2, plus appended global keys), under a boolean mask that encodes the exact rule. The
(block x keys) problems are batched and handed to ``scaled_dot_product_attention``, so the work
runs in fused kernels and memory stays linear in T: nothing of size T x T is ever built.
"""

import math

import torch
import torch.nn.functional as F


def num_blocks(length: int, block: int) -> int:
    return math.ceil(length / block)


def block_positions(length: int, block: int, device: torch.device) -> torch.Tensor:
    """Query positions of each block: (nb, block); positions >= length are padding."""
    nb = num_blocks(length, block)
    return torch.arange(nb * block, device=device).view(nb, block)


def blocked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_index: torch.Tensor,
    mask: torch.Tensor,
    block: int,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Attention of each query block over its own gathered keys.

    q: (B, T, H, D); k, v: (B, S, H, D); key_index: (nb, L) long, rows of k/v each block sees
    (entries outside [0, S) are allowed and must be masked); mask: (B, nb, block, L) bool,
    True = attend. Query rows with no allowed key return zeros.
    Returns (B, T, H, D).
    """
    batch, length, heads, dim = q.shape
    nb, keys = key_index.shape
    padded = nb * block
    if padded != length:
        q = F.pad(q, (0, 0, 0, 0, 0, padded - length))
    # (B, nb*block, H, D) -> (B*nb, H, block, D)
    qb = q.reshape(batch, nb, block, heads, dim).transpose(2, 3).reshape(batch * nb, heads, block, dim)
    index = key_index.clamp(0, k.shape[1] - 1)
    # gather: (B, nb, L, H, D) -> (B*nb, H, L, D)
    kb = k[:, index].transpose(2, 3).reshape(batch * nb, heads, keys, dim)
    vb = v[:, index].transpose(2, 3).reshape(batch * nb, heads, keys, dim)

    has_key = mask.any(dim=-1, keepdim=True)  # (B, nb, block, 1)
    all_rows_ok = bool(has_key.all())
    if not all_rows_ok:
        # rows with nothing to attend: let them see everything (finite), then zero them
        mask = mask | ~has_key
    attn_mask = mask.reshape(batch * nb, 1, block, keys)
    out = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=attn_mask, dropout_p=dropout_p)
    out = out.reshape(batch, nb, heads, block, dim).transpose(2, 3).reshape(batch, padded, heads, dim)
    if not all_rows_ok:
        out = out * has_key.reshape(batch, padded, 1, 1).to(out.dtype)
    return out[:, :length]
