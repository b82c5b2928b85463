"""poolingformer_roberta: archs, the global mask reaching every layer's attention (question tokens
really global), padding side invariance, the QA head against explicit loops, checkpoint heads."""
import argparse

import pytest
import torch

import fairseq_poolingformer  # noqa: F401
from fairseq import options, tasks
from fairseq.data import Dictionary
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.models import ARCH_MODEL_REGISTRY
from fairseq_poolingformer.models.poolingformer_roberta import (
    LongQAHead,
    PoolingformerRobertaModel,
    mean_spans,
    poolingformer_roberta_large,
    poolingformer_xlmr_large,
)
from fairseq_poolingformer.modules import PoolingformerSelfAttention, SlidingWindowSelfAttention


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dict")
    d = Dictionary()
    for i in range(50):
        d.add_symbol(f"w{i}")
    d.save(str(root / "dict.txt"))
    return str(root)


def build(data_dir, arch="poolingformer_roberta_tiny", *extra):
    argv = [data_dir, "--task", "long_qa", "--criterion", "long_qa", "--arch", arch, "--cpu",
            "--dropout", "0", "--attention-dropout", "0", *extra]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    task = tasks.setup_task(cfg.task)
    torch.manual_seed(0)
    model = task.build_model(cfg.model).eval()
    return model, task


def test_archs_registered_with_paper_settings():
    for arch in ("poolingformer_roberta_base", "poolingformer_roberta_large", "poolingformer_xlmr_large",
                 "poolingformer_roberta_tiny"):
        assert ARCH_MODEL_REGISTRY[arch] is PoolingformerRobertaModel
    for fill in (poolingformer_roberta_large, poolingformer_xlmr_large):
        args = argparse.Namespace()
        fill(args)
        assert (args.encoder_layers, args.encoder_embed_dim, args.encoder_attention_heads) == (24, 1024, 16)
        assert (args.pf_w1, args.pf_w2, args.pf_kernel, args.pf_stride) == (128, 512, 5, 4)
        assert args.pf_layers == "14-19" and args.max_positions == 4096
    explicit = argparse.Namespace(pf_layers="3", max_positions=8192)
    poolingformer_roberta_large(explicit)
    assert explicit.pf_layers == "3" and explicit.max_positions == 8192


def test_large_layer_layout(data_dir):
    # the large arch's 24-layer layout, at a small width so the test stays fast
    model, _ = build(data_dir, "poolingformer_roberta_large", "--encoder-embed-dim", "16",
                     "--encoder-ffn-embed-dim", "16", "--encoder-attention-heads", "2")
    layers = model.encoder.sentence_encoder.layers
    assert len(layers) == 24
    two_level = [i for i, l in enumerate(layers) if isinstance(l.self_attn, PoolingformerSelfAttention)]
    assert two_level == list(range(14, 20))  # the paper's 15th-20th
    assert all(isinstance(l.self_attn, SlidingWindowSelfAttention) for l in layers)
    a = layers[14].self_attn
    assert (a.w1, a.w2, a.kernel, a.stride) == (128, 512, 5, 4)
    assert model.encoder.max_positions() == 4096


def _tokens(T, B=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 54, (B, T), generator=g)
    src[:, 0] = 0
    return src


def test_question_tokens_are_global(data_dir):
    """With w1 = 4 and w2 = 8 in both layers, position 1 cannot see position T-2 unless the
    question tokens (0..5) are global: changing that far token must change position 1 exactly then."""
    model, _ = build(data_dir, "poolingformer_roberta_tiny", "--pf-w1", "4", "--pf-w2", "8", "--pf-kernel", "3",
                     "--pf-stride", "2", "--pf-layers", "0-1", "--pf-global", "none")
    T = 120
    src = _tokens(T)
    far = src.clone()
    far[0, T - 2] = 4 if src[0, T - 2] != 4 else 5
    question = torch.zeros(1, T, dtype=torch.bool)
    question[0, :6] = True
    none = torch.zeros_like(question)
    with torch.no_grad():
        run = lambda s, g: model(s, features_only=True, global_mask=g)[0]  # noqa: E731
        with_global = (run(src, question) - run(far, question)).abs()[0].amax(-1)
        without = (run(src, none) - run(far, none)).abs()[0].amax(-1)
    assert with_global[1] > 1e-5 and with_global[10] > 0  # question token, and a doc token via it
    assert without[:60].max() == 0.0                           # no path: exactly unchanged
    assert without[T - 2] > 0


