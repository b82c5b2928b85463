"""The GPU path: level 1 and level 2 each as one FlexAttention call.

Same semantics as ``sliding_window`` and ``pooling_attention`` (the eager kernels), laid out for
a GPU: instead of many (block x band) SDPA problems and the global rows on the side, each level
is one ``torch.nn.attention.flex_attention`` call over the whole sequence, whose block mask
lists, for every tile of ``BLOCK`` queries, the tiles of keys it may need. Compiled (on CUDA),
each call is one fused Triton kernel forward and two backward, whatever T and the number of
global tokens:

- level 1: token i attends to real token j when |i - j| <= w1, or j is global, or i is global;
- level 2: token i attends to the valid pooled segments s with |c_s - i| <= w2,
  c_s = s*stride + (kernel-1)/2 (every valid segment when w2 >= the sequence's length).

Inputs are in the aligned layout (each sequence's real tokens first, ``layout``). Query rows of
padding and real rows that see nothing give 0 (FlexAttention returns 0 for a row with no
allowed key; never NaN). The block masks depend only on T, the padding and the globals: they
are built once per forward and shared by the layers through ``ForwardCache``.

The block tables are computed per tile from the interval arithmetic of the rule: (T / BLOCK)^2
flags per sequence (16 K at 16k, 256 K at 64k), never a (T x T) mask. FlexAttention has no
attention dropout: ``auto`` keeps the eager kernels when it is on in training, and ``flex``
refuses it. On the CPU torch runs FlexAttention unfused and forward only (a T x S score
matrix): ``flex`` there is for checking the masks at small T, and refuses training.
"""

from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from .forward_cache import ForwardCache, cached
from .layout import Layout

BLOCK = 128  # FlexAttention's tile of queries and of keys
IMPLS = ("auto", "eager", "flex", "compiled")

_compiled_flex: Optional[Callable] = None
_compiled_attend: Dict[type, Callable] = {}


def check_impl(impl: str, name: str = "attention impl") -> str:
    """``impl`` when it is one of ``IMPLS``, else ValueError naming it as ``name``."""
    if impl not in IMPLS:
        raise ValueError(f"{name} must be one of {IMPLS}, got {impl!r}")
    return impl


def use_flex(impl: str, x: torch.Tensor, training: bool, dropout: float) -> bool:
    """Whether a layer with this impl runs its attention through FlexAttention for input x.

    eager: never; flex: always (on the CPU forward only: ValueError when training there); auto
    and compiled: on CUDA, unless attention dropout is on in training (FlexAttention has none)."""
    if impl == "flex" and training and torch.is_grad_enabled() and not x.is_cuda:
        raise ValueError("--attention-impl flex cannot train on the CPU (torch has no FlexAttention "
                         "backward there): train with --attention-impl auto or eager")
    if impl in ("eager", "flex"):
        return impl == "flex"
    return x.is_cuda and not (training and dropout > 0)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask: BlockMask) -> torch.Tensor:
    """q: (B, T, H, D); k, v: (B, S, H, D) -> (B, T, H, D). Compiled on CUDA (one fused kernel);
    elsewhere torch's unfused FlexAttention (forward only: a T x S score matrix, for checks)."""
    global _compiled_flex
    fn = flex_attention
    if q.is_cuda:
        if _compiled_flex is None:
            _compiled_flex = torch.compile(flex_attention, dynamic=True)  # one kernel for every T
        fn = _compiled_flex
    out = fn(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), block_mask=block_mask)
    return out.transpose(1, 2)


def check_no_dropout(dropout_p: float) -> None:
    if dropout_p > 0:
        raise ValueError(
            f"the flex attention path has no attention dropout (got {dropout_p}); use "
            "--attention-impl eager (or auto, which picks it) with --attention-dropout > 0"
        )


