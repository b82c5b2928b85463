"""Blocked local attention: the one kernel both Poolingformer levels run on.

Queries are cut into blocks of ``block`` consecutive positions. Block j attends to the ``keys``
consecutive key rows starting at ``first + j * step`` (for level 1 a band of tokens plus the
global tokens, for level 2 a band of pooled segments), under a mask that encodes the exact
rule. The key bands are ``unfold`` views of the (padded) keys, not copies, and the
(block x keys) problems are batched into ``scaled_dot_product_attention``: the work runs in
fused kernels and memory stays linear in T. Nothing of size T x T is ever built.

The mask depends only on T, the padding and the global tokens, never on the layer: it is
turned into SDPA's additive form once (``band_mask``) and shared by every layer of a forward
(``ForwardCache``), so the layers also share the one copy that SDPA keeps for backward.
"""

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Band:
    """Block j (queries [j*block, (j+1)*block)) sees key rows first + j*step + [0, keys).

    Positions are int32: mask arithmetic on (T x keys) grids is the hot part of building masks."""

    block: int
    first: int
    step: int
    keys: int

    def num_blocks(self, length: int) -> int:
        return math.ceil(length / self.block)

    def query_positions(self, length: int, device: torch.device) -> torch.Tensor:
        """(nb, block) query positions; positions >= length are padding."""
        nb = self.num_blocks(length)
        return torch.arange(nb * self.block, device=device, dtype=torch.int32).view(nb, self.block)

    def key_positions(self, length: int, device: torch.device) -> torch.Tensor:
        """(nb, keys) key row of every band slot (may fall outside the key sequence)."""
        nb = self.num_blocks(length)
        starts = self.first + self.step * torch.arange(nb, device=device, dtype=torch.int32)
        return starts[:, None] + torch.arange(self.keys, device=device, dtype=torch.int32)


@dataclass(frozen=True)
class BandMask:
    """A band mask in the form SDPA takes.

    additive: (B*nb, 1, block, keys) float, 0 = attend, -inf = masked;
    row_scale: (B, nb*block, 1, 1) float, 0 for query rows that have no key to attend to (their
    output is zeroed), or None when every row has one."""

    additive: torch.Tensor
    row_scale: Optional[torch.Tensor]


def band_mask(mask: torch.Tensor, batch: int, dtype: torch.dtype, rows_may_be_empty: bool = True) -> BandMask:
    """mask: (B or 1, nb, block, keys) bool, True = attend; band slots outside the keys must be
    masked. With rows_may_be_empty, rows with no allowed key get a zero row_scale (without it
    the caller guarantees every row it keeps has a key)."""
    _, nb, block, keys = mask.shape
    mask = mask.expand(batch, nb, block, keys)
    row_scale = None
    if rows_may_be_empty:
        has_key = mask.any(dim=-1, keepdim=True)  # (B, nb, block, 1)
        if not bool(has_key.all()):  # rows with nothing to attend: let them see everything (finite), then zero them
            mask = mask | ~has_key
            row_scale = has_key.reshape(batch, nb * block, 1, 1).to(dtype)
    return BandMask(additive_mask(mask, dtype).reshape(batch * nb, 1, block, keys), row_scale)


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """bool mask (True = attend) -> the same shape in dtype: 0 where True, -inf where False
    (what SDPA makes of a bool mask at every call)."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))


def _bands(x: torch.Tensor, band: Band, nb: int) -> torch.Tensor:
    """x: (B, S, H, D) -> (B, nb, keys, H, D) view of the key band of every block (zero padded)."""
    length = x.shape[1]
    left = max(0, -band.first)
    right = max(0, band.first + (nb - 1) * band.step + band.keys - length)
    padded = F.pad(x, (0, 0, 0, 0, left, right)) if left or right else x
    windows = padded[:, band.first + left:].unfold(1, band.keys, band.step)[:, :nb]  # (B, nb, H, D, keys)
    return windows.permute(0, 1, 4, 2, 3)


def _batched_bands(x: torch.Tensor, band: Band, nb: int) -> torch.Tensor:
    """Key bands as SDPA input: (B*nb, H, keys, D).

    For B == 1 this is a view of x (overlapping windows, no copy); otherwise one copy of whole
    (H*D) rows, laid out so that the result is again a view."""
    batch, _, heads, dim = x.shape
    bands = _bands(x, band, nb)  # (B, nb, keys, H, D)
    if batch > 1:
        bands = bands.contiguous()
    return bands.transpose(2, 3).reshape(batch * nb, heads, band.keys, dim)


def blocked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    band: Band,
    mask: BandMask,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Attention of each query block over its key band.

    q: (B, T, H, D); k, v: (B, S, H, D); mask: from ``band_mask`` for this band, batch and T.
    Returns (B, T, H, D).
    """
    batch, length, heads, dim = q.shape
    nb = band.num_blocks(length)
    block = band.block
    padded = nb * block
    if padded != length:
        q = F.pad(q, (0, 0, 0, 0, 0, padded - length))
    qb = q.reshape(batch, nb, block, heads, dim).transpose(2, 3).reshape(batch * nb, heads, block, dim)
    kb, vb = _batched_bands(k, band, nb), _batched_bands(v, band, nb)
    out = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask.additive, dropout_p=dropout_p)
    out = out.reshape(batch, nb, heads, block, dim).transpose(2, 3).reshape(batch, padded, heads, dim)
    if mask.row_scale is not None:
        out = out * mask.row_scale
    return out[:, :length]
