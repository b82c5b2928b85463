"""Sequence layout: where each sequence's real tokens start and how many there are.

Poolingformer positions (windows, pooling segments, segment centres) count from each
sequence's first real token. Fairseq pads sources on the left, other code on the right; to
make both give the same result we move every sequence so that its real tokens start at
position 0 ("aligned" layout), compute there, and move the result back.
"""

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class Layout:
    """lengths: (B,) real tokens per sequence; shift: (B,) leading pads, None when all zero;
    valid: (B, T) bool, True = real token, in aligned coordinates; None when nothing is padded."""

    lengths: torch.Tensor
    shift: Optional[torch.Tensor]
    valid: Optional[torch.Tensor]

    @property
    def has_padding(self) -> bool:
        return self.valid is not None


def make_layout(key_padding_mask: Optional[torch.Tensor], batch: int, length: int, device: torch.device) -> Layout:
    """key_padding_mask: (B, T) bool, True = padding, pads only at the start or the end of a row."""
    if key_padding_mask is None or not bool(key_padding_mask.any()):
        lengths = torch.full((batch,), length, dtype=torch.long, device=device)
        return Layout(lengths=lengths, shift=None, valid=None)
    real = ~key_padding_mask
    lengths = real.sum(dim=1)
    # index of the first real token (a row of only padding gets shift 0)
    shift = torch.where(lengths > 0, real.int().argmax(dim=1), torch.zeros_like(lengths))
    positions = torch.arange(length, device=device)
    valid = positions[None, :] < lengths[:, None]
    aligned_real = _roll_rows(real, shift)
    if not torch.equal(aligned_real, valid):
        raise ValueError(
            "key_padding_mask must pad each sequence only at its start (left padding) or its end "
            "(right padding); found padding between real tokens"
        )
    if not bool(shift.any()):
        shift = None
    return Layout(lengths=lengths, shift=shift, valid=valid)


def _roll_rows(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """x: (B, T, ...); row b moved left by shift[b] (cyclically). Returns (B, T, ...)."""
    batch, length = x.shape[:2]
    index = (torch.arange(length, device=x.device)[None, :] + shift[:, None]) % length  # (B, T)
    return x[torch.arange(batch, device=x.device)[:, None], index]


def to_aligned(x: torch.Tensor, layout: Layout) -> torch.Tensor:
    """x: (B, T, ...) in the caller's layout -> (B, T, ...) with real tokens first."""
    if layout.shift is None:
        return x
    return _roll_rows(x, layout.shift)


def from_aligned(x: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Inverse of ``to_aligned``. x: (B, T, ...)."""
    if layout.shift is None:
        return x
    return _roll_rows(x, -layout.shift)


def from_aligned_zeroed(x: torch.Tensor, layout: Layout) -> torch.Tensor:
    """x: (B, T, ...) aligned -> (B, T, ...) in the caller's layout, rows of padding zero: how
    every entry point (the functions and the modules) hands its result back."""
    return from_aligned(zero_padding_rows(x, layout), layout)


def query_valid(layout: Layout, positions: torch.Tensor, length: int) -> torch.Tensor:
    """positions: (nb, block) aligned query positions -> (B, nb, block) bool: a real token
    (not padding, not past T)."""
    inside = positions < length
    if layout.valid is None:
        return inside.unsqueeze(0).expand(layout.lengths.shape[0], -1, -1)
    return inside & layout.valid[:, positions.clamp(max=length - 1)]


def zero_padding_rows(x: torch.Tensor, layout: Layout) -> torch.Tensor:
    """x: (B, T, ...) aligned; rows of padding set to zero."""
    if layout.valid is None:
        return x
    return x * layout.valid.reshape(layout.valid.shape + (1,) * (x.dim() - 2)).to(x.dtype)
