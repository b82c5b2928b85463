"""BART -> Poolingformer-BART conversion (fairseq_poolingformer.convert bart).

A small BART (Fairseq's ``bart_base`` arch with tiny dims, random init) is saved as a real
Fairseq checkpoint by Fairseq's own Trainer, converted, and the converted model is checked
against the original: with w1 covering the input and level 2 zero at initialisation, the
encoder output (atol 1e-5) and the beam-search output must equal the original's on inputs of
up to 1024 tokens; positions beyond the pretrained maximum must be the loop-copied rows.
"""

import os
import shutil
import subprocess
import sys

import pytest
import torch

import fairseq_poolingformer  # noqa: F401  (registers the model, compat fixes)
from fairseq import checkpoint_utils, options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.sequence_generator import SequenceGenerator
from fairseq.trainer import Trainer

from fairseq_poolingformer.convert import cli
from fairseq_poolingformer.convert.core.errors import ConversionError
from fairseq_poolingformer.convert.core.output import save_checkpoint
from fairseq_poolingformer.convert.core.weights import extend_positions, is_level2_key
from fairseq_poolingformer.modules import PoolingformerSelfAttention, SlidingWindowSelfAttention

VOCAB = 60  # + 4 special symbols
BART_MAX = 1024
NEW_MAX = 2500  # not a multiple of BART_MAX: the last copy is partial


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def _write_dict(path):
    with open(path, "w") as f:
        for i in range(VOCAB):
            f.write(f"w{i} {100 - i}\n")


@pytest.fixture(scope="module")
def bart_dir(tmp_path_factory):
    """A tiny random BART saved by Fairseq's Trainer: (checkpoint path, dict path)."""
    root = tmp_path_factory.mktemp("bart")
    data = root / "data"
    data.mkdir()
    _write_dict(data / "dict.txt")
    for lang in ("source", "target"):
        shutil.copy(data / "dict.txt", data / f"dict.{lang}.txt")
    argv = [
        str(data), "--task", "translation", "--source-lang", "source", "--target-lang", "target",
        "--arch", "bart_base", "--encoder-layers", "2", "--decoder-layers", "2",
        "--encoder-embed-dim", "32", "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
        "--decoder-ffn-embed-dim", "64", "--encoder-attention-heads", "4",
        "--decoder-attention-heads", "4", "--max-source-positions", str(BART_MAX),
        "--max-target-positions", "128", "--cpu", "--optimizer", "adam", "--lr", "1e-4",
        "--save-dir", str(root), "--no-save-optimizer-state", "--seed", "3",
    ]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    torch.manual_seed(3)
    model = task.build_model(cfg.model)
    with torch.no_grad():  # larger weights than BERT init, so beam search makes real choices
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 0.5 if "embed_positions" in name else 0.3)
        model.encoder.embed_tokens.weight.normal_(0, 1.0)
    trainer = Trainer(cfg, task, model, task.build_criterion(cfg.criterion))
    trainer.save_checkpoint(str(root / "model.pt"), {})
    return root / "model.pt", data / "dict.txt"


@pytest.fixture(scope="module")
def converted(bart_dir, tmp_path_factory):
    checkpoint, dict_path = bart_dir
    out = tmp_path_factory.mktemp("converted")
    path = cli.main([
        "bart", "--checkpoint", str(checkpoint), "--dict", str(dict_path),
        "--max-source-positions", str(NEW_MAX), "--output-dir", str(out),
        "--pf-layers", "0-1", "--pf-w1", str(BART_MAX), "--pf-w2", "64", "--pf-pooling", "ldconv",
    ])
    return path


def _load(path):
    (model,), _, task = checkpoint_utils.load_model_ensemble_and_task([str(path)])
    return model.eval(), task


def _left_padded(lengths, seed=0):
    """Source batch as Fairseq makes it: left padding (pad=1), eos (2) last. (B, T)"""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    src = torch.ones(len(lengths), T, dtype=torch.long)
    for i, n in enumerate(lengths):
        src[i, T - n:T - 1] = torch.randint(4, VOCAB + 4, (n - 1,), generator=g)
        src[i, T - 1] = 2
    return src


