"""The FlexAttention path (modules/flex.py) and the compiled path against the dense reference.

Tests marked ``device`` run on ``PF_TEST_DEVICE`` in ``PF_TEST_DTYPE`` (tests/device.py):
on the CPU, FlexAttention runs forward only and unfused (torch's math implementation, which
applies the exact mask but not the block tables: ``test_block_tables_are_the_rule's_tiles``
checks those); ``make gpu-check`` runs them on CUDA, compiled, with gradients.
"""

import copy
import types

import pytest
import torch

from fairseq_poolingformer.modules import PoolingformerSelfAttention, SlidingWindowSelfAttention
from fairseq_poolingformer.modules.flex import level1_block_mask, segment_block_mask, use_flex
from fairseq_poolingformer.modules.layout import make_layout
from fairseq_poolingformer.modules.pooling import segment_taps
from device import DEVICE, DTYPE, atol, rounded, to_device, to_host
from fairseq_poolingformer.modules.reference import ref_self_attention
from test_attention import (
    MODULE_CASES,
    assert_close,
    assert_module_grads_close,
    make_globals,
    make_padding,
    max_ties_possible,
)

HEADS, DIM = 2, 16  # FlexAttention's CUDA kernels want a head dimension of 16 or more
C = HEADS * DIM
BACKWARD = DEVICE.type == "cuda"  # FlexAttention has no backward on the CPU


def run_against_reference(module, length, batch, padding, globals_=None, backward=BACKWARD):
    """module (built on the CPU in fp32) on DEVICE/DTYPE vs ref_self_attention; values, and
    with backward the input and parameter gradients."""
    fast = copy.deepcopy(module).to(DEVICE, DTYPE)
    reference = copy.deepcopy(fast).float().cpu()
    x_ref = rounded(torch.randn(length, batch, C, requires_grad=backward))
    x = to_device(x_ref)
    pad = make_padding(padding, batch, length)
    glob = None if globals_ is None else make_globals(globals_, pad)
    with torch.set_grad_enabled(backward):
        out, _ = fast(x, key_padding_mask=to_device(pad), global_mask=to_device(glob))
    ref = ref_self_attention(reference, x_ref, pad, glob)
    assert torch.isfinite(to_host(out)).all()
    assert_close(to_host(out), ref.detach(), atol())
    assert (to_host(out)[pad.t()] == 0).all(), "padded rows must be zero"
    if not backward or max_ties_possible(getattr(module, "pooling", "mean")):
        return
    assert_module_grads_close(out, ref, x, x_ref, fast, reference)