def compiled_attend(cls: type) -> Callable:
    """``cls._attend`` under torch.compile (impl "compiled"): the whole attention of a layer,
    projections, pooling and masks around the attention calls, fused by inductor. One compiled
    function per class, shared by its layers (dynamo treats their parameters as inputs);
    shapes become dynamic after the first new length, so a run does not compile at every T."""
    if cls not in _compiled_attend:
        _compiled_attend[cls] = torch.compile(cls._attend, dynamic=None)
    return _compiled_attend[cls]


# ----------------------------------------------------------------------------- level 1
def level1_flex(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w1: int, layout: Layout,
    global_mask: Optional[torch.Tensor], dropout_p: float = 0.0, cache: Optional[ForwardCache] = None,
    block: int = BLOCK,
) -> torch.Tensor:
    """Level 1 on aligned inputs, global rows included. q, k, v: (B, T, H, D); global_mask:
    (B, T) aligned or None. Returns (B, T, H, D); padding rows are 0."""
    check_no_dropout(dropout_p)
    batch, length = q.shape[:2]
    mask = cached(cache, ("flex_level1", length, batch, w1, block, q.device),
                  lambda: level1_block_mask(length, w1, layout, global_mask, block))
    return attend(q, k, v, mask)


def level1_block_mask(
    length: int, w1: int, layout: Layout, global_mask: Optional[torch.Tensor], block: int = BLOCK
) -> BlockMask:
    """The level-1 rule as a BlockMask for T = length; global_mask: (B, T) aligned or None."""
    lengths = layout.lengths
    start, last = _tiles(length, block, lengths)  # (n,), (B, n): the same tiles for queries and keys
    # some pair (i, j) of query tile a and key tile c has |i - j| <= w1: (B, n queries, n keys)
    band = (start[None, None, :] <= last[:, :, None] + w1) & (last[:, None, :] >= start[None, :, None] - w1)
    real = start[None, :] < lengths[:, None]  # (B, n): the tile holds a real token
    tiles = band & real[:, None, :]
    if global_mask is None:
        glob = torch.zeros(len(lengths), length, dtype=torch.bool, device=lengths.device)
    else:
        glob = global_mask if layout.valid is None else global_mask & layout.valid
        g_tiles = _tile_any(glob, block)  # (B, n): the tile holds a global token
        tiles = tiles | (g_tiles[:, None, :] | g_tiles[:, :, None]) & real[:, None, :]
    tiles = tiles & real[:, :, None]  # query tiles of padding only: no key
    glob = _padded(glob, len(start) * block)  # the kernel may ask past T inside the last tile
    w1_ = _scalar(w1, lengths)

    # one rule for every setting (tensors, not Python numbers: one compiled kernel for all)
    def rule(b, h, i, j):
        return (i < lengths[b]) & (j < lengths[b]) & (((i - j).abs() <= w1_) | glob[b, j] | glob[b, i])

    return _block_mask(tiles, rule, (length, length), block)


# ----------------------------------------------------------------------------- level 2
def segment_attention_flex(
    q: torch.Tensor,
    k_pooled: torch.Tensor,
    v_pooled: torch.Tensor,
    seg_valid: torch.Tensor,
    w2: int,
    kernel: int,
    stride: int,
    layout: Layout,
    dropout_p: float = 0.0,
    cache: Optional[ForwardCache] = None,
    block: int = BLOCK,
) -> torch.Tensor:
    """``pooling_attention.segment_attention`` as one FlexAttention call. q: (B, T, H, D)
    aligned; k_pooled, v_pooled: (B, S, H, D); seg_valid: (B, S). Returns (B, T, H, D); rows of
    padding and real rows that see no segment are 0."""
    check_no_dropout(dropout_p)
    batch, length = q.shape[:2]
    segments = k_pooled.shape[1]
    mask = cached(cache, ("flex_level2", length, batch, segments, w2, kernel, stride, block, q.device),
                  lambda: segment_block_mask(length, seg_valid, w2, kernel, stride, layout, block))
    return attend(q, k_pooled, v_pooled, mask)


