"""Pretrained weights into a Poolingformer: positions extended by loop copy, loading by name
(only level-2 tensors may be new), and level 2 started from level 1."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from fairseq_poolingformer.convert.core.errors import ConversionError

LEVEL2_PARAM_NAMES = ("q2_proj", "k2_proj", "v2_proj", "out2_proj", "k_pool_weight", "v_pool_weight")


def extend_positions(weight: torch.Tensor, max_positions: int, offset: int) -> torch.Tensor:
    """Learned positions (offset + M, C) -> (offset + max_positions, C) by loop-copying.

    Rows ``[0, offset)`` are reserved (padding and below) and kept; new position ``p`` takes the
    pretrained row of position ``p % M``. ``max_positions < M`` keeps the first rows.
    """
    if weight.dim() != 2:
        raise ConversionError(f"position embedding must be 2-D (rows, C), got shape {tuple(weight.shape)}")
    if max_positions <= 0:
        raise ConversionError(f"max_positions must be positive, got {max_positions}")
    pretrained = weight.shape[0] - offset  # M
    if offset < 0 or pretrained <= 0:
        raise ConversionError(
            f"position embedding has {weight.shape[0]} rows, not more than the offset {offset}"
        )
    source_rows = offset + torch.arange(max_positions) % pretrained  # (max_positions,)
    return torch.cat([weight[:offset], weight[source_rows]], dim=0).clone()


def is_level2_key(key: str) -> bool:
    """True for parameters that only Poolingformer's level 2 has (absent from pretrained models)."""
    return any(f".{name}." in f".{key}" or key.endswith(f".{name}") for name in LEVEL2_PARAM_NAMES)


def init_level2(model: nn.Module, missing_keys: Optional[Sequence[str]] = None) -> int:
    """Call ``init_level2_from_level1()`` on every two-level attention (with ``missing_keys``:
    only on those with a key in it, i.e. whose level 2 did not come from the checkpoint);
    returns how many."""
    count = 0
    for name, module in model.named_modules():
        init = getattr(module, "init_level2_from_level1", None)
        if not callable(init):
            continue
        if missing_keys is not None and not any(k.startswith(name + ".") for k in missing_keys):
            continue
        init()
        count += 1
    return count


def load_pretrained_weights(
    model: nn.Module,
    state_dict: Dict[str, torch.Tensor],
    model_cfg: Any = None,
    new_key: Callable[[str], bool] = is_level2_key,
) -> List[str]:
    """Load ``state_dict`` into a Fairseq model; only keys with ``new_key(k)`` may be missing.

    Any other missing key or any unexpected key raises ``ConversionError`` listing them.
    Returns the missing (new) keys.
    """
    try:
        result = model.load_state_dict(state_dict, strict=False, model_cfg=model_cfg)
    except RuntimeError as err:  # shape mismatches: say so in one line
        raise ConversionError(f"pretrained weights do not fit the Poolingformer model: {err}") from None
    missing = [k for k in result.missing_keys if not new_key(k)]
    if missing or result.unexpected_keys:
        raise ConversionError(
            "pretrained weights do not match the Poolingformer model: "
            f"missing {missing[:20]}{' ...' if len(missing) > 20 else ''}, "
            f"unexpected {result.unexpected_keys[:20]}"
            f"{' ...' if len(result.unexpected_keys) > 20 else ''}"
        )
    return [k for k in result.missing_keys if new_key(k)]
