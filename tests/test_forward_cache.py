"""ForwardCache: an encoder forward builds each mask once and every layer (and backward) shares
it, computing exactly what layers that build their own compute; checkpointed layers keep none."""

import importlib

import pytest
import torch

from fairseq_poolingformer.modules import ForwardCache
from tiny_bart import build, padded

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def test_encoder_builds_its_masks_once_per_forward_and_computes_the_same(monkeypatch):
    """Six layers (three two-level), one level-1 plan and one level-2 plan; outputs and
    gradients are those of layers that each build their own masks."""
    model, _ = build(seed=9, encoder_layers=6, pf_layers="2-4", global_tokens="first")
    model.train()
    built = []
    for module, name in (("sliding_window", "level1_plan"), ("pooling_attention", "segment_plan")):
        module = importlib.import_module(f"fairseq_poolingformer.modules.{module}")
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _f=original, _n=name, **k: built.append(_n) or _f(*a, **k))
    src = padded([150, 97])
    results = []
    for share in (True, False):
        built.clear()
        if not share:  # every layer on its own, as a caller without a cache gets it
            for layer in model.encoder.layers:
                layer.forward = lambda *a, _f=layer.forward, **k: _f(*a, **{**k, "cache": None})
        x = model.encoder(src)["encoder_out"][0]
        grads = torch.autograd.grad(x.pow(2).sum(), list(model.encoder.parameters()))
        results.append((x, grads, sorted(built)))
    assert results[0][2] == ["level1_plan", "segment_plan"]
    assert results[1][2] == ["level1_plan"] * 6 + ["segment_plan"] * 3  # 3 two-level layers
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))


def test_checkpointed_layers_build_their_own_masks(monkeypatch):
    """Under --checkpoint-activations no cache outlives a layer: each layer's forward and its
    recompute in backward build their own masks (which then live only while that layer's
    backward runs), and the gradients are those of the uncheckpointed model."""
    module = importlib.import_module("fairseq_poolingformer.modules.sliding_window")
    built = []
    original = module.level1_plan
    monkeypatch.setattr(module, "level1_plan", lambda *a, **k: built.append(1) or original(*a, **k))
    grads = []
    for checkpoint in (False, True):
        model, _ = build(seed=11, checkpoint_activations=checkpoint)
        model.train()
        built.clear()
        x = model.encoder(padded([90, 64]))["encoder_out"][0]
        x.pow(2).sum().backward()  # fairseq's checkpointing does not take autograd.grad
        grads.append([p.grad for p in model.encoder.parameters()])
        layers = len(model.encoder.layers)
        assert len(built) == (2 * layers if checkpoint else 1)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_forward_cache_builds_each_key_once():
    cache, calls = ForwardCache(), []
    assert cache.get("a", lambda: calls.append(1) or "A") == "A"
    assert cache.get("a", lambda: calls.append(2) or "B") == "A"
    assert cache.get("b", lambda: "B") == "B" and calls == [1] and len(cache) == 2
