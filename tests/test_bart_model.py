"""poolingformer_bart: architectures, encoder layer selection, equivalence with Fairseq's stock
encoder layer, checkpoint activations, global tokens, batch/padding invariance, generation."""

import argparse
import importlib

import pytest
import torch

import fairseq_poolingformer  # noqa: F401  (registers the model)
from fairseq.models import ARCH_CONFIG_REGISTRY
from fairseq.models.transformer import TransformerConfig
from fairseq.modules import MultiheadAttention
from fairseq.modules.transformer_layer import TransformerEncoderLayerBase
from fairseq.sequence_generator import SequenceGenerator

from fairseq_poolingformer.models.encoder import (
    PoolingformerConfig,
    PoolingformerEncoderLayer,
    add_poolingformer_args,
    lean_dropout,
    parse_layer_spec,
)
from fairseq_poolingformer.modules import PoolingformerSelfAttention, SlidingWindowSelfAttention
from saved_memory import saved_bytes
from tiny_bart import VOCAB, TinyTask, build, padded

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


# ----------------------------------------------------------------------------- configuration


def test_arch_defaults_follow_the_paper():
    large = argparse.Namespace()
    ARCH_CONFIG_REGISTRY["poolingformer_bart_large"](large)
    assert (large.encoder_layers, large.encoder_embed_dim, large.decoder_layers) == (12, 1024, 12)
    assert large.max_source_positions == 16384 and large.max_target_positions == 1024
    pf = PoolingformerConfig.from_args(large)
    assert (pf.w1, pf.w2, pf.kernel, pf.stride, pf.pooling, pf.global_tokens) == (128, 512, 5, 4, "ldconv", "first")
    assert pf.two_level_layers(12) == frozenset(range(5, 11)) and not pf.mix and not pf.share_weights

    base = argparse.Namespace()
    ARCH_CONFIG_REGISTRY["poolingformer_bart_base"](base)
    assert (base.encoder_layers, base.encoder_embed_dim, base.max_source_positions) == (6, 768, 16384)
    assert PoolingformerConfig.from_args(base).two_level_layers(6) == frozenset({2, 3, 4})

    # flags win over the arch defaults
    given = argparse.Namespace(pf_w1=64, pf_layers="0,11", pf_pooling="max", pf_mix=True)
    ARCH_CONFIG_REGISTRY["poolingformer_bart_large"](given)
    pf = PoolingformerConfig.from_args(given)
    assert (pf.w1, pf.pooling, pf.mix, pf.two_level_layers(12)) == (64, "max", True, frozenset({0, 11}))


def test_flags_parse():
    parser = argparse.ArgumentParser(argument_default=argparse.SUPPRESS)
    add_poolingformer_args(parser)
    args = parser.parse_args(["--pf-w1", "32", "--pf-w2", "256", "--pf-kernel", "3", "--pf-stride", "2",
                              "--pf-pooling", "mean_ldconv", "--pf-layers", "6-11", "--pf-mix",
                              "--pf-share-weights", "--pf-global", "none"])
    pf = PoolingformerConfig.from_args(args)
    assert pf == PoolingformerConfig(32, 256, 3, 2, "mean_ldconv", "6-11", True, True, "none")
    with pytest.raises(SystemExit):
        parser.parse_args(["--pf-pooling", "avg"])


@pytest.mark.parametrize("spec, expected", [
    ("6-11", set(range(6, 12))), ("0,2,4-5", {0, 2, 4, 5}), (" 3 ", {3}), ("all", set(range(12))),
    ("none", set()), ("", set()), ("5-5,5", {5}),
])
def test_parse_layer_spec(spec, expected):
    assert parse_layer_spec(spec, 12) == frozenset(expected)


@pytest.mark.parametrize("spec, message", [
    ("6-12", r"selects layer 12, but the encoder has 12 layers"),
    ("-1", r"cannot parse"),
    ("7-3", r"empty"),
    ("a-b", r"cannot parse 'a-b'"),
    ("1-2-3", r"cannot parse"),
])
def test_parse_layer_spec_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_layer_spec(spec, 12)


