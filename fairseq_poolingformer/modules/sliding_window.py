"""Level 1: sliding-window attention with global tokens.

Token i attends to every real token j with |i - j| <= w1 and to every global token; a global
token attends to every real token. Positions count from each sequence's first real token.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .blocks import Band, blocked_attention
from .checks import check_mask, check_positive_int, check_qkv
from .layout import Layout, from_aligned, make_layout, query_valid, to_aligned, zero_padding_rows


def default_block(w1: int) -> int:
    """Query block size for level 1: about w1 (each block then sees about 3 blocks of keys)."""
    return max(32, min(w1, 256))


def sliding_window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    w1: int,
    key_padding_mask: Optional[torch.Tensor] = None,
    global_mask: Optional[torch.Tensor] = None,
    dropout_p: float = 0.0,
    block: Optional[int] = None,
) -> torch.Tensor:
    """q, k, v: (B, H, T, D); key_padding_mask, global_mask: (B, T) bool (True = padding / global).

    Returns (B, H, T, D); padded query rows are zeros. Softmax scale 1/sqrt(D).
    """
    check_qkv(q, k, v)
    check_positive_int("w1", w1)
    batch, _, length, _ = q.shape
    check_mask("key_padding_mask", key_padding_mask, batch, length)
    check_mask("global_mask", global_mask, batch, length)
    layout = make_layout(key_padding_mask, batch, length, q.device)
    # (B, H, T, D) -> (B, T, H, D), real tokens first
    qt, kt, vt = (to_aligned(x.transpose(1, 2), layout) for x in (q, k, v))
    globals_ = to_aligned(global_mask, layout) if global_mask is not None else None
    out = sliding_window_aligned(qt, kt, vt, w1, layout, globals_, dropout_p, block or default_block(w1))
    return from_aligned(zero_padding_rows(out, layout), layout).transpose(1, 2)


def sliding_window_aligned(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    w1: int,
    layout: Layout,
    global_mask: Optional[torch.Tensor],
    dropout_p: float,
    block: int,
) -> torch.Tensor:
    """Level 1 on aligned inputs. q, k, v: (B, T, H, D); global_mask: (B, T) or None.

    Returns (B, T, H, D); rows of padding hold finite garbage (callers zero them)."""
    batch, length = q.shape[:2]
    device = q.device
    w1 = min(w1, length - 1)  # a wider window sees nothing more
    if block + 2 * w1 >= length:  # one block holding every query and every key
        band = Band(block=length, first=0, step=1, keys=length)
    else:
        band = Band(block=block, first=-w1, step=block, keys=block + 2 * w1)
    qpos = band.query_positions(length, device)  # (nb, block)
    kpos = band.key_positions(length, device)  # (nb, L)
    inside = (kpos >= 0) & (kpos < length)
    mask = ((kpos[:, None, :] - qpos[:, :, None]).abs() <= w1) & inside[:, None, :]  # (nb, block, L)
    mask = mask.unsqueeze(0)  # (1, nb, block, L)
    q_valid = query_valid(layout, qpos, length)  # (B, nb, block)
    if layout.valid is not None:
        mask = mask & layout.valid[:, kpos.clamp(0, length - 1)].unsqueeze(2)
    # every real query sees itself; padding rows see their whole band (finite) and are zeroed later
    mask = mask | ~q_valid.unsqueeze(-1)

    if global_mask is not None and layout.valid is not None:
        global_mask = global_mask & layout.valid
    if global_mask is None or not bool(global_mask.any()):
        return blocked_attention(q, k, v, band, mask, dropout_p, rows_may_be_empty=False)

    gpos, gvalid = _global_positions(global_mask)  # (B, G), (B, G)
    bidx = torch.arange(batch, device=device)[:, None]
    # every block also sees the global keys, unless they are already in its window
    far = (qpos[None, :, :, None] - gpos[:, None, None, :]).abs() > w1  # (B, nb, block, G)
    g_mask = far & gvalid[:, None, None, :] & q_valid.unsqueeze(-1)
    mask = torch.cat([mask.expand(batch, -1, -1, -1), g_mask], dim=-1)
    out = blocked_attention(q, k, v, band, mask, dropout_p, k[bidx, gpos], v[bidx, gpos], rows_may_be_empty=False)
    # global rows: attend to every real token
    g_out = _full_attention(q[bidx, gpos], k, v, layout.valid, dropout_p)  # (B, G, H, D)
    return out.index_put((bidx.expand_as(gpos)[gvalid], gpos[gvalid]), g_out[gvalid])


def _global_positions(global_mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """global_mask: (B, T) -> positions (B, G) in increasing order and validity (B, G), G = max count."""
    n_global = int(global_mask.sum(dim=1).max())
    flags, order = torch.sort(global_mask.to(torch.uint8), dim=1, descending=True, stable=True)
    return order[:, :n_global], flags[:, :n_global].bool()


def _full_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_valid: Optional[torch.Tensor], dropout_p: float
) -> torch.Tensor:
    """q: (B, G, H, D) attends to all keys k, v: (B, T, H, D); key_valid: (B, T) or None. Returns (B, G, H, D)."""
    mask = None if key_valid is None else key_valid[:, None, None, :]
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, dropout_p=dropout_p
    )
    return out.transpose(1, 2)
