"""Encoder-layer pieces that compute what Fairseq's layer computes and keep less for backward.

At 16k tokens an encoder layer's feed-forward block is most of what backward keeps: the
activation's input (T x 4C) for the activation's backward and its output (another T x 4C)
for fc2's weight gradient. ``activation_linear`` keeps only the input and computes the
activation again in backward (an element-wise op next to two matmuls): one T x 4C tensor less
per layer, about a quarter of what the layer keeps (docs/benchmark.md has the measured memory).
"""

from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def lean_dropout(module: nn.Module, x: Tensor) -> Tensor:
    """What Fairseq's ``FairseqDropout`` module computes, keeping a bool mask for backward (1 byte
    per element) where ``F.dropout`` on CPU keeps its float noise (4 bytes): three bytes less per
    element of each dropout, two per layer. Same distribution and scaling (CUDA's F.dropout
    already keeps a bool mask)."""
    if _dropout_p(module) > 0:
        return torch.native_dropout(x, module.p, True)[0]
    return x


def activation_linear(
    h: Tensor, activation: Callable[[Tensor], Tensor], dropout: nn.Module, fc: nn.Linear, recompute: bool = True
) -> Tensor:
    """fc(lean_dropout(dropout, activation(h))), keeping only h (and the dropout's bool mask):
    backward computes the activation again from h (same ops, same result).

    h: (..., F) -> (..., C). The plain composition when ``recompute`` is False, when ``fc``
    carries hooks (Fairseq's quant-noise), which this function would bypass, or without
    gradients. Pass recompute=False under activation checkpointing: there the layer's backward
    peak is what counts, and this backward holds the recomputed activation, its gradient and
    h's gradient at once (one T x F tensor more than autograd, which frees the activation
    after fc's backward)."""
    if not recompute or fc._forward_pre_hooks or fc._forward_hooks or not torch.is_grad_enabled():
        return fc(lean_dropout(dropout, activation(h)))
    return _ActivationLinear.apply(h, fc.weight, fc.bias, activation, _dropout_p(dropout))


def _dropout_p(module: nn.Module) -> float:
    """The drop probability ``module`` applies now (0 in eval unless it applies during inference)."""
    return module.p if module.p > 0 and (module.training or getattr(module, "apply_during_inference", False)) else 0.0


class _ActivationLinear(torch.autograd.Function):
    """out = F.linear(drop(activation(h)), weight, bias); saves h, weight and the dropout mask."""

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Optional[Tensor], activation: Callable[[Tensor], Tensor],
                p: float) -> Tensor:
        a = activation(h)
        mask = None
        if p > 0:
            a, mask = torch.native_dropout(a, p, True)
        ctx.activation, ctx.scale, ctx.has_bias = activation, 1.0 / (1.0 - p), bias is not None
        ctx.save_for_backward(h, weight, mask)
        return F.linear(a, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tuple[Optional[Tensor], ...]:
        # grad: (..., C); h: (..., F); weight: (C, F)
        h, weight, mask = ctx.saved_tensors
        with torch.enable_grad():
            h_leaf = h.detach().requires_grad_(ctx.needs_input_grad[0])
            a = ctx.activation(h_leaf)
        kept = a.detach() if mask is None else torch.ops.aten.native_dropout_backward(a.detach(), mask, ctx.scale)
        grad_2d = grad.reshape(-1, grad.shape[-1])
        grad_h = grad_weight = grad_bias = None
        if ctx.needs_input_grad[1]:
            grad_weight = grad_2d.t().mm(kept.reshape(-1, kept.shape[-1]))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_2d.sum(dim=0)
        if ctx.needs_input_grad[0]:
            grad_a = grad.matmul(weight)
            if mask is not None:
                grad_a = torch.ops.aten.native_dropout_backward(grad_a, mask, ctx.scale)
            (grad_h,) = torch.autograd.grad(a, h_leaf, grad_a)
        return grad_h, grad_weight, grad_bias, None, None