def test_bad_knobs_name_the_flag():
    with pytest.raises(ValueError, match=r"--pf-w1 must be a positive int, got 0"):
        PoolingformerConfig(w1=0)
    with pytest.raises(ValueError, match=r"--pf-pooling must be one of"):
        PoolingformerConfig(pooling="avg")
    with pytest.raises(ValueError, match=r"--pf-layers '6-11' selects layer 11, but the encoder has 2"):
        build(pf_layers="6-11")


# ----------------------------------------------------------------------------- structure


def test_layer_types_and_stock_decoder():
    model, _ = build("poolingformer_bart_large", encoder_embed_dim=32, encoder_ffn_embed_dim=64,
                     encoder_attention_heads=2, decoder_attention_heads=2)
    attns = [layer.self_attn for layer in model.encoder.layers]
    two_level = attns[5:11]  # the paper's 6th to 11th layers; the 12th is level 1 only
    assert all(type(a) is SlidingWindowSelfAttention for a in attns[:5] + attns[11:])
    assert all(type(a) is PoolingformerSelfAttention for a in two_level)
    assert all((a.w1, a.w2, a.kernel, a.stride, a.pooling) == (128, 512, 5, 4, "ldconv") for a in two_level)
    assert all(a.global_first_token for a in attns)
    assert model.encoder.two_level_layer_indices() == list(range(5, 11))
    for layer in model.decoder.layers:
        assert type(layer.self_attn) is MultiheadAttention and type(layer.encoder_attn) is MultiheadAttention
    # BART's learned positions: 2 reserved rows + 16384
    assert model.encoder.embed_positions.weight.shape == (16384 + 2, 32)
    assert model.encoder.max_positions() == 16384


def test_16k_positions_forward_and_backward():
    model, _ = build(max_source_positions=16384)
    model.train()
    src = padded([16384, 9000])
    prev = torch.randint(4, VOCAB + 4, (2, 5))
    logits, _ = model(src, torch.tensor([16384, 9000]), prev)
    assert logits.shape == (2, 5, VOCAB + 4) and torch.isfinite(logits).all()
    logits.float().logsumexp(-1).mean().backward()
    pos_grad = model.encoder.embed_positions.weight.grad  # rows 2 + p for p < 16384
    assert pos_grad[2 + 16383].abs().sum() > 0 and pos_grad[1].abs().sum() == 0  # padding row unused
    level2 = model.encoder.layers[1].self_attn
    assert level2.k_pool_weight.grad.abs().sum() > 0 and level2.out2_proj.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- equivalences


@pytest.mark.parametrize("normalize_before", [False, True])
def test_layer_equals_stock_fairseq_layer_when_window_covers_input(normalize_before):
    """With w1 >= T (and level 2 contributing zero) our layer is Fairseq's layer exactly."""
    args = argparse.Namespace(encoder_normalize_before=normalize_before, dropout=0.0)
    ARCH_CONFIG_REGISTRY["poolingformer_bart_tiny"](args)
    cfg = TransformerConfig.from_namespace(args)
    torch.manual_seed(0)
    stock = TransformerEncoderLayerBase(cfg)
    pf_cfg = PoolingformerConfig(w1=64, w2=64, kernel=5, stride=4, pooling="ldconv", layers="0")
    ours = PoolingformerEncoderLayer(cfg, pf_cfg, layer_idx=0)
    missing, unexpected = ours.load_state_dict(stock.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("self_attn.") for k in missing)
    ours.self_attn.init_level2_from_level1()
    x = torch.randn(50, 3, 64, requires_grad=True)  # (T, B, C)
    pad = padded([50, 31, 7]).eq(1)  # (B, T)
    out_ref = stock(x, pad)
    out = ours(x, pad)
    real = ~pad.t()
    torch.testing.assert_close(out[real], out_ref[real], rtol=0, atol=1e-5)
    g_ref, = torch.autograd.grad(out_ref[real].sum(), x)
    g, = torch.autograd.grad(out[real].sum(), x)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-4)


