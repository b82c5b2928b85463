"""Argument validation shared by the attention functions and modules.

Every check raises ``ValueError`` naming the argument and the offending values, so a caller
sees "w1 must be a positive int, got 0" instead of a broadcast error deep inside a kernel.
"""

from typing import Optional

import torch

# the poolings whose weights come from a learned W_p (k_pool_weight, v_pool_weight)
LDCONV_POOLINGS = ("ldconv", "mean_ldconv")
# every pooling of level 2: the choices of --pf-pooling
POOLING_TYPES = ("mean", "max") + LDCONV_POOLINGS


def check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """q, k, v: (B, H, T, D) floating tensors of one shape."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must have shape (B, H, T, D), got rank {t.dim()} shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating tensor, got dtype {t.dtype}")
    if not (q.shape == k.shape == v.shape):
        raise ValueError(
            f"q, k, v must have the same shape (B, H, T, D), got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if q.shape[2] == 0:
        raise ValueError(f"sequence length T must be >= 1, got q shape {tuple(q.shape)}")


def check_mask(name: str, mask: Optional[torch.Tensor], batch: int, length: int) -> None:
    """mask: None or (B, T) bool."""
    if mask is None:
        return
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"{name} must be a bool tensor of shape (B, T), got {got}")
    if tuple(mask.shape) != (batch, length):
        raise ValueError(f"{name} must have shape (B, T) = ({batch}, {length}), got {tuple(mask.shape)}")


def check_pooling(pooling: str, kernel: int, stride: int) -> None:
    check_positive_int("kernel", kernel)
    check_positive_int("stride", stride)
    if pooling not in POOLING_TYPES:
        raise ValueError(f"pooling must be one of {POOLING_TYPES}, got {pooling!r}")
    if stride > kernel:
        # Segments [s*stride, s*stride + kernel) would leave positions that no segment covers:
        # those tokens could never be attended at level 2. We refuse rather than silently drop them.
        raise ValueError(
            f"stride must be <= kernel so that every position is pooled, got stride={stride} > kernel={kernel}"
        )


def check_pool_weight(name: str, weight: Optional[torch.Tensor], pooling: str, kernel: int, dim: int) -> None:
    """weight: W_p of shape (kernel, H*D), required for ldconv / mean_ldconv."""
    needs = pooling in LDCONV_POOLINGS
    if not needs:
        if weight is not None:
            raise ValueError(f"{name} is only used with pooling ldconv/mean_ldconv, got pooling={pooling!r}")
        return
    if weight is None:
        raise ValueError(f"{name} of shape (kernel, H*D) = ({kernel}, {dim}) is required for pooling={pooling!r}")
    if tuple(weight.shape) != (kernel, dim):
        raise ValueError(f"{name} must have shape (kernel, H*D) = ({kernel}, {dim}), got {tuple(weight.shape)}")
