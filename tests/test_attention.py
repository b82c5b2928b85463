"""The fast attention against its specification, the dense reference (modules/reference.py), on
the spec's corner cases.

Tests marked ``device`` run the fast code on ``PF_TEST_DEVICE`` in ``PF_TEST_DTYPE`` (default:
CPU fp32; see tests/device.py) against the reference on the CPU in fp32.
"""

import copy

import pytest
import torch

from fairseq_poolingformer.modules import (
    PoolingformerSelfAttention,
    SlidingWindowSelfAttention,
    pooling_attention,
    sliding_window_attention,
)
from fairseq_poolingformer.modules.reference import ref_pooling_attention, ref_self_attention, ref_sliding_window
from device import DEVICE, DTYPE, atol, rounded, to_device, to_host

ATOL = 1e-5
HEADS, DIM = 2, 8


def make_padding(kind: str, batch: int, length: int) -> torch.Tensor:
    """(B, T) bool padding masks: none, left (Fairseq's default), right, or both within a batch."""
    mask = torch.zeros(batch, length, dtype=torch.bool)
    if kind == "none":
        return mask
    for b in range(1, batch):
        pad = min(length - 1, 3 * b + 1)
        if kind == "left" or (kind == "mixed" and b % 2):
            mask[b, :pad] = True
        else:
            mask[b, length - pad:] = True
    return mask


