"""models/lean.py: the encoder layer's pieces that keep less for backward compute exactly what
Fairseq's composition computes (outputs and gradients bit for bit) and keep what they say."""

import pytest
import torch
from torch import nn

from fairseq import utils
from fairseq.modules import FairseqDropout
from fairseq.modules.quant_noise import quant_noise

from fairseq_poolingformer.models.lean import activation_linear, lean_dropout
from saved_memory import saved_bytes, saved_storages

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def run(fused: bool, activation: str, p: float, h: torch.Tensor, fc: nn.Linear, seed: int = 5):
    dropout = FairseqDropout(p)
    dropout.train()
    act = utils.get_activation_fn(activation)
    torch.manual_seed(seed)
    if fused:
        out, kept = saved_storages(lambda: activation_linear(h, act, dropout, fc))
    else:
        out, kept = saved_storages(lambda: fc(lean_dropout(dropout, act(h))))
    grads = torch.autograd.grad(out.pow(2).sum(), [h, fc.weight, fc.bias])
    return out, grads, kept


@pytest.mark.parametrize("activation", ["gelu", "relu", "gelu_accurate", "tanh"])
@pytest.mark.parametrize("p", [0.0, 0.3])
def test_activation_linear_is_the_composition_bit_for_bit_and_keeps_only_its_input(activation, p):
    torch.manual_seed(0)
    fc = nn.Linear(64, 16)
    h = torch.randn(50, 3, 64, requires_grad=True)  # (T, B, F) as in the encoder layer
    fused_out, fused_grads, fused_kept = run(True, activation, p, h, fc)
    plain_out, plain_grads, plain_kept = run(False, activation, p, h, fc)
    assert torch.equal(fused_out, plain_out)
    assert all(torch.equal(a, b) for a, b in zip(fused_grads, plain_grads))
    h_bytes, mask_bytes = h.numel() * 4, (h.numel() if p > 0 else 0)
    weight_bytes = fc.weight.untyped_storage().nbytes()
    assert sum(fused_kept.values()) == h_bytes + weight_bytes + mask_bytes
    # the composition keeps fc's input (the activation's output, after dropout) as well; relu
    # and tanh without dropout keep only their output, which is that same tensor
    extra = 0 if activation in ("relu", "tanh") and p == 0 else h_bytes
    assert sum(plain_kept.values()) >= sum(fused_kept.values()) + extra


def test_activation_linear_dropout_draws_follow_the_seed():
    torch.manual_seed(0)
    fc = nn.Linear(32, 8)
    h = torch.randn(40, 32, requires_grad=True)
    a, _, _ = run(True, "gelu", 0.5, h, fc, seed=1)
    b, _, _ = run(True, "gelu", 0.5, h, fc, seed=1)
    c, _, _ = run(True, "gelu", 0.5, h, fc, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_activation_linear_without_gradients_or_with_hooks_is_the_plain_composition():
    """A hooked fc (Fairseq's --quant-noise-pq adds a forward pre-hook that rewrites the weight)
    runs through its module call; without gradients nothing needs keeping; recompute=False
    (checkpointed layers) keeps what autograd keeps."""
    torch.manual_seed(0)
    h = torch.randn(20, 2, 16, requires_grad=True)
    dropout = FairseqDropout(0.0)
    fc = nn.Linear(16, 4)
    calls = []
    handle = fc.register_forward_pre_hook(lambda module, args: calls.append(1))
    out = activation_linear(h, torch.relu, dropout, fc)
    assert calls == [1] and "ActivationLinear" not in type(out.grad_fn).__name__
    torch.testing.assert_close(out, fc(torch.relu(h)), rtol=0, atol=0)
    handle.remove()
    noisy = quant_noise(nn.Linear(16, 4), 0.5, 8)
    assert "ActivationLinear" not in type(activation_linear(h, torch.relu, dropout, noisy).grad_fn).__name__
    out = activation_linear(h, torch.relu, dropout, fc, recompute=False)
    assert "ActivationLinear" not in type(out.grad_fn).__name__
    assert "ActivationLinear" in type(activation_linear(h, torch.relu, dropout, fc).grad_fn).__name__
    with torch.no_grad():
        out = activation_linear(h, torch.relu, dropout, fc)
    assert out.grad_fn is None
    torch.testing.assert_close(out, fc(torch.relu(h)), rtol=0, atol=0)


def test_activation_linear_half_precision_matches_the_composition():
    torch.manual_seed(0)
    fc = nn.Linear(32, 8).to(torch.bfloat16)
    h = torch.randn(30, 32, dtype=torch.bfloat16, requires_grad=True)
    act = utils.get_activation_fn("gelu")  # Fairseq's gelu computes in float32 and casts back
    fused = activation_linear(h, act, FairseqDropout(0.0), fc)
    plain = fc(act(h))
    assert fused.dtype == torch.bfloat16 and torch.equal(fused, plain)
    gf = torch.autograd.grad(fused.float().sum(), [h, fc.weight])
    gp = torch.autograd.grad(plain.float().sum(), [h, fc.weight])
    assert all(torch.equal(a, b) for a, b in zip(gf, gp))


def test_lean_dropout_is_fairseq_dropout_with_a_one_byte_mask():
    module = FairseqDropout(0.25)
    x = torch.randn(4000, 8, requires_grad=True)
    module.eval()
    assert lean_dropout(module, x) is x
    module.train()
    out, kept = saved_bytes(lambda: lean_dropout(module, x))
    kept_rows = out != 0
    assert abs(kept_rows.float().mean().item() - 0.75) < 0.01
    torch.testing.assert_close(out[kept_rows], x[kept_rows] / 0.75, rtol=0, atol=1e-6)
    grad, = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(grad, kept_rows.float() / 0.75, rtol=0, atol=1e-6)
    assert kept == x.numel()  # a bool mask: one byte per element (F.dropout keeps 4 on CPU)
    module.p = 0.0
    assert lean_dropout(module, x) is x
