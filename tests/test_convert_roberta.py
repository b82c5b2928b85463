"""convert roberta: a small Fairseq RoBERTa built here -> poolingformer_roberta. Positions are
loop-copied after the padding_idx + 1 reserved rows, level 2 starts from level 1, and with windows
that cover the input the converted encoder computes what the original computes."""
import os

import pytest
import torch

import fairseq_poolingformer  # noqa: F401
from fairseq import checkpoint_utils, options, tasks
from fairseq.data import Dictionary
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq_poolingformer.convert import cli
from fairseq_poolingformer.convert.core.output import save_checkpoint
from fairseq_poolingformer.convert.core.weights import is_level2_key
from fairseq_poolingformer.modules import PoolingformerSelfAttention

PRETRAINED_MAX = 40
NEW_MAX = 100


@pytest.fixture(scope="module")
def roberta(tmp_path_factory):
    """A stock Fairseq ``roberta`` (3 layers, 32 dims, 40 positions), random weights, saved as a
    Fairseq checkpoint with its dict.txt (masked_lm task: the embedding includes <mask>)."""
    root = tmp_path_factory.mktemp("roberta")
    d = Dictionary()
    for i in range(60):
        d.add_symbol(f"w{i}")
    d.save(str(root / "dict.txt"))
    argv = [str(root), "--task", "masked_lm", "--criterion", "masked_lm", "--arch", "roberta",
            "--encoder-layers", "3", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
            "--encoder-attention-heads", "4", "--max-positions", str(PRETRAINED_MAX),
            "--tokens-per-sample", str(PRETRAINED_MAX), "--cpu", "--seed", "5"]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    cfg = convert_namespace_to_omegaconf(args)
    torch.manual_seed(5)
    model = tasks.setup_task(cfg.task).build_model(cfg.model)
    with torch.no_grad():  # non-trivial layer norms and biases
        for name, p in model.named_parameters():
            if "layer_norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    model.eval()
    path = str(root / "model.pt")
    save_checkpoint(path, cfg, model)
    return {"root": root, "path": path, "dict": str(root / "dict.txt"), "model": model, "dictionary": d}


def _convert(roberta, out, *extra):
    return cli.main(["roberta", "--checkpoint", roberta["path"], "--dict", roberta["dict"], "--output-dir",
                     str(out), "--max-positions", str(NEW_MAX), "--arch", "poolingformer_roberta_tiny",
                     "--pf-w1", "64", "--pf-w2", "64", "--pf-kernel", "3", "--pf-stride", "2",
                     "--pf-layers", "0,2", *extra])