def test_checkpoint_activations_same_outputs_and_gradients():
    model_a, _ = build(seed=1)
    model_b, args = build(seed=2, checkpoint_activations=True)
    model_b.load_state_dict(model_a.state_dict())
    assert hasattr(model_b.encoder.layers[0], "precheckpoint_forward")
    src = padded([120, 77])
    prev = torch.randint(4, VOCAB + 4, (2, 6))
    grads = []
    for model in (model_a, model_b):
        model.train()
        logits, _ = model(src, torch.tensor([120, 77]), prev)
        logits.logsumexp(-1).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6, msg=name)


def test_output_independent_of_batch_and_padding_side():
    model, _ = build(seed=3)
    model.eval()
    lengths = [200, 61, 140]
    with torch.no_grad():
        batch_left = model.encoder(padded(lengths, left=True))["encoder_out"][0]  # (T, B, C)
        batch_right = model.encoder(padded(lengths, left=False))["encoder_out"][0]
        for i, n in enumerate(lengths):
            alone = model.encoder(padded(lengths, left=True)[i:i + 1, -n:])["encoder_out"][0][:, 0]
            torch.testing.assert_close(batch_left[-n:, i], alone, rtol=0, atol=1e-5)
            torch.testing.assert_close(batch_right[:n, i], alone, rtol=0, atol=1e-5)


def test_global_mask_reaches_every_layer_and_changes_the_output():
    model, _ = build(seed=4)
    model.eval()
    seen = []
    for layer in model.encoder.layers:
        layer.self_attn.register_forward_pre_hook(
            lambda mod, args, kwargs: seen.append(kwargs.get("global_mask")), with_kwargs=True)
    src = padded([100, 100])
    glob = torch.zeros_like(src, dtype=torch.bool)
    glob[:, 90] = True  # a token far outside token 0's window (w1 16)
    with torch.no_grad():
        plain = model.encoder(src)["encoder_out"][0]
        assert seen == [None, None]
        with_global = model.encoder(src, global_mask=glob)["encoder_out"][0]
    assert len(seen) == 4 and all(m is glob for m in seen[2:])
    assert (plain[0] - with_global[0]).abs().max() > 1e-3  # token 0 now sees token 90
    with pytest.raises(ValueError, match="global_mask has shape"):
        model.encoder(src, global_mask=glob[:, :50])


def test_forward_scriptable_honours_the_global_mask():
    """Fairseq's other entry point computes what forward computes, global tokens included."""
    model, _ = build(seed=4)
    model.eval()
    src = padded([100, 73])
    glob = torch.zeros_like(src, dtype=torch.bool)
    glob[:, 90] = True  # a token far outside token 27's window (w1 16)
    with torch.no_grad():
        plain = model.encoder.forward_scriptable(src)["encoder_out"][0]
        scripted = model.encoder.forward_scriptable(src, global_mask=glob)["encoder_out"][0]
        direct = model.encoder(src, global_mask=glob)["encoder_out"][0]
    assert torch.equal(scripted, direct)
    assert (plain[27] - scripted[27]).abs().max() > 1e-3


def test_attn_mask_is_rejected():
    model, _ = build()
    with pytest.raises(ValueError, match="attn_mask must be None"):
        model.encoder.layers[0](torch.randn(10, 1, 64), None, attn_mask=torch.zeros(10, 10))