@pytest.mark.parametrize("options", MODULE_CASES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("global_first_token", [False, True])
@pytest.mark.device
def test_flex_module_matches_reference(options, global_first_token):
    torch.manual_seed(0)
    module = PoolingformerSelfAttention(C, HEADS, w1=6, w2=20, kernel=5, stride=4, impl="flex",
                                        global_first_token=global_first_token, **options).eval()
    run_against_reference(module, 283, 3, "mixed")  # several 128-token tiles, the last one partial


@pytest.mark.parametrize("length,w1,w2,padding", [
    (1, 4, 8, "none"), (7, 16, 3, "left"), (130, 1, 1, "right"), (300, 40, 300, "mixed"), (513, 128, 200, "left"),
])
@pytest.mark.parametrize("globals_", ["none", "scattered"])
@pytest.mark.device
def test_flex_windows_and_globals_match_reference(length, w1, w2, padding, globals_):
    """T below and above the windows and the tile, w2 covering the sequence, explicit globals."""
    torch.manual_seed(1)
    module = PoolingformerSelfAttention(C, HEADS, w1=w1, w2=w2, kernel=5, stride=4, pooling="mean",
                                        impl="flex").eval()
    run_against_reference(module, length, 1 if length == 1 else 3, padding, globals_)


@pytest.mark.device
def test_flex_level1_module_matches_reference():
    torch.manual_seed(2)
    module = SlidingWindowSelfAttention(C, HEADS, w1=9, global_first_token=True, impl="flex").eval()
    run_against_reference(module, 200, 3, "left", "scattered")


def dense_tiles(rule, batch, rows, cols, block):
    """The (B, n_rows, n_cols) tiles in which the rule allows some pair: from the full rule."""
    i = torch.arange(rows)[:, None]
    j = torch.arange(cols)[None, :]
    allowed = torch.stack([rule(torch.tensor(b), 0, i, j) for b in range(batch)])  # (B, rows, cols)
    pad_r, pad_c = -rows % block, -cols % block
    allowed = torch.nn.functional.pad(allowed, (0, pad_c, 0, pad_r))
    return allowed.view(batch, -1, block, allowed.shape[-1] // block, block).any(dim=(2, 4))


def visited_tiles(mask):
    """BlockMask -> (B, n_rows, n_cols) bool: the tiles its tables list."""
    return mask.to_dense()[:, 0].bool()


@pytest.mark.parametrize("length,w1,globals_", [(300, 5, "none"), (300, 5, "scattered"), (517, 100, "first"),
                                                (64, 200, "scattered")])
def test_block_tables_are_the_rules_tiles(length, w1, globals_):
    """Compiled FlexAttention computes only the tiles the tables list: they must be exactly the
    tiles in which the rule allows a pair (none missing: wrong results; none extra: wasted work)."""
    pad = make_padding("mixed", 3, length)
    layout = make_layout(pad, 3, length, torch.device("cpu"))
    aligned_glob = make_globals(globals_, torch.zeros_like(pad))  # globals among the aligned real tokens
    aligned_glob &= torch.arange(length)[None, :] < layout.lengths[:, None]
    block = 32
    mask = level1_block_mask(length, w1, layout, aligned_glob, block)
    assert torch.equal(visited_tiles(mask), dense_tiles(mask.mask_mod, 3, length, length, block))
    for w2, kernel, stride in ((17, 5, 4), (400, 3, 2), (1, 5, 4)):
        _, tap_valid = segment_taps(torch.zeros(3, length), layout.valid, kernel, stride)
        seg_valid = tap_valid.any(dim=-1)
        mask = segment_block_mask(length, seg_valid, w2, kernel, stride, layout, block)
        assert torch.equal(visited_tiles(mask), dense_tiles(mask.mask_mod, 3, length, seg_valid.shape[1], block))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_flex_fully_padded_and_unreachable_rows_are_zero_not_nan(dtype):
    """A sequence of padding only, and w2 = 1 with kernel 5 (token 0 sees no segment)."""
    torch.manual_seed(3)
    module = PoolingformerSelfAttention(C, HEADS, w1=2, w2=1, kernel=5, stride=4, impl="flex",
                                        global_first_token=True).eval()
    x = torch.randn(40, 2, C)
    pad = torch.zeros(2, 40, dtype=torch.bool)
    pad[1] = True
    with torch.no_grad():
        out, _ = module.to(dtype)(x.to(dtype), key_padding_mask=pad)
    assert torch.isfinite(out).all() and (out[:, 1] == 0).all()
    ref = ref_self_attention(module.float(), x, pad)
    assert (out.float() - ref).abs().max() < (0.02 if dtype == torch.float16 else 0.1)


def test_impl_selection():
    cuda, cpu = types.SimpleNamespace(is_cuda=True), types.SimpleNamespace(is_cuda=False)
    assert use_flex("auto", cuda, training=True, dropout=0.0)
    assert not use_flex("auto", cpu, training=False, dropout=0.0)  # the CPU keeps its kernels
    assert not use_flex("auto", cuda, training=True, dropout=0.1)  # FlexAttention has no dropout
    assert use_flex("auto", cuda, training=False, dropout=0.1)
    assert use_flex("flex", cpu, training=False, dropout=0.0) and not use_flex("eager", cuda, False, 0.0)
    assert use_flex("compiled", cuda, False, 0.0) and not use_flex("compiled", cpu, False, 0.0)
    with pytest.raises(ValueError, match="flex cannot train on the CPU"):  # no backward there
        use_flex("flex", cpu, training=True, dropout=0.0)
    with torch.no_grad():
        assert use_flex("flex", cpu, training=True, dropout=0.0)
    with pytest.raises(ValueError, match=r"attention impl must be one of .*'auto'.*got 'fast'"):
        PoolingformerSelfAttention(C, HEADS, 4, 8, 5, 4, impl="fast")
    module = PoolingformerSelfAttention(C, HEADS, 4, 8, 5, 4, dropout=0.1, impl="flex").train()
    with pytest.raises(ValueError, match="no attention dropout"), torch.no_grad():  # (no_grad: CPU)
        module(torch.randn(10, 1, C))


def test_compiled_module_forward_and_backward_match_reference():
    """impl="compiled" on the CPU: the eager kernels under torch.compile (inductor), values and
    gradients. The smallest shapes: compiling forward and backward takes about 20 s on 2 cores."""
    torch.manual_seed(4)
    module = PoolingformerSelfAttention(C, HEADS, w1=6, w2=20, kernel=5, stride=4, pooling="ldconv",
                                        global_first_token=True, impl="compiled").eval()
    run_against_reference(module, 83, 3, "mixed", backward=True)