def make_globals(kind: str, padding: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: none, the first real token, or scattered real tokens."""
    batch, length = padding.shape
    glob = torch.zeros(batch, length, dtype=torch.bool)
    for b in range(batch):
        real = (~padding[b]).nonzero().flatten()
        if kind == "first":
            glob[b, real[0]] = True
        elif kind == "scattered":
            glob[b, real[:: max(1, len(real) // 3)][:3]] = True
            glob[b, real[-1]] = True
    return glob


def qkv(batch, length, seed=0, dtype=torch.float32, grad=False):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, HEADS, length, DIM, generator=g, dtype=dtype).requires_grad_(grad) for _ in range(3)]


def assert_close(a, b, atol=ATOL):
    assert a.shape == b.shape
    diff = (a - b).abs().max().item()
    assert diff <= atol, f"max abs diff {diff:.3g} > {atol}"


def assert_grads_close(fast, ref):
    """fast: gradient from the device run; ref: the reference's (CPU fp32). Gradients that sum
    over many rows are compared relative to their scale."""
    assert_close(to_host(fast), ref, atol=atol() * max(1.0, ref.abs().max().item()))


def on_device(*tensors):
    return [to_device(t) for t in tensors]


def max_ties_possible(pooling: str) -> bool:
    """In fp16/bf16, equal values inside a pooling segment are common; the gradient of max is
    then any subgradient, and Torch's pick need not be the reference's."""
    return pooling == "max" and DTYPE != torch.float32


# ----------------------------------------------------------------------------- level 1
def with_padding(shapes, paddings):
    """(shape..., padding) combinations; a 1-token batch cannot carry padding."""
    return [(*shape, pad) for shape in shapes for pad in paddings if shape[0] > 1 or pad == "none"]


@pytest.mark.parametrize(
    "length,w1,padding",
    # T < w1, T not a multiple of any window
    with_padding([(1, 4), (7, 16), (37, 4), (100, 7), (130, 1), (50, 64), (300, 32)], ["none", "left", "right", "mixed"]),
)
@pytest.mark.parametrize("globals_", ["none", "first", "scattered"])
@pytest.mark.device
def test_sliding_window_matches_reference(length, w1, padding, globals_):
    pad = make_padding(padding, 3, length)
    glob = make_globals(globals_, pad)
    q, k, v = (rounded(t) for t in qkv(3, length))
    out = to_host(sliding_window_attention(*on_device(q, k, v), w1, key_padding_mask=to_device(pad),
                                           global_mask=to_device(glob)))
    ref = ref_sliding_window(q, k, v, w1, pad, glob)
    assert_close(out, ref, atol())
    assert (out.transpose(1, 2)[pad] == 0).all(), "padded query rows must be zero"


@pytest.mark.parametrize("globals_", ["none", "scattered"])
@pytest.mark.device
def test_sliding_window_gradients_match_reference(globals_):
    pad = make_padding("mixed", 3, 77)
    glob = make_globals(globals_, pad)
    ref = [rounded(t) for t in qkv(3, 77, grad=True)]
    fast = on_device(*ref)
    upstream = rounded(torch.randn(3, HEADS, 77, DIM))
    (sliding_window_attention(*fast, 9, to_device(pad), to_device(glob)) * to_device(upstream)).sum().backward()
    (ref_sliding_window(*ref, 9, pad, glob) * upstream).sum().backward()
    for a, b in zip(fast, ref):
        assert_grads_close(a.grad, b.grad)


# ----------------------------------------------------------------------------- level 2
def pool_weights(pooling, seed=1):
    if pooling not in ("ldconv", "mean_ldconv"):
        return None, None
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(5, HEADS * DIM, generator=g) * 0.5 for _ in range(2)]


@pytest.mark.parametrize("pooling", ["mean", "max", "ldconv", "mean_ldconv"])
@pytest.mark.parametrize(
    "length,w2,padding",
    with_padding([(1, 3), (23, 6), (23, 1000), (141, 10), (141, 40), (260, 130), (700, 64)], ["none", "left", "mixed"]),
)
@pytest.mark.device
def test_pooling_attention_matches_reference(pooling, length, w2, padding):
    pad = make_padding(padding, 3, length)
    kw, vw = (rounded(w) if w is not None else None for w in pool_weights(pooling))
    q, k, v = (rounded(t) for t in qkv(3, length, seed=2))
    out = pooling_attention(*on_device(q, k, v), w2, 5, 4, pooling, to_device(pad), *on_device(kw, vw), block=32)
    ref = ref_pooling_attention(q, k, v, w2, 5, 4, pooling, pad, kw, vw)
    assert_close(to_host(out), ref, atol())


@pytest.mark.parametrize("kernel,stride", [(1, 1), (3, 3), (4, 1), (2, 2), (6, 4), (5, 5)])
@pytest.mark.device
def test_pooling_attention_kernel_stride(kernel, stride):
    pad = make_padding("mixed", 2, 61)
    q, k, v = (rounded(t) for t in qkv(2, 61, seed=3))
    for pooling in ("mean", "ldconv"):
        weights = [rounded(torch.randn(kernel, HEADS * DIM)) for _ in range(2)] if pooling == "ldconv" else [None, None]
        out = pooling_attention(*on_device(q, k, v), 9, kernel, stride, pooling, to_device(pad), *on_device(*weights),
                                block=16)
        assert_close(to_host(out), ref_pooling_attention(q, k, v, 9, kernel, stride, pooling, pad, *weights), atol())


@pytest.mark.parametrize("pooling", ["mean", "max", "ldconv", "mean_ldconv"])
@pytest.mark.device
def test_pooling_attention_gradients_match_reference(pooling):
    pad = make_padding("left", 2, 90)
    ref_weights = [rounded(w.requires_grad_()) if w is not None else None for w in pool_weights(pooling)]
    fast_weights = on_device(*ref_weights)
    ref = [rounded(t) for t in qkv(2, 90, seed=4, grad=True)]
    fast = on_device(*ref)
    upstream = rounded(torch.randn(2, HEADS, 90, DIM))
    (pooling_attention(*fast, 17, 5, 4, pooling, to_device(pad), *fast_weights, block=32)
     * to_device(upstream)).sum().backward()
    (ref_pooling_attention(*ref, 17, 5, 4, pooling, pad, *ref_weights) * upstream).sum().backward()
    compared = (fast[:1], ref[:1]) if max_ties_possible(pooling) else (fast + fast_weights, ref + ref_weights)
    for a, b in zip(*compared):
        if a is not None:
            assert_grads_close(a.grad, b.grad)


# ----------------------------------------------------------------------------- modules
MODULE_CASES = [
    dict(pooling="mean"),
    dict(pooling="max"),
    dict(pooling="ldconv"),
    dict(pooling="mean_ldconv"),
    dict(pooling="ldconv", mix=True),
    dict(pooling="ldconv", share_weights=True),
    dict(pooling="mean", mix=True, share_weights=True),
]


@pytest.mark.parametrize("options", MODULE_CASES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("global_first_token", [False, True])
@pytest.mark.device
def test_poolingformer_module_matches_reference(options, global_first_token):
    torch.manual_seed(0)
    built = PoolingformerSelfAttention(16, HEADS, w1=6, w2=20, kernel=5, stride=4,
                                       global_first_token=global_first_token, **options).eval()
    module = copy.deepcopy(built).to(DEVICE, DTYPE)
    reference = copy.deepcopy(module).float().cpu()  # the same (rounded) weights, in fp32
    x_ref = rounded(torch.randn(83, 3, 16, requires_grad=True))
    x = to_device(x_ref)
    pad = make_padding("mixed", 3, 83)
    out, attn = module(x, x, x, key_padding_mask=to_device(pad))
    assert attn is None
    ref = ref_self_attention(reference, x_ref, pad)
    assert_close(to_host(out), ref, atol())
    if max_ties_possible(options["pooling"]):
        return  # every gradient flows through the pooled keys/values (see max_ties_possible)
    assert_module_grads_close(out, ref, x, x_ref, module, reference)


def assert_module_grads_close(out, ref, x, x_ref, module, reference):
    """Backward of the same random upstream gradient through the device module's output and the
    reference's; the input and parameter gradients compared."""
    upstream = rounded(torch.randn(ref.shape))
    (out * to_device(upstream)).sum().backward()
    (ref * upstream).sum().backward()
    assert_grads_close(x.grad, x_ref.grad)
    for p_fast, p_ref in zip(module.parameters(), reference.parameters()):
        # weight gradients sum over all B*T rows: compared relative to their scale
        assert_grads_close(p_fast.grad, p_ref.grad)


def test_sliding_window_module_with_explicit_globals():
    torch.manual_seed(0)
    module = SlidingWindowSelfAttention(16, HEADS, w1=5).eval()
    x = torch.randn(40, 2, 16)
    pad = make_padding("left", 2, 40)
    glob = make_globals("scattered", pad)
    out, _ = module(x, key_padding_mask=pad, global_mask=glob)
    assert_close(out, ref_self_attention(module, x, pad, glob))


def identity_projections(module):
    """Every projection of the module the identity (bias-free modules: x @ I is x exactly)."""
    with torch.no_grad():
        for proj in module.modules():
            if isinstance(proj, torch.nn.Linear):
                proj.weight.copy_(torch.eye(proj.weight.shape[0]))
    return module


@pytest.mark.parametrize("pooling", ["mean", "max", "ldconv", "mean_ldconv"])
def test_modules_run_the_functions_code(pooling):
    """With identity projections the modules are the functions bit for bit: one code path. The
    two-level module with Mix (level 2 reads X) is level 1 plus level 2 on the same x."""
    torch.manual_seed(0)
    x = torch.randn(97, 3, 16)
    pad = make_padding("mixed", 3, 97)
    glob = make_globals("scattered", pad)
    heads = x.view(97, 3, HEADS, 8).permute(1, 2, 0, 3)  # (B, H, T, D)
    merge = lambda t: t.permute(2, 0, 1, 3).reshape(97, 3, 16)  # (B, H, T, D) -> (T, B, C)
    level1 = identity_projections(SlidingWindowSelfAttention(16, HEADS, w1=6, bias=False)).eval()
    y = merge(sliding_window_attention(heads, heads, heads, 6, pad, glob))
    assert torch.equal(level1(x, key_padding_mask=pad, global_mask=glob)[0], y)
    two_level = identity_projections(PoolingformerSelfAttention(16, HEADS, w1=6, w2=20, kernel=5, stride=4,
                                                                pooling=pooling, mix=True, bias=False)).eval()
    weights = [two_level.k_pool_weight, two_level.v_pool_weight] if two_level.k_pool_weight is not None else []
    z = merge(pooling_attention(heads, heads, heads, 20, 5, 4, pooling, pad, *weights))
    assert torch.equal(two_level(x, key_padding_mask=pad, global_mask=glob)[0], y + z)


# ----------------------------------------------------------------------------- layout invariance
@pytest.mark.parametrize("pooling", ["max", "ldconv"])
def test_output_independent_of_batch_and_padding_side(pooling):
    """A sequence's output must not depend on its batch nor on left vs right padding."""
    torch.manual_seed(0)
    module = PoolingformerSelfAttention(16, HEADS, w1=4, w2=11, kernel=5, stride=4, pooling=pooling,
                                        global_first_token=True).eval()
    seq = torch.randn(29, 1, 16)
    alone, _ = module(seq)
    other = torch.randn(41, 1, 16)
    for side in ("left", "right"):
        batch = torch.zeros(41, 2, 16)
        pad = torch.zeros(2, 41, dtype=torch.bool)
        rows = slice(41 - 29, 41) if side == "left" else slice(0, 29)
        batch[rows, 0] = seq[:, 0]
        batch[:, 1] = other[:, 0]
        pad[0] = True
        pad[0, rows] = False
        out, _ = module(batch, key_padding_mask=pad)
        assert_close(out[rows, 0], alone[:, 0])
        assert (out[~pad[0], 0] != 0).any()
        assert (out[pad[0], 0] == 0).all()


# ----------------------------------------------------------------------------- precision, masking
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_finite(dtype):
    torch.manual_seed(0)
    module = PoolingformerSelfAttention(32, 4, w1=8, w2=24, kernel=5, stride=4, pooling="ldconv",
                                        global_first_token=True).to(dtype)
    x = (torch.randn(150, 2, 32) * 30).to(dtype).requires_grad_()
    pad = make_padding("left", 2, 150)
    out, _ = module(x, key_padding_mask=pad)
    assert out.dtype == dtype and torch.isfinite(out).all()
    out.float().sum().backward()
    assert torch.isfinite(x.grad).all()
    # accuracy on ordinary activations (large ones above make fp16 rounding flip near-ties)
    x = torch.randn(150, 2, 32).to(dtype)
    out, _ = module(x, key_padding_mask=pad)
    ref = ref_self_attention(module.float(), x.float(), pad)
    assert (out.float() - ref).abs().max() < (0.02 if dtype == torch.float16 else 0.1)


def test_fully_padded_row_and_unreachable_queries_give_zeros_not_nan():
    q, k, v = qkv(2, 12, grad=True)
    pad = torch.zeros(2, 12, dtype=torch.bool)
    pad[1] = True  # a sequence made only of padding
    out1 = sliding_window_attention(q, k, v, 2, pad)
    # w2=1 with kernel 5: segment 0's centre is 2, token 0 sees no segment at all
    out2 = pooling_attention(q, k, v, 1, 5, 4, "mean", pad)
    assert torch.isfinite(out1).all() and torch.isfinite(out2).all()
    assert (out1[1] == 0).all() and (out2[1] == 0).all() and (out2[0, :, 0] == 0).all()
    (out1.sum() + out2.sum()).backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


# ----------------------------------------------------------------------------- linear memory
class _LargestTensor(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the largest tensor any op produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_no_quadratic_tensor_is_materialised():
    length, w1, w2 = 4096, 16, 64
    module = PoolingformerSelfAttention(16, HEADS, w1=w1, w2=w2, kernel=5, stride=4, pooling="ldconv",
                                        global_first_token=True)
    x = torch.randn(length, 1, 16, requires_grad=True)
    pad = torch.zeros(1, length, dtype=torch.bool)
    pad[0, :5] = True
    with _LargestTensor() as probe:
        out, _ = module(x, key_padding_mask=pad)
        out.sum().backward()
    # linear: a few (T x window) masks/blocks at most; a T x T tensor would be 16.8M elements
    assert probe.largest <= 8 * length * (2 * w1 + 64), probe.largest
    assert probe.largest < length * length // 20


# ----------------------------------------------------------------------------- bad input
BAD_CALLS = [
    (lambda q: sliding_window_attention(q[0], q, q, 4), "rank"),
    (lambda q: sliding_window_attention(q, q[:, :, :5], q, 4), "same shape"),
    (lambda q: sliding_window_attention(q, q, q, 0), "w1 must be a positive int, got 0"),
    (lambda q: sliding_window_attention(q, q, q, 4, key_padding_mask=torch.zeros(2, 9, dtype=torch.bool)),
     r"key_padding_mask must have shape \(B, T\) = \(2, 10\), got \(2, 9\)"),
    (lambda q: sliding_window_attention(q, q, q, 4, global_mask=torch.zeros(2, 10)), "global_mask must be a bool"),
    (lambda q: pooling_attention(q, q, q, 4, 5, 6), "stride must be <= kernel.*stride=6 > kernel=5"),
    (lambda q: pooling_attention(q, q, q, 4, 0, 1), "kernel must be a positive int, got 0"),
    (lambda q: pooling_attention(q, q, q, -1, 5, 4), "w2 must be a positive int, got -1"),
    (lambda q: pooling_attention(q, q, q, 4, 5, 4, "median"), "pooling must be one of"),
    (lambda q: pooling_attention(q, q, q, 4, 5, 4, "ldconv"), r"k_pool_weight of shape \(kernel, H\*D\) = \(5, 16\)"),
    (lambda q: pooling_attention(q, q, q, 4, 5, 4, "ldconv", None, torch.zeros(5, 8), torch.zeros(5, 16)),
     r"k_pool_weight must have shape \(kernel, H\*D\) = \(5, 16\), got \(5, 8\)"),
    (lambda q: sliding_window_attention(q, q, q, 4, key_padding_mask=torch.tensor([[False] * 4 + [True] + [False] * 5] * 2)),
     "padding between real tokens"),
]


@pytest.mark.parametrize("call,message", BAD_CALLS)
def test_bad_input_raises_clear_value_error(call, message):
    q = torch.zeros(2, HEADS, 10, DIM)
    with pytest.raises(ValueError, match=message):
        call(q)


def test_module_rejects_bad_calls():
    module = PoolingformerSelfAttention(16, HEADS, 4, 8, 5, 4)
    x = torch.randn(10, 2, 16)
    with pytest.raises(ValueError, match="attn_mask"):
        module(x, attn_mask=torch.zeros(10, 10))
    with pytest.raises(ValueError, match="self-attention only"):
        module(x, torch.randn(10, 2, 16))
    with pytest.raises(ValueError, match=r"query must have shape \(T, B, C=16\)"):
        module(torch.randn(10, 2, 8))
    with pytest.raises(ValueError, match="embed_dim must be divisible by num_heads"):
        PoolingformerSelfAttention(15, 2, 4, 8, 5, 4)
    with pytest.raises(ValueError, match="stride must be <= kernel"):
        PoolingformerSelfAttention(16, 2, 4, 8, 3, 4)