def test_fused_in_proj_weights_are_split_on_load():
    model, _ = build(seed=5)
    state = model.state_dict()
    prefix = "encoder.layers.1.self_attn."
    q, k, v = (state.pop(f"{prefix}{p}_proj.weight") for p in "qkv")
    qb, kb, vb = (state.pop(f"{prefix}{p}_proj.bias") for p in "qkv")
    state[f"{prefix}in_proj_weight"] = torch.cat([q, k, v])
    state[f"{prefix}in_proj_bias"] = torch.cat([qb, kb, vb])
    fresh, _ = build(seed=6)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.encoder.layers[1].self_attn.k_proj.weight, k, rtol=0, atol=0)
    torch.testing.assert_close(fresh.encoder.layers[1].self_attn.v_proj.bias, vb, rtol=0, atol=0)


# ----------------------------------------------------------------------------- memory


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_two_level_recomputes_level2_in_backward_exactly_and_keeps_no_more_than_level1(dropout):
    """Recomputing Y and level 2 in backward gives the same outputs and gradients bit for bit
    (dropout draws included), and the two-level layer then keeps what a level-1 layer keeps
    (plus level 2's mask), instead of about 5 more copies of x."""
    T, B, C = 300, 2, 64
    x = torch.randn(T, B, C)
    pad = padded([300, 211]).eq(1)
    results = {}
    for recompute in (True, False):
        torch.manual_seed(0)
        layer = PoolingformerSelfAttention(C, 4, w1=16, w2=64, kernel=5, stride=4, pooling="ldconv",
                                           dropout=dropout, global_first_token=True)
        layer.recompute_level2 = recompute
        xg = x.clone().requires_grad_()
        torch.manual_seed(1)
        (out, _), kept = saved_bytes(lambda: layer(xg, key_padding_mask=pad))
        grads = torch.autograd.grad(out.pow(2).sum(), [xg] + list(layer.parameters()))
        results[recompute] = (out, grads, kept)
    torch.manual_seed(0)
    level1 = SlidingWindowSelfAttention(C, 4, w1=16, dropout=dropout, global_first_token=True)
    _, level1_kept = saved_bytes(lambda: level1(x.clone().requires_grad_(), key_padding_mask=pad))
    assert torch.equal(results[True][0], results[False][0])
    assert all(torch.equal(a, b) for a, b in zip(results[True][1], results[False][1]))
    x_bytes = x.numel() * 4
    assert results[True][2] <= level1_kept + x_bytes // 2
    assert results[False][2] >= results[True][2] + 3 * x_bytes


def test_what_backward_computes_again_depends_on_checkpoint_activations():
    """Level 2 is computed again in backward only under checkpointing; the FFN's activation
    only without it (a checkpointed layer's backward recomputes the whole layer anyway)."""
    for checkpoint in (False, True):
        model, _ = build(seed=10, checkpoint_activations=checkpoint)
        two_level = [m for m in model.modules() if isinstance(m, PoolingformerSelfAttention)]
        assert two_level and all(m.recompute_level2 == checkpoint for m in two_level)
        layers = [m for m in model.modules() if isinstance(m, PoolingformerEncoderLayer)]
        assert len(layers) == len(model.encoder.layers)
        assert all(layer.recompute_activation != checkpoint for layer in layers)


@pytest.mark.parametrize("activation_dropout", [0.0, 0.25])
def test_encoder_ffn_computes_its_activation_again_in_backward(monkeypatch, activation_dropout):
    """The encoder layers' FFN gives Fairseq's composition's outputs and gradients bit for bit
    and keeps one (T, B, ffn) float tensor less per layer (the activation's output)."""
    encoder_module = importlib.import_module("fairseq_poolingformer.models.encoder")
    src = padded([120, 77])
    results = []
    for fused in (True, False):
        if not fused:
            monkeypatch.setattr(encoder_module, "activation_linear",
                                lambda h, act, drop, fc, recompute: fc(lean_dropout(drop, act(h))))
        model, args = build(seed=12, activation_dropout=activation_dropout)
        model.train()
        torch.manual_seed(4)
        x, kept = saved_bytes(lambda: model.encoder(src)["encoder_out"][0])
        grads = torch.autograd.grad(x.pow(2).sum(), list(model.encoder.parameters()))
        results.append((x, grads, kept))
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))
    layers, T, B = args.encoder_layers, src.shape[1], src.shape[0]
    assert results[1][2] - results[0][2] >= layers * T * B * args.encoder_ffn_embed_dim * 4