def test_output_files_and_architecture(converted):
    out_dir = os.path.dirname(converted)
    assert sorted(os.listdir(out_dir)) == ["dict.source.txt", "dict.target.txt", "dict.txt", "model.pt"]
    model, task = _load(converted)
    assert type(model).__name__ == "PoolingformerBARTModel"
    assert model.encoder.max_positions() == NEW_MAX
    attns = [layer.self_attn for layer in model.encoder.layers]
    assert all(isinstance(a, PoolingformerSelfAttention) for a in attns)
    assert [a.w1 for a in attns] == [BART_MAX, BART_MAX]
    assert len(task.source_dictionary) == VOCAB + 4


def test_positions_are_loop_copied(bart_dir, converted):
    original, _ = _load(bart_dir[0])
    model, _ = _load(converted)
    old = original.encoder.embed_positions.weight  # (2 + 1024, C)
    new = model.encoder.embed_positions.weight  # (2 + 2500, C)
    assert new.shape == (2 + NEW_MAX, old.shape[1])
    torch.testing.assert_close(new[:2], old[:2], rtol=0, atol=0)  # reserved rows
    for p in (0, 1, 1023, 1024, 1025, 2047, 2048, 2499):
        torch.testing.assert_close(new[2 + p], old[2 + p % BART_MAX], rtol=0, atol=0)
    # the decoder keeps its own positions
    torch.testing.assert_close(model.decoder.embed_positions.weight,
                               original.decoder.embed_positions.weight, rtol=0, atol=0)


def test_level2_starts_from_level1(converted):
    model, _ = _load(converted)
    for layer in model.encoder.layers:
        a = layer.self_attn
        for lvl1, lvl2 in ((a.q_proj, a.q2_proj), (a.k_proj, a.k2_proj), (a.v_proj, a.v2_proj)):
            torch.testing.assert_close(lvl2.weight, lvl1.weight, rtol=0, atol=0)
            torch.testing.assert_close(lvl2.bias, lvl1.bias, rtol=0, atol=0)
        assert a.out2_proj.weight.abs().max() == 0 and a.out2_proj.bias.abs().max() == 0
        assert a.k_pool_weight.abs().max() == 0 and a.v_pool_weight.abs().max() == 0


def test_encoder_output_equals_original(bart_dir, converted):
    original, _ = _load(bart_dir[0])
    model, _ = _load(converted)
    lengths = [1024, 700, 37]
    src = _left_padded(lengths)
    with torch.no_grad():
        ref = original.encoder(src, torch.tensor(lengths))["encoder_out"][0]  # (T, B, C)
        out = model.encoder(src, torch.tensor(lengths))["encoder_out"][0]
    real = src.ne(1).t()  # (T, B)
    assert ref.abs()[real].mean() > 0.1
    torch.testing.assert_close(out[real], ref[real], rtol=0, atol=1e-5)


def test_beam_search_equals_original(bart_dir, converted):
    original, task = _load(bart_dir[0])
    model, _ = _load(converted)
    lengths = [1024, 513, 90, 12]
    sample = {"net_input": {"src_tokens": _left_padded(lengths, seed=1),
                            "src_lengths": torch.tensor(lengths)}}
    hyps = []
    for m in (original, model):
        gen = SequenceGenerator([m], task.target_dictionary, beam_size=5, len_penalty=2.0,
                                max_len_b=24, min_len=3, no_repeat_ngram_size=2)
        with torch.no_grad():
            hyps.append([[h["tokens"].tolist() for h in beam] for beam in gen.generate([m], sample)])
    assert len(hyps[0]) == len(lengths) and all(len(b) == 5 for b in hyps[0])
    assert len({tuple(b[0]) for b in hyps[0]}) > 1  # not a degenerate model
    assert hyps[1] == hyps[0]