@pytest.fixture(scope="module")
def converted(roberta, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "pf"
    path = _convert(roberta, out)
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([path])
    model = models[0].eval()
    return {"path": path, "out": out, "model": model, "cfg": cfg, "task": task}


def test_positions_loop_copied_after_padding_offset(roberta, converted):
    old = roberta["model"].encoder.sentence_encoder.embed_positions.weight
    new = converted["model"].encoder.sentence_encoder.embed_positions.weight
    offset = roberta["dictionary"].pad() + 1
    assert offset == 2
    assert old.shape[0] == PRETRAINED_MAX + offset and new.shape[0] == NEW_MAX + offset
    assert torch.equal(new[:offset], old[:offset])
    for p in range(NEW_MAX):
        assert torch.equal(new[offset + p], old[offset + p % PRETRAINED_MAX]), p
    assert converted["model"].encoder.max_positions() == NEW_MAX


def test_level2_starts_from_level1_and_weights_load_by_name(roberta, converted):
    layers = converted["model"].encoder.sentence_encoder.layers
    assert [isinstance(l.self_attn, PoolingformerSelfAttention) for l in layers] == [True, False, True]
    old_layers = roberta["model"].encoder.sentence_encoder.layers
    for new, old in zip(layers, old_layers):
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            assert torch.equal(getattr(new.self_attn, name).weight, getattr(old.self_attn, name).weight)
        assert torch.equal(new.fc1.weight, old.fc1.weight)
        if isinstance(new.self_attn, PoolingformerSelfAttention):
            assert torch.equal(new.self_attn.q2_proj.weight, old.self_attn.q_proj.weight)
            assert torch.equal(new.self_attn.v2_proj.bias, old.self_attn.v_proj.bias)
            assert not new.self_attn.out2_proj.weight.any() and not new.self_attn.out2_proj.bias.any()
            assert not new.self_attn.k_pool_weight.any()  # ldconv: uniform weights at the start
    assert "long_qa" in converted["model"].qa_heads
    assert sorted(os.listdir(converted["out"])) == ["dict.txt", "model.pt"]


@pytest.mark.parametrize("lengths", [[PRETRAINED_MAX], [13, 40, 27]])
def test_converted_encoder_equals_original_on_short_inputs(roberta, converted, lengths):
    g = torch.Generator().manual_seed(len(lengths))
    d = roberta["dictionary"]
    T = max(lengths)
    src = torch.full((len(lengths), T), d.pad(), dtype=torch.long)
    for b, n in enumerate(lengths):
        src[b, :n] = torch.randint(d.nspecial, len(d), (n,), generator=g)
        src[b, 0], src[b, n - 1] = d.bos(), d.eos()
    global_mask = torch.zeros_like(src, dtype=torch.bool)
    global_mask[:, :4] = True  # question tokens: global, which changes nothing when w1 covers T
    with torch.no_grad():
        expected, _ = roberta["model"](src, features_only=True)
        got, _ = converted["model"](src, features_only=True, global_mask=global_mask)
    real = src.ne(d.pad())
    assert (got - expected)[real].abs().max().item() < 1e-5


def test_converted_checkpoint_continues_with_long_inputs(converted):
    """Beyond the pretrained length: runs, finite, and the QA head gives the right shapes."""
    T = NEW_MAX
    src = torch.randint(4, 60, (2, T))
    src[:, 0] = 0
    spans = torch.tensor([[[5, 20], [30, 90]], [[10, 10], [0, 0]]])
    mask = torch.tensor([[True, True], [True, False]])
    with torch.no_grad():
        out, _ = converted["model"](src, global_mask=src.new_zeros(src.shape, dtype=torch.bool),
                                    candidate_spans=spans, candidate_mask=mask, qa_head="long_qa")
    assert out["start"].shape == (2, T) and out["long"].shape == (2, 3) and out["answer_type"].shape == (2, 5)
    assert all(torch.isfinite(v).all() for v in out.values())


def test_convert_errors_leave_nothing(roberta, tmp_path):
    wrong = Dictionary()
    for i in range(10):
        wrong.add_symbol(f"x{i}")
    wrong.save(str(tmp_path / "wrong.txt"))
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match="wrong dict.txt for this checkpoint"):
        cli.main(["roberta", "--checkpoint", roberta["path"], "--dict", str(tmp_path / "wrong.txt"),
                  "--output-dir", str(out)])
    with pytest.raises(SystemExit, match="--pf-layers"):
        _convert(roberta, out, "--pf-layers", "7")
    assert not out.exists()
    assert [n for n in os.listdir(tmp_path) if n.startswith(".convert.")] == []


def test_reconverting_a_poolingformer_checkpoint_is_refused_unless_keep_level2(converted, tmp_path):
    """A converted / fine-tuned poolingformer_roberta checkpoint is refused (it used to be
    converted again with level 2 silently reset); --keep-level2 keeps level 2 and the QA head."""
    model = converted["model"]
    with torch.no_grad():  # as after fine-tuning: level 2 and the QA head trained
        for name, p in model.named_parameters():
            if is_level2_key(name) or name.startswith("qa_heads."):
                p.add_(0.1)
    tuned = str(tmp_path / "checkpoint_last.pt")
    save_checkpoint(tuned, converted["cfg"], model)
    dict_path = os.path.join(converted["out"], "dict.txt")
    base = ["roberta", "--checkpoint", tuned, "--dict", dict_path, "--output-dir", str(tmp_path / "out")]
    with pytest.raises(SystemExit, match=r"checkpoint_last.pt: already a Poolingformer checkpoint \(arch "
                                         r"'poolingformer_roberta_tiny', tensor encoder.sentence_encoder.layers.0."
                                         r"self_attn.k2_proj.bias\); converting it again would reset"):
        cli.main(base)
    assert not (tmp_path / "out").exists()
    path = cli.main(base + ["--keep-level2", "--max-positions", str(2 * NEW_MAX)])
    (again,), _, _ = checkpoint_utils.load_model_ensemble_and_task([path])
    old, new = model.state_dict(), again.state_dict()
    kept = [k for k in old if is_level2_key(k) or k.startswith("qa_heads.")]
    assert kept and all(torch.equal(new[k], old[k]) for k in kept)
    assert again.encoder.max_positions() == 2 * NEW_MAX