def segment_block_mask(
    length: int, seg_valid: torch.Tensor, w2: int, kernel: int, stride: int, layout: Layout, block: int = BLOCK
) -> BlockMask:
    """The level-2 rule as a BlockMask of T = length queries over S = seg_valid.shape[1] segments.

    In integers (times 2): |2*stride*s + kernel - 1 - 2*i| <= 2*w2."""
    lengths = layout.lengths
    segments = seg_valid.shape[1]
    q_start, q_last = _tiles(length, block, lengths)  # (nq,), (B, nq)
    s_start, s_last = _tiles(segments, block, seg_valid.sum(dim=1))  # valid segments come first
    lo = 2 * stride * s_start + kernel - 1  # doubled centres of each segment tile's first and last segment
    hi = 2 * stride * s_last + kernel - 1
    near = ((lo[None, None, :] <= 2 * q_last[:, :, None] + 2 * w2)
            & (hi[:, None, :] >= 2 * q_start[None, :, None] - 2 * w2))  # (B, nq, ns)
    whole = lengths <= w2  # (B,): w2 covers the sequence, which sees every segment
    tiles = (near | whole[:, None, None]) & _tile_any(seg_valid, block)[:, None, :]
    tiles = tiles & (q_start[None, :] < lengths[:, None])[:, :, None]
    seg_ok = _padded(seg_valid, len(s_start) * block)
    stride2, offset, w2x2 = (_scalar(n, lengths) for n in (2 * stride, kernel - 1, 2 * w2))

    def rule(b, h, i, s):
        near_ = (stride2 * s + offset - 2 * i).abs() <= w2x2
        return (i < lengths[b]) & seg_ok[b, s] & (near_ | whole[b])

    return _block_mask(tiles, rule, (length, segments), block)


# ----------------------------------------------------------------------------- block tables
def _tiles(length: int, block: int, real: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Tiles of ``block`` rows over ``length`` rows, of which the first real[b] are real in
    sequence b. Returns the first row of every tile, (n,), and its last real row, (B, n) (below
    the first when the tile holds none); n = ceil(length / block)."""
    start = torch.arange(0, length, block, device=real.device)
    last = torch.minimum((start + block).clamp(max=length)[None, :], real[:, None]) - 1
    return start, last


def _tile_any(x: torch.Tensor, block: int) -> torch.Tensor:
    """x: (B, N) bool -> (B, ceil(N / block)): the tile holds a True."""
    n_tiles = -(-x.shape[1] // block)
    return _padded(x, n_tiles * block).view(x.shape[0], n_tiles, block).any(dim=-1)


def _scalar(n: int, like: torch.Tensor) -> torch.Tensor:
    """n as a 0-dim tensor on like's device: captured by a mask rule, compiled as an input."""
    return torch.tensor(n, dtype=like.dtype, device=like.device)


def _padded(x: torch.Tensor, size: int) -> torch.Tensor:
    """x: (B, N) bool -> (B, size), False past N."""
    return F.pad(x, (0, size - x.shape[1]), value=False)


def _block_mask(tiles: torch.Tensor, rule: Callable, lengths: tuple, block: int) -> BlockMask:
    """tiles: (B, nq, nk) bool, the key tiles each query tile visits; rule: the exact mask_mod,
    applied inside every visited tile. Returns a BlockMask of shape (B, 1, T_q, T_k)."""
    tiles = tiles.to(torch.int32)
    count = tiles.sum(dim=-1, dtype=torch.int32)  # (B, nq)
    order = torch.argsort(tiles, dim=-1, descending=True, stable=True).to(torch.int32)  # visited first
    return BlockMask.from_kv_blocks(count[:, None].contiguous(), order[:, None].contiguous(), BLOCK_SIZE=block,
                                    mask_mod=rule, seq_lengths=lengths)