def test_level2_adds_nothing_at_init_with_small_windows(bart_dir, tmp_path):
    """With w1 < T the converted two-level layer equals a level-1 layer with the same weights."""
    checkpoint, dict_path = bart_dir
    path = cli.main(["bart", "--checkpoint", str(checkpoint), "--dict", str(dict_path),
                     "--max-source-positions", "1024", "--output-dir", str(tmp_path),
                     "--pf-layers", "1", "--pf-w1", "16", "--pf-w2", "64"])
    model, _ = _load(path)
    first = model.encoder.layers[0].self_attn
    assert type(first) is SlidingWindowSelfAttention
    two_level = model.encoder.layers[1].self_attn
    assert isinstance(two_level, PoolingformerSelfAttention)
    level1 = SlidingWindowSelfAttention(32, 4, 16, global_first_token=True).eval()
    level1.load_state_dict({k: v for k, v in two_level.state_dict().items()
                            if k.split(".")[0] in ("q_proj", "k_proj", "v_proj", "out_proj")})
    padding = _left_padded([300, 200]).eq(1)  # (B, T)
    x = torch.randn(300, 2, 32)  # (T, B, C)
    with torch.no_grad():
        out, _ = two_level(x, key_padding_mask=padding)
        ref, _ = level1(x, key_padding_mask=padding)
    assert ref.abs().mean() > 0.01
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def test_extend_positions_unit():
    w = torch.arange(2 + 3).float().unsqueeze(1).repeat(1, 2)  # rows 0..4; positions are rows 2,3,4
    out = extend_positions(w, 7, offset=2)
    assert out[:, 0].tolist() == [0, 1, 2, 3, 4, 2, 3, 4, 2]
    assert extend_positions(w, 2, offset=2)[:, 0].tolist() == [0, 1, 2, 3]
    with pytest.raises(ConversionError, match="rows"):
        extend_positions(w, 7, offset=5)


def test_bad_inputs_give_clear_errors(bart_dir, tmp_path):
    checkpoint, dict_path = bart_dir
    small_dict = tmp_path / "small.txt"
    small_dict.write_text("a 1\nb 1\n")
    base = ["bart", "--checkpoint", str(checkpoint), "--output-dir", str(tmp_path / "o")]
    with pytest.raises(SystemExit, match=r"small.txt: 6 symbols but .*embeds 64 tokens"):
        cli.main(base + ["--dict", str(small_dict)])
    with pytest.raises(SystemExit, match="checkpoint not found"):
        cli.main(["bart", "--checkpoint", str(tmp_path / "nope.pt"), "--dict", str(dict_path),
                  "--output-dir", str(tmp_path / "o")])
    # poolingformer_bart_base's default --pf-layers 2-4 does not fit a 2-layer encoder
    with pytest.raises(SystemExit, match=r"--pf-layers '2-4' selects layer 4, but the encoder has 2 layers"):
        cli.main(base + ["--dict", str(dict_path)])
    assert not (tmp_path / "o").exists()  # nothing written by failed conversions
    assert [p.name for p in tmp_path.iterdir()] == ["small.txt"]  # no staging left behind