def test_global_mask_reaches_every_layer(data_dir):
    model, _ = build(data_dir)
    seen = []
    hooks = [layer.self_attn.register_forward_hook(
        lambda m, args, kwargs, out: seen.append(kwargs.get("global_mask")), with_kwargs=True)
        for layer in model.encoder.sentence_encoder.layers]
    src = _tokens(30, B=2)
    g = torch.zeros(2, 30, dtype=torch.bool)
    g[:, :5] = True
    with torch.no_grad():
        model(src, features_only=True, global_mask=g)
    for h in hooks:
        h.remove()
    assert len(seen) == 2 and all(s is not None and torch.equal(s, g) for s in seen)


def test_left_and_right_padding_give_the_same_features(data_dir):
    model, task = build(data_dir, "poolingformer_roberta_tiny", "--pf-w1", "4", "--pf-w2", "8")
    pad = task.dictionary.pad()
    lengths = [37, 22]
    src = _tokens(max(lengths), B=2, seed=3)
    right, left = src.clone(), src.clone()
    gr, gl = torch.zeros_like(src, dtype=torch.bool), torch.zeros_like(src, dtype=torch.bool)
    for b, n in enumerate(lengths):
        T = max(lengths)
        right[b, n:] = pad
        left[b] = torch.cat([torch.full((T - n,), pad), src[b, :n]])
        gr[b, :4] = True
        gl[b, T - n:T - n + 4] = True
    with torch.no_grad():
        fr, _ = model(right, features_only=True, global_mask=gr)
        fl, _ = model(left, features_only=True, global_mask=gl)
        alone, _ = model(src[1:, :lengths[1]], features_only=True, global_mask=gr[1:, :lengths[1]])
    for b, n in enumerate(lengths):
        T = max(lengths)
        assert torch.allclose(fr[b, :n], fl[b, T - n:], atol=1e-5)
    assert torch.allclose(fr[1, :lengths[1]], alone[0], atol=1e-5)  # independent of the batch


def test_mean_spans_and_head_against_loops():
    g = torch.Generator().manual_seed(0)
    B, T, C = 2, 11, 6
    x = torch.randn(B, T, C, generator=g)
    spans = torch.tensor([[[0, 0], [2, 7], [10, 10]], [[3, 5], [0, 0], [0, 0]]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    means = mean_spans(x, spans)
    for b in range(B):
        for k in range(3):
            s, e = spans[b, k].tolist()
            assert torch.allclose(means[b, k], x[b, s:e + 1].mean(0), atol=1e-6)
    head = LongQAHead(C).eval()
    pad = torch.zeros(B, T, dtype=torch.bool)
    pad[1, 9:] = True
    out = head(x, pad, spans, mask)
    span = head.span_proj(x)
    assert torch.allclose(out["start"][0], span[0, :, 0]) and torch.allclose(out["end"][0], span[0, :, 1])
    assert (out["start"][1, 9:] < -1e8).all()
    for b in range(B):
        reps = [x[b, s:e + 1].mean(0) for (s, e), m in zip(spans[b].tolist(), mask[b]) if m]
        assert torch.allclose(out["long"][b, 0], head.no_candidate_proj(x[b, 0])[0], atol=1e-6)
        for k, r in enumerate(reps):
            assert torch.allclose(out["long"][b, k + 1], head.candidate_proj(r)[0], atol=1e-5)
        assert (out["long"][b, 1 + len(reps):] < -1e8).all()
        assert torch.allclose(out["answer_type"][b], head.type_proj(torch.stack(reps).mean(0)), atol=1e-5)
    # a window without candidates: the document representation falls back to <s>
    none = head(x, pad, spans[:, :0], mask[:, :0])
    assert none["long"].shape == (B, 1)
    assert torch.allclose(none["answer_type"], head.type_proj(x[:, 0]), atol=1e-6)


def test_checkpoint_without_qa_head_loads_and_keeps_a_saved_head(data_dir):
    model, _ = build(data_dir)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    other, _ = build(data_dir)
    # without the head's keys (a converted or MLM checkpoint): loads, head keeps its init
    no_head = {k: v for k, v in state.items() if not k.startswith("qa_heads.")}
    head_before = {k: v.clone() for k, v in other.qa_heads.state_dict().items()}
    other.load_state_dict(no_head, strict=True)
    assert all(torch.equal(v, other.qa_heads.state_dict()[k]) for k, v in head_before.items())
    assert torch.equal(other.encoder.sentence_encoder.embed_tokens.weight,
                       model.encoder.sentence_encoder.embed_tokens.weight)
    # with the head's keys: they are loaded
    other.load_state_dict(state, strict=True)
    assert torch.equal(other.qa_heads["long_qa"].type_proj.weight, model.qa_heads["long_qa"].type_proj.weight)