def test_unpadded_sources_return_no_padding_mask_and_decode_the_same():
    """Without padding the encoder returns no padding mask (Fairseq's convention), so the
    decoder's cross-attention skips masking its scores: the same logits, gradients and beams as
    with an all-False mask; a padded batch still returns its mask."""
    model, _ = build(seed=13)
    src = padded([120, 120])
    assert model.encoder(src)["encoder_padding_mask"] == []
    assert torch.equal(model.encoder(padded([120, 80]))["encoder_padding_mask"][0], padded([120, 80]).eq(1))
    lengths = torch.tensor([120, 120])
    prev = padded([30, 30], seed=1)
    encoder_forward = model.encoder.forward

    def with_empty_mask(*args, **kwargs):
        out = encoder_forward(*args, **kwargs)
        return {**out, "encoder_padding_mask": [torch.zeros(src.shape, dtype=torch.bool)]}

    results = []
    model.train()
    for explicit in (False, True):
        model.encoder.forward = with_empty_mask if explicit else encoder_forward
        logits = model(src, lengths, prev)[0]
        grads = torch.autograd.grad(logits.pow(2).sum(), list(model.parameters()), allow_unused=True)
        results.append((logits, grads))
    model.eval()  # after training steps: beam search leaves its beam size in the decoder
    for explicit in (False, True):
        model.encoder.forward = with_empty_mask if explicit else encoder_forward
        gen = SequenceGenerator([model], TinyTask().target_dictionary, beam_size=3, max_len_b=6)
        with torch.no_grad():
            hyps = gen.generate([model], {"net_input": {"src_tokens": src, "src_lengths": lengths}})
        results.append([[h["tokens"] for h in beams] for beams in hyps])
    (la, ga), (lb, gb), ha, hb = results
    assert torch.equal(la, lb)
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(ga, gb))
    assert all(torch.equal(x, y) for bx, by in zip(ha, hb) for x, y in zip(bx, by))


# ----------------------------------------------------------------------------- generation


def test_encoder_runs_once_per_batch_in_beam_search():
    model, _ = build(seed=7)
    model.eval()
    calls = []
    encoder_forward = model.encoder.forward  # SequenceGenerator calls encoder.forward directly

    def counting_forward(*args, **kwargs):
        out = encoder_forward(*args, **kwargs)
        calls.append(out["encoder_out"][0].shape)
        return out

    model.encoder.forward = counting_forward
    decoder_steps = []
    decoder_forward = model.decoder.forward

    def counting_decoder_forward(*args, **kwargs):
        decoder_steps.append(kwargs.get("incremental_state") is not None)
        return decoder_forward(*args, **kwargs)

    model.decoder.forward = counting_decoder_forward
    src = padded([150, 90, 33])
    dictionary = TinyTask().target_dictionary
    gen = SequenceGenerator([model], dictionary, beam_size=5, len_penalty=2.0, min_len=8, max_len_b=12)
    with torch.no_grad():
        hyps = gen.generate([model], {"net_input": {"src_tokens": src, "src_lengths": torch.tensor([150, 90, 33])}})
    assert len(hyps) == 3 and all(len(h) == 5 and len(h[0]["tokens"]) >= 8 for h in hyps)
    assert calls == [torch.Size([150, 3, 64])]  # once, for the 3 sources (not per step or beam)
    assert len(decoder_steps) >= 8 and all(decoder_steps)  # the decoder: once per step, incremental


def test_bf16_forward_is_finite():
    model, _ = build(seed=8)
    model = model.to(torch.bfloat16).eval()
    with torch.no_grad():
        logits, _ = model(padded([300, 100]), torch.tensor([300, 100]), torch.randint(4, VOCAB + 4, (2, 4)))
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()