def test_cli_entry_point(bart_dir, tmp_path):
    checkpoint, dict_path = bart_dir
    proc = subprocess.run(
        [sys.executable, "-m", "fairseq_poolingformer.convert", "bart", "--checkpoint", str(checkpoint),
         "--dict", str(dict_path), "--max-source-positions", "2048", "--output-dir", str(tmp_path),
         "--pf-layers", "1", "--pf-w1", "32"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == str(tmp_path / "model.pt")
    assert "level 2 in encoder layers 1 (0-based; the paper's 2nd of 2)" in proc.stderr


def test_converted_directory_loads_through_the_hub(converted):
    """model.pt + dict files beside it: PoolingformerBARTModel.from_pretrained(dir) summarizes."""
    from fairseq_poolingformer.models.poolingformer_bart import PoolingformerBARTModel

    summarizer = PoolingformerBARTModel.from_pretrained(os.path.dirname(converted), bpe="none")
    model, task = _load(converted)
    src = _left_padded([40], seed=5)  # (1, 40)
    doc = task.source_dictionary.string(src[0, :-1])
    assert summarizer.encode(doc).tolist() == src[0].tolist()
    gen = SequenceGenerator([model], task.target_dictionary, beam_size=5, len_penalty=2.0, max_len_b=16)
    with torch.no_grad():
        ref = gen.generate([model], {"net_input": {"src_tokens": src, "src_lengths": torch.tensor([40])}})
    expected = task.target_dictionary.string(ref[0][0]["tokens"])
    # the generator's own defaults for what the hub's table would otherwise set
    assert summarizer.sample([doc], beam=5, lenpen=2.0, max_len_b=16, min_len=1, no_repeat_ngram_size=0) == [expected]
    # longer than the 2500 positions: truncated to 2499 tokens + </s>
    assert summarizer.encode(" ".join(["w7"] * 3000)).numel() == NEW_MAX


def _fine_tuned(converted, path):
    """The converted checkpoint with trained-looking (non-zero) level-2 weights, saved like a
    fine-tuned Poolingformer checkpoint."""
    (model,), cfg, _ = checkpoint_utils.load_model_ensemble_and_task([str(converted)])
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if is_level2_key(name):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    save_checkpoint(str(path), cfg, model)
    return model


def test_reconverting_a_poolingformer_checkpoint_is_refused(converted, tmp_path):
    """Converting an already converted (or fine-tuned) checkpoint used to succeed and
    silently reset its level-2 weights; now it is an error naming the file, arch and a tensor."""
    fine_tuned = tmp_path / "checkpoint_best.pt"
    _fine_tuned(converted, fine_tuned)
    dict_path = os.path.join(os.path.dirname(converted), "dict.txt")
    with pytest.raises(SystemExit, match=(
            r"convert bart: error: .*checkpoint_best.pt: already a Poolingformer checkpoint \(arch "
            r"'poolingformer_bart_base', tensor encoder.layers.0.self_attn.k2_proj.bias\); converting it again "
            r"would reset its level-2 weights to their initialisation. Give the original pretrained "
            r"checkpoint, or pass --keep-level2")):
        cli.main(["bart", "--checkpoint", str(fine_tuned), "--dict", dict_path,
                  "--output-dir", str(tmp_path / "out"), "--pf-layers", "0-1"])
    assert not (tmp_path / "out").exists()


def test_keep_level2_extends_positions_and_keeps_trained_level2(converted, tmp_path):
    fine_tuned = tmp_path / "checkpoint_best.pt"
    original = _fine_tuned(converted, fine_tuned)
    dict_path = os.path.join(os.path.dirname(converted), "dict.txt")
    path = cli.main(["bart", "--checkpoint", str(fine_tuned), "--dict", dict_path, "--keep-level2",
                     "--output-dir", str(tmp_path / "out"), "--max-source-positions", "3000"])
    model, _ = _load(path)
    assert model.encoder.max_positions() == 3000
    new_state, old_state = model.state_dict(), original.state_dict()
    level2 = [k for k in old_state if is_level2_key(k)]
    assert len(level2) == 2 * 10 and all(old_state[k].abs().max() > 0 for k in level2)
    for key in level2:  # the trained level 2, not a fresh initialisation
        torch.testing.assert_close(new_state[key], old_state[key], rtol=0, atol=0)
    attn = model.encoder.layers[1].self_attn  # the checkpoint's own --pf-* settings
    assert (attn.w1, attn.w2) == (BART_MAX, 64)
    old_pos = old_state["encoder.embed_positions.weight"]  # (2 + 2500, C)
    torch.testing.assert_close(new_state["encoder.embed_positions.weight"][2 + 2600], old_pos[2 + 100], rtol=0, atol=0)


def test_positions_are_loop_copied_to_64k(bart_dir, tmp_path):
    """The 64k setting (--max-source-positions 65536) converts as 16k does: 64 copies of 1024."""
    checkpoint, dict_path = bart_dir
    path = cli.main(["bart", "--checkpoint", str(checkpoint), "--dict", str(dict_path),
                     "--max-source-positions", "65536", "--output-dir", str(tmp_path), "--pf-layers", "0-1",
                     "--pf-w1", "16", "--pf-w2", "64"])
    original, _ = _load(checkpoint)
    model, _ = _load(path)
    assert model.encoder.max_positions() == 65536
    old, new = original.encoder.embed_positions.weight, model.encoder.embed_positions.weight
    assert new.shape == (2 + 65536, old.shape[1])
    for p in (0, 1023, 1024, 16383, 16384, 40000, 65535):
        torch.testing.assert_close(new[2 + p], old[2 + p % BART_MAX], rtol=0, atol=0)
