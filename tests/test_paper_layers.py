"""Two-level layers where the paper puts them.

The paper counts layers from 1 ("the 6th to 11th layers"), ``--pf-layers`` from 0. Each
architecture's default is pinned to the paper's own words, read here by a small independent
parser of the quoted text; an old checkpoint stored with the previous default (6-11) still loads
with its own layer set and computes what it computed; a mismatching override is refused clearly.
"""
import argparse
import re
import shutil

import pytest
import torch

import fairseq_poolingformer  # noqa: F401  (registers the archs)
from fairseq import checkpoint_utils, options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.models import ARCH_CONFIG_REGISTRY
from fairseq.trainer import Trainer

from fairseq_poolingformer.models.encoder import PoolingformerConfig, add_poolingformer_args, describe_layers

# arch -> (the paper's words, encoder layers). BART-base is our scaling of BART-large's choice
# to 6 layers (the paper has no BART-base run): the 3rd-5th, the last layer level 1 only.
PAPER = {
    "poolingformer_bart_large": ("the 6th to 11th layers", 12),
    "poolingformer_bart_base": ("the 3rd to 5th layers", 6),
    "poolingformer_roberta_large": ("from the 15th to the 20th layer", 24),
    "poolingformer_xlmr_large": ("from the 15th to the 20th layer", 24),
    "poolingformer_roberta_base": ("the 6th-8th layers", 12),
}


def ordinals_to_indices(text: str) -> frozenset:
    """'the 6th to 11th layers' -> {5, ..., 10}: ordinals counted from 1, as 0-based indices."""
    first, last = (int(n) for n in re.findall(r"(\d+)(?:st|nd|rd|th)", text))
    return frozenset(range(first - 1, last))


@pytest.mark.parametrize("arch", sorted(PAPER))
def test_arch_two_level_layers_are_the_papers(arch):
    words, num_layers = PAPER[arch]
    args = argparse.Namespace()
    ARCH_CONFIG_REGISTRY[arch](args)
    assert args.encoder_layers == num_layers
    pf = PoolingformerConfig.from_args(args)
    assert pf.two_level_layers(num_layers) == ordinals_to_indices(words)
    assert num_layers - 1 not in pf.two_level_layers(num_layers)  # the last layer is level 1 only
    assert (pf.w1, pf.w2, pf.kernel, pf.stride) == (128, 512, 5, 4)


def test_describe_layers_gives_both_numberings():
    assert describe_layers(range(5, 11), 12) == "5-10 (0-based; the paper's 6th-11th of 12)"
    assert describe_layers(range(14, 20), 24) == "14-19 (0-based; the paper's 15th-20th of 24)"
    assert describe_layers([0, 2, 20, 21], 24) == "0,2,20-21 (0-based; the paper's 1st, 3rd, 21st-22nd of 24)"
    assert describe_layers([], 6) == "none"


def test_help_states_both_numberings():
    p = argparse.ArgumentParser()
    add_poolingformer_args(p)
    text = " ".join(p.format_help().split())
    assert "0-based" in text and "'6th to 11th layers' (BART-large) are 5-10" in text
    assert "'15th to 20th' (RoBERTa/XLM-R large) 14-19" in text and "'6th-8th' (base) 5-7" in text


# ----------------------------------------------------------------------------- old checkpoints

SMALL = ["--encoder-embed-dim", "16", "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32",
         "--decoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
         "--decoder-layers", "1", "--pf-w1", "4", "--pf-w2", "16", "--pf-kernel", "3", "--pf-stride", "2",
         "--max-source-positions", "64", "--max-target-positions", "32"]


@pytest.fixture(scope="module")
def old_checkpoint(tmp_path_factory):
    """A poolingformer_bart_large-shaped (12 encoder layers, small width) checkpoint written by
    Fairseq's Trainer with the old default --pf-layers 6-11 stored in its args, and the encoder
    output it computed: (path, data dir, src_tokens, encoder output)."""
    root = tmp_path_factory.mktemp("old")
    data = root / "data"
    data.mkdir()
    (data / "dict.source.txt").write_text("".join(f"w{i} {100 - i}\n" for i in range(40)))
    shutil.copy(data / "dict.source.txt", data / "dict.target.txt")
    argv = [str(data), "--task", "translation", "--source-lang", "source", "--target-lang", "target",
            "--arch", "poolingformer_bart_large", "--pf-layers", "6-11", *SMALL, "--cpu",
            "--optimizer", "adam", "--lr", "1e-4", "--no-save-optimizer-state", "--dropout", "0"]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    task = tasks.setup_task(cfg.task)
    torch.manual_seed(0)
    model = task.build_model(cfg.model).eval()
    with torch.no_grad():  # level 2 contributes (a converted model starts with a zero out2_proj)
        for layer in model.encoder.layers:
            if hasattr(layer.self_attn, "out2_proj"):
                layer.self_attn.out2_proj.weight.normal_(0, 0.5)
    src = torch.randint(4, 44, (2, 40))
    src[:, -1] = 2
    with torch.no_grad():
        out = model.encoder(src, src_lengths=torch.full((2,), 40))["encoder_out"][0]
    path = root / "checkpoint_old.pt"
    Trainer(cfg, task, model, task.build_criterion(cfg.criterion)).save_checkpoint(str(path), {})
    return path, data, src, out


def test_old_checkpoint_keeps_its_layers_and_output(old_checkpoint):
    path, data, src, expected = old_checkpoint
    (model,), cfg, _ = checkpoint_utils.load_model_ensemble_and_task([str(path)], arg_overrides={"data": str(data)})
    model.eval()
    assert model.encoder.two_level_layer_indices() == list(range(6, 12))
    with torch.no_grad():
        out = model.encoder(src, src_lengths=torch.full((2,), 40))["encoder_out"][0]
    torch.testing.assert_close(out, expected, atol=0, rtol=0)


def test_mismatching_layer_override_is_refused(old_checkpoint):
    path, data, _, _ = old_checkpoint
    with pytest.raises(ValueError, match=re.escape(
            "this checkpoint is two-level in encoder layers 6-11 (0-based; the paper's 7th-12th of 12), "
            "but the model was built with --pf-layers 5-10 (0-based; the paper's 6th-11th of 12)")):
        checkpoint_utils.load_model_ensemble_and_task(
            [str(path)], arg_overrides={"data": str(data), "pf_layers": "5-10"})
