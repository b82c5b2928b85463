"""--attention-impl on the models: the flag reaches every layer, old checkpoints load as auto,
the paths give the same encoder output, and BART-base builds with 65,536 source positions."""

import argparse

import pytest
import torch

import fairseq_poolingformer  # noqa: F401  (registers the models)

from fairseq_poolingformer.models.encoder import PoolingformerConfig, add_poolingformer_args
from tiny_bart import build as build_tiny, padded

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def build(arch="poolingformer_bart_tiny", **overrides):
    return build_tiny(arch, **overrides)[0]


def test_flag_reaches_every_layer_and_defaults_to_auto():
    parser = argparse.ArgumentParser()
    add_poolingformer_args(parser)
    assert parser.parse_args([]).attention_impl is None
    assert parser.parse_args(["--attention-impl", "flex"]).attention_impl == "flex"
    with pytest.raises(SystemExit):
        parser.parse_args(["--attention-impl", "fast"])
    # a checkpoint saved before the flag has no attention_impl: auto
    assert PoolingformerConfig.from_args(argparse.Namespace()).impl == "auto"
    with pytest.raises(ValueError, match="--attention-impl must be one of"):
        PoolingformerConfig(impl="triton")
    for impl in ("eager", "flex", "compiled"):
        model = build(attention_impl=impl)
        assert [layer.self_attn.impl for layer in model.encoder.layers] == [impl, impl]
    assert {layer.self_attn.impl for layer in build().encoder.layers} == {"auto"}


def test_flex_encoder_equals_eager_encoder():
    """The same weights, left-padded sources, the first token global: the two paths agree."""
    src = padded([150, 97, 20], left=True)
    lengths = src.ne(1).sum(dim=1)
    outputs = {}
    for impl in ("eager", "flex"):
        model = build(attention_impl=impl).eval()
        with torch.no_grad():
            out = model.encoder(src, lengths)
        outputs[impl] = out["encoder_out"][0]
    assert outputs["eager"].abs().mean() > 0.1
    torch.testing.assert_close(outputs["flex"], outputs["eager"], rtol=0, atol=2e-5)


def test_flex_with_attention_dropout_is_flagged_when_built_and_refused_in_training(caplog):
    """--attention-impl flex cannot honour --attention-dropout: one warning when the model is
    built, the ValueError at the first training step; auto trains with the eager kernels."""
    src = padded([40, 31], left=True)
    with caplog.at_level("WARNING", logger="fairseq_poolingformer.models.encoder"):
        model = build(attention_impl="flex", attention_dropout=0.1).train()
    assert [r.getMessage() for r in caplog.records if "has no attention dropout" in r.getMessage()] != []
    with pytest.raises(ValueError, match="flex cannot train on the CPU|no attention dropout"):
        model.encoder(src, src.ne(1).sum(dim=1))
    caplog.clear()
    with caplog.at_level("WARNING", logger="fairseq_poolingformer.models.encoder"):
        auto = build(attention_dropout=0.1).train()
    assert not caplog.records
    auto.encoder(src, src.ne(1).sum(dim=1))["encoder_out"][0].sum().backward()


def test_bart_base_builds_with_64k_source_positions():
    model = build("poolingformer_bart_base", max_source_positions=65536)
    assert model.encoder.max_positions() == 65536
    assert model.encoder.embed_positions.weight.shape == (65536 + 2, 768)
    assert [layer.two_level for layer in model.encoder.layers] == [False, False, True, True, True, False]
