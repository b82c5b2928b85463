"""Level 1: sliding-window attention with global tokens.

Token i attends to every real token j with |i - j| <= w1 and to every global token; a global
token attends to every real token. Positions count from each sequence's first real token.

Specification: ``reference.ref_sliding_window``, which ``sliding_window_attention`` must equal.
The function and the modules run the same code, ``sliding_window_parts``.
"""

import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F

from .blocks import Band, BandMask, additive_mask, band_mask, blocked_attention
from .checks import check_mask, check_positive_int, check_qkv
from .forward_cache import ForwardCache, cached
from .layout import Layout, from_aligned_zeroed, make_layout, query_valid, to_aligned


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
    Equals ``reference.ref_sliding_window`` (without dropout).
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
    out, global_rows = sliding_window_parts(qt, kt, vt, w1, layout, globals_, dropout_p, block or default_block(w1))
    if global_rows is not None:
        out = global_rows.put_into(out)
    return from_aligned_zeroed(out, layout).transpose(1, 2)


@dataclass
class GlobalRows:
    """The outputs of the global tokens, to be written over the band outputs at their positions.

    batch, position: (N,) long; value: (N, ...)."""

    batch: torch.Tensor
    position: torch.Tensor
    value: torch.Tensor

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "GlobalRows":
        return GlobalRows(self.batch, self.position, fn(self.value))

    def put_into(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, ...) -> a copy of x with the global rows replaced."""
        return x.index_put((self.batch, self.position), self.value)

    def put_into_(self, x: torch.Tensor) -> torch.Tensor:
        """In place (no copy of x): for an x that nothing has saved for backward. Returns x."""
        return x.index_put_((self.batch, self.position), self.value)


@dataclass(frozen=True)
class Level1Plan:
    """Everything level 1 needs that does not depend on the layer (shared through a ForwardCache).

    band: query block j sees chunks j .. j + 2*reach of the chunked keys; mask: its BandMask;
    gpos, gvalid: (B, G) global positions and validity (None without global tokens);
    global_keys: (B, 1, 1, S_ext) additive mask of the keys a global row attends to."""

    band: Band
    reach: int
    mask: BandMask
    gpos: Optional[torch.Tensor] = None
    gvalid: Optional[torch.Tensor] = None
    global_keys: Optional[torch.Tensor] = None


def level1_plan(
    length: int, batch: int, w1: int, block: int, layout: Layout, global_mask: Optional[torch.Tensor],
    dtype: torch.dtype, device: torch.device,
) -> Level1Plan:
    """The chunk layout and masks of level 1 for sequences of T = length; global_mask: (B, T) or None.

    Keys are laid out in chunks of ``block`` rows, each followed by a copy of the G global keys;
    query block j attends to the 2*reach + 1 chunks around it (a view: no per-block copies),
    and uses the global copies of its own chunk only, for globals outside its window. For
    block = 4, reach = 1 (w1 <= 4) and G = 2 global tokens g, h ("." = a zero row outside [0, T)):

        chunk          0                  1                  2                  3
        keys   [ .  .  .  . g h ][ 0  1  2  3 g h ][ 4  5  6  7 g h ][ 8  9 10 11 g h ] ...
        queries 0-3 (block 0)  ->  chunks 0 1 2: tokens 0-7 within w1, and g h of chunk 1
        queries 4-7 (block 1)  ->  chunks 1 2 3: tokens 0-11 within w1, and g h of chunk 2

    A global token inside a block's window is attended through its local slot, so the copy
    is masked there; the rows of the global tokens themselves attend to every real token
    (``global_keys``: each token's one local slot)."""
    w1 = min(w1, length - 1)  # a wider window sees nothing more
    if global_mask is not None and layout.valid is not None:
        global_mask = global_mask & layout.valid
    gpos = gvalid = None
    if global_mask is not None and bool(global_mask.any()):
        gpos, gvalid = _global_positions(global_mask)  # (B, G), (B, G)
    n_global = 0 if gpos is None else gpos.shape[1]
    if block + 2 * w1 >= length:  # one block holding every query and every key
        block, reach = length, 0
    else:
        reach = math.ceil(w1 / block)
    chunk = block + n_global
    band = Band(block=block, first=0, step=chunk, keys=(2 * reach + 1) * chunk)
    nb = band.num_blocks(length)

    qpos = band.query_positions(length, device)  # (nb, block)
    offsets = torch.arange(-reach, reach + 1, device=device, dtype=torch.int32)
    kpos = (qpos[:, None, :1] + offsets[None, :, None] * block + torch.arange(block, device=device, dtype=torch.int32))
    # kpos: (nb, 2r+1, block) positions of the local slots of every band
    local = (kpos[:, None] - qpos[:, :, None, None]).abs() <= w1  # (nb, block, 2r+1, block)
    local = (local & ((kpos >= 0) & (kpos < length))[:, None]).unsqueeze(0)
    if layout.valid is not None:
        local = local & layout.valid[:, kpos.clamp(0, length - 1)].unsqueeze(2)
    q_valid = query_valid(layout, qpos, length)  # (B, nb, block)
    if gpos is None:
        mask = local.flatten(3)
    else:
        far = (qpos[None, :, :, None] - gpos[:, None, None, :]).abs() > w1  # (B, nb, block, G)
        g_slots = local.new_zeros(batch, nb, block, 2 * reach + 1, n_global)
        g_slots[:, :, :, reach] = far & gvalid[:, None, None, :]
        mask = torch.cat([local.expand(batch, -1, -1, -1, -1), g_slots], dim=-1).flatten(3)
    # every real query sees itself; padding rows see their whole band (finite) and are zeroed later
    mask = mask | ~q_valid.unsqueeze(-1)  # (B, nb, block, keys)
    band_rule = band_mask(mask, batch, dtype, rows_may_be_empty=False)
    if gpos is None:
        return Level1Plan(band, reach, band_rule)
    global_keys = _global_row_keys(length, block, reach, nb + 2 * reach, n_global, layout)
    additive = additive_mask(global_keys, dtype).expand(batch, -1)[:, None, None, :]
    return Level1Plan(band, reach, band_rule, gpos, gvalid, additive)


def _global_row_keys(length: int, block: int, reach: int, n_chunks: int, n_global: int, layout: Layout) -> torch.Tensor:
    """The slots of the chunked keys that a global row attends to: every real token, which
    appears once among the chunks' local slots (their global copies are left out).
    Returns (S_ext,) bool, or (B, S_ext) with padding."""
    chunk = block + n_global
    slots = torch.arange(n_chunks * chunk, device=layout.lengths.device, dtype=torch.int32)
    chunk_slot = slots % chunk
    chunk_pos = slots // chunk * block + chunk_slot - reach * block
    key_ok = (chunk_slot < block) & (chunk_pos >= 0) & (chunk_pos < length)  # (S_ext,)
    if layout.valid is not None:
        key_ok = key_ok & layout.valid[:, chunk_pos.clamp(0, length - 1)]  # (B, S_ext)
    return key_ok


def sliding_window_parts(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    w1: int,
    layout: Layout,
    global_mask: Optional[torch.Tensor],
    dropout_p: float,
    block: int,
    cache: Optional[ForwardCache] = None,
) -> Tuple[torch.Tensor, Optional[GlobalRows]]:
    """Level 1 on aligned inputs, as the band output of every row (B, T, H, D) and, separately,
    the outputs of the global rows (None without global tokens), so that a caller can project
    both before merging them. q, k, v: (B, T, H, D); global_mask: (B, T) or None.
    cache: shares the plan (masks) with the other layers of the forward.
    Rows of padding hold finite garbage (callers zero them)."""
    batch, length = q.shape[:2]
    plan = cached(cache, ("level1", length, batch, w1, block, q.dtype, q.device),
                  lambda: level1_plan(length, batch, w1, block, layout, global_mask, q.dtype, q.device))
    band, reach = plan.band, plan.reach
    k_ext, v_ext = (_chunked_keys(x, band.block, reach, band.num_blocks(length), plan.gpos) for x in (k, v))
    out = blocked_attention(q, k_ext, v_ext, band, plan.mask, dropout_p)
    if plan.gpos is None:
        return out, None
    gpos, gvalid = plan.gpos, plan.gvalid
    bidx = torch.arange(batch, device=q.device)[:, None]
    g_out = _full_attention(q[bidx, gpos], k_ext, v_ext, plan.global_keys, dropout_p)  # (B, G, H, D)
    return out, GlobalRows(bidx.expand_as(gpos)[gvalid], gpos[gvalid], g_out[gvalid])


def _chunked_keys(x: torch.Tensor, block: int, reach: int, nb: int, gpos: Optional[torch.Tensor]) -> torch.Tensor:
    """x: (B, T, H, D) -> (B, (nb + 2*reach) * (block + G), H, D): chunk c holds rows
    [(c - reach) * block, (c - reach + 1) * block) (zeros outside [0, T)), then the G global rows."""
    if gpos is None:
        gpos = torch.zeros(x.shape[0], 0, dtype=torch.long, device=x.device)
    return _ChunkedKeys.apply(x, gpos, block, reach, nb + 2 * reach)


def _local_slots(chunks: torch.Tensor, x: torch.Tensor, reach: int) -> Tuple[List[Tuple[torch.Tensor, torch.Tensor]], List[torch.Tensor]]:
    """Where the rows of x go among the local slots of the chunks.

    chunks: (B, n_chunks, block, H, D) local slots (a view); x: (B, T, H, D).
    Returns pairs of same-shape views (slots, rows of x) that cover x once, and the views of
    the slots that hold no row of x (before row 0 and after row T - 1: zeros)."""
    block, length = chunks.shape[2], x.shape[1]
    whole, rest = divmod(length, block)  # full chunks of x, rows in its last partial chunk
    pairs = [(chunks[:, reach:reach + whole], x[:, :whole * block].unflatten(1, (whole, block)))]
    empty = [chunks[:, :reach], chunks[:, reach + whole + (rest > 0):]]
    if rest:
        pairs.append((chunks[:, reach + whole, :rest], x[:, whole * block:]))
        empty.append(chunks[:, reach + whole, rest:])
    return pairs, empty


class _ChunkedKeys(torch.autograd.Function):
    """``_chunked_keys`` writing every element once (no pad + cat copies, no zero-fill of what
    is then overwritten) and saving nothing for backward but the global positions: the gradient
    of x is read back from the local slots, plus the global copies summed over the chunks."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, gpos: torch.Tensor, block: int, reach: int, n_chunks: int) -> torch.Tensor:
        # x: (B, T, H, D); gpos: (B, G) long
        batch, _, heads, dim = x.shape
        n_global = gpos.shape[1]
        out = x.new_empty(batch, n_chunks, block + n_global, heads, dim)
        pairs, empty = _local_slots(out[:, :, :block], x, reach)
        for slots, rows in pairs:
            slots.copy_(rows)
        for slots in empty:
            slots.zero_()
        if n_global:
            bidx = torch.arange(batch, device=x.device)[:, None]
            out[:, :, block:] = x[bidx, gpos][:, None]  # (B, 1, G, H, D) copied into every chunk
        ctx.save_for_backward(gpos)
        ctx.block, ctx.reach, ctx.length = block, reach, x.shape[1]
        return out.view(batch, -1, heads, dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        # grad: (B, n_chunks * (block + G), H, D) -> grad of x: (B, T, H, D)
        (gpos,) = ctx.saved_tensors
        batch, _, heads, dim = grad.shape
        block, n_global = ctx.block, gpos.shape[1]
        grad = grad.view(batch, -1, block + n_global, heads, dim)
        grad_x = grad.new_empty(batch, ctx.length, heads, dim)
        pairs, _ = _local_slots(grad[:, :, :block], grad_x, ctx.reach)
        for slots, rows in pairs:
            rows.copy_(slots)
        if n_global:
            bidx = torch.arange(batch, device=grad.device)[:, None].expand_as(gpos)
            grad_x.index_put_((bidx, gpos), grad[:, :, block:].sum(dim=1), accumulate=True)
        return grad_x, None, None, None, None


def _global_positions(global_mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """global_mask: (B, T) -> positions (B, G) in increasing order and validity (B, G), G = max count."""
    n_global = int(global_mask.sum(dim=1).max())
    flags, order = torch.sort(global_mask.to(torch.uint8), dim=1, descending=True, stable=True)
    return order[:, :n_global], flags[:, :n_global].bool()


def _full_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor, dropout_p: float
) -> torch.Tensor:
    """q: (B, G, H, D) attends to the keys of k, v: (B, S, H, D) that key_mask allows;
    key_mask: (B, 1, 1, S) additive. Returns (B, G, H, D)."""
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=key_mask, dropout_p=dropout_p
    )
    return out.transpose(1, 2)
