"""Tests for fairseq_poolingformer.compat and the pf-* console scripts.

A tiny Fairseq transformer is trained for 2 updates by the *stock* ``fairseq_cli.train`` in a
subprocess; its real checkpoint then shows each fix: stock Fairseq cannot load it (torch >= 2.6
weights_only), the package can (single process and a 2-rank gloo resume), and generation with
the default ``--required-batch-size-multiple 8`` returns every example.
"""
import argparse
import importlib
import importlib.metadata
import io
import os
import pickle
import random
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch

import fairseq_poolingformer  # noqa: F401  (applies compat)
from fairseq_poolingformer import compat

PY = sys.executable
N_VALID = 11  # not a multiple of 8, nor of the batch size used below
TINY_MODEL = (
    "--arch transformer --encoder-layers 1 --decoder-layers 1 "
    "--encoder-embed-dim 16 --decoder-embed-dim 16 --encoder-ffn-embed-dim 32 "
    "--decoder-ffn-embed-dim 32 --encoder-attention-heads 2 --decoder-attention-heads 2 "
    "--optimizer adam --lr 1e-3 --max-tokens 200 --cpu --no-progress-bar --log-interval 1 "
    "--seed 1"
).split()


def _env() -> Dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)  # the stock behaviour under test
    env.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
    return env


def _run(args: List[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args[:4])}... exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def _script(name: str) -> str:
    """An installed console script next to this interpreter (``make install`` puts them there)."""
    path = Path(PY).parent / name
    assert path.exists(), f"{path} missing: install the package (`make install` / `pip install -e .`)"
    return str(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _checkpoint_updates(path: Path) -> int:
    state = torch.load(path, map_location="cpu", weights_only=False)  # test-made file: trusted
    return state["optimizer_history"][-1]["num_updates"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """Binarized toy data (reverse the words) and a checkpoint after 2 updates of stock Fairseq."""
    root = tmp_path_factory.mktemp("tiny_run")
    rng = random.Random(0)
    words = "the a cat dog sat on mat ran fast slow red blue green big small".split()
    for split, n in [("train", 40), ("valid", N_VALID)]:
        src, tgt = [], []
        for _ in range(n):
            sent = [rng.choice(words) for _ in range(rng.randint(3, 8))]
            src.append(" ".join(sent))
            tgt.append(" ".join(reversed(sent)))
        (root / f"{split}.src").write_text("\n".join(src) + "\n")
        (root / f"{split}.tgt").write_text("\n".join(tgt) + "\n")
    from fairseq import options
    from fairseq_cli import preprocess

    preprocess.main(options.get_preprocessing_parser().parse_args(
        ["--source-lang", "src", "--target-lang", "tgt", "--trainpref", str(root / "train"),
         "--validpref", str(root / "valid"), "--destdir", str(root / "bin"),
         "--joined-dictionary", "--workers", "1"]))
    _run([PY, "-m", "fairseq_cli.train", "bin", *TINY_MODEL, "--max-update", "2",
          "--save-dir", "ckpt"], cwd=root)
    assert (root / "ckpt" / "checkpoint_last.pt").exists()
    return root


# ------------------------------------------------------------------ 1. weights_only loading

LOAD_SNIPPET = textwrap.dedent(
    """
    import sys
    from fairseq import checkpoint_utils
    state = checkpoint_utils.load_checkpoint_to_cpu(sys.argv[1])
    print("arch", state["cfg"]["model"].arch)
    """
)


def test_stock_fairseq_cannot_load_its_checkpoint(tiny_run):
    """Without the package, torch >= 2.6 refuses the checkpoint: the bug compat fixes."""
    ckpt = str(tiny_run / "ckpt" / "checkpoint_last.pt")
    proc = _run([PY, "-c", LOAD_SNIPPET, ckpt], cwd=tiny_run, check=False)
    assert proc.returncode != 0
    assert "Weights only load failed" in proc.stderr and "argparse.Namespace" in proc.stderr


def test_checkpoint_loads_with_the_right_contents(tiny_run):
    from fairseq import checkpoint_utils

    path = tiny_run / "ckpt" / "checkpoint_last.pt"
    state = checkpoint_utils.load_checkpoint_to_cpu(str(path))
    reference = torch.load(path, map_location="cpu", weights_only=False)  # full unpickler

    model_cfg = state["cfg"]["model"]
    assert isinstance(model_cfg, argparse.Namespace)
    assert (model_cfg.arch, model_cfg.encoder_embed_dim, model_cfg.encoder_layers) == ("transformer", 16, 1)
    assert state["optimizer_history"][-1]["num_updates"] == 2
    assert state["model"].keys() == reference["model"].keys()
    for name, tensor in reference["model"].items():
        assert torch.equal(state["model"][name], tensor), name


def test_compat_is_idempotent_and_keeps_the_stock_functions_reachable():
    from fairseq.data import data_utils
    from fairseq.distributed import utils as dist_utils

    from fairseq.ngram_repeat_block import NGramRepeatBlock

    batch_fn, broadcast_fn = data_utils.batch_by_size, dist_utils._broadcast_object_slow
    ngram_fn = NGramRepeatBlock._no_repeat_ngram
    compat.apply()
    importlib.reload(compat)  # a second import of the module applies again
    assert data_utils.batch_by_size is batch_fn
    assert dist_utils._broadcast_object_slow is broadcast_fn
    assert NGramRepeatBlock._no_repeat_ngram is ngram_fn
    assert not hasattr(ngram_fn.__wrapped__, "__wrapped__")
    stock = data_utils.batch_by_size.__wrapped__
    assert not hasattr(stock, "__wrapped__") and stock.__module__ == "fairseq.data.data_utils"
    assert dist_utils._broadcast_object_slow.__wrapped__.__module__ == "fairseq.distributed.utils"
    assert argparse.Namespace in torch.serialization.get_safe_globals()


# ------------------------------------------------------------------ 2. rank-0 broadcasts

def test_what_rank_zero_sends_needs_the_trusted_loader(tiny_run):
    """Stock receivers ``torch.load`` the bytes with the weights_only default: a loaded
    checkpoint (OmegaConf config inside) fails there even with the Namespace allowed;
    compat's receiver loads it back identical."""
    from fairseq import checkpoint_utils
    from fairseq.distributed.utils import _split_tensors_from_obj

    state = checkpoint_utils.load_checkpoint_to_cpu(str(tiny_run / "ckpt" / "checkpoint_last.pt"))
    tensors: List[torch.Tensor] = []
    sent = _split_tensors_from_obj(state, tensors)  # what broadcast_object pickles
    stream = io.BytesIO()
    torch.save(sent, stream)
    payload = torch.frombuffer(bytearray(stream.getvalue()), dtype=torch.uint8)

    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch.load(io.BytesIO(stream.getvalue()), map_location="cpu")  # the stock receiver
    received = compat._load_trusted_bytes(payload)
    assert type(received["cfg"]).__name__ == "DictConfig"
    assert received["cfg"].model.arch == "transformer"
    assert received["optimizer_history"] == sent["optimizer_history"]


def test_two_rank_resume_with_pf_train(tiny_run, tmp_path):
    """The real path: a gloo 2-rank pf-train resumes from a 2-update checkpoint to 4 updates
    (rank 0 loads the checkpoint and broadcasts it to rank 1)."""
    shutil.copytree(tiny_run / "ckpt", tmp_path / "ckpt")
    common = [_script("pf-train"), str(tiny_run / "bin"), *TINY_MODEL, "--max-update", "4",
              "--save-dir", str(tmp_path / "ckpt"), "--distributed-world-size", "2",
              "--distributed-init-method", f"tcp://127.0.0.1:{_free_port()}",
              "--distributed-backend", "gloo", "--distributed-no-spawn",
              "--ddp-backend", "legacy_ddp"]
    procs = [subprocess.Popen([*common, "--distributed-rank", str(rank)], cwd=tmp_path,
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for rank in (0, 1)]
    logs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    assert "Loaded checkpoint" in logs[0] and "@ 2 updates" in logs[0]
    assert _checkpoint_updates(tmp_path / "ckpt" / "checkpoint_last.pt") == 4


# ------------------------------------------------------------------ 3. the last partial batch

def _stock_batch_by_size():
    from fairseq.data import data_utils

    return data_utils.batch_by_size.__wrapped__


@pytest.mark.parametrize("use_vec", [True, False])
@pytest.mark.parametrize(
    "n, max_tokens, max_sentences, mult",
    [(20, None, 3, 8), (20, 60, None, 8), (13, None, 4, 8), (16, None, 8, 8), (7, None, 4, 1),
     (30, 100, 9, 4), (1, None, 5, 8)],
)
def test_batch_by_size_keeps_every_index(n, max_tokens, max_sentences, mult, use_vec):
    from fairseq.data import data_utils

    rng = np.random.default_rng(n)
    sizes = rng.integers(2, 10, size=n)
    indices = np.argsort(sizes, kind="mergesort").astype(np.int64)  # as Fairseq orders them
    kwargs = dict(max_tokens=max_tokens, max_sentences=max_sentences,
                  required_batch_size_multiple=mult)
    if use_vec:
        kwargs["num_tokens_vec"] = sizes[indices]
    fn = lambda i: int(sizes[i])  # noqa: E731

    ours = data_utils.batch_by_size(indices, fn, **kwargs)
    stock = _stock_batch_by_size()(indices, fn, **kwargs)

    assert np.array_equal(np.concatenate(ours), indices)  # every index once, in order
    compat.check_every_index_batched(ours, range(n))
    assert len(ours) - len(stock) in (0, 1)
    for a, b in zip(ours, stock):  # the batches the stock function kept are unchanged
        assert np.array_equal(a, b)
    for b in ours[:-1]:
        assert len(b) % mult == 0 or len(b) < mult


def test_stock_batch_by_size_drops_the_tail():
    """What compat fixes: 20 items, 3 a batch, multiple 8: stock Fairseq loses the last 2."""
    stock = _stock_batch_by_size()(np.arange(20), lambda i: 5, max_sentences=3,
                                   required_batch_size_multiple=8)
    assert sum(len(b) for b in stock) == 18
    with pytest.raises(ValueError, match="missing \\[18, 19\\]"):
        compat.check_every_index_batched(stock, range(20))


def test_batch_by_size_accepts_an_iterator_and_fixed_shapes_are_untouched():
    from fairseq.data import data_utils

    batches = data_utils.batch_by_size(iter(range(10)), lambda i: 5, max_sentences=4,
                                       required_batch_size_multiple=8)
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]

    shapes = [(2, 10)]  # (bsz, length): fixed-shape batching skips leftovers by design
    args = (np.arange(5), lambda i: 5)
    ours = data_utils.batch_by_size(*args, fixed_shapes=shapes)
    stock = _stock_batch_by_size()(*args, fixed_shapes=shapes)
    assert [list(map(int, b)) for b in ours] == [list(map(int, b)) for b in stock]


def test_check_every_index_batched_reports_duplicates():
    compat.check_every_index_batched([[0, 1], [2]], [0, 1, 2])
    with pytest.raises(ValueError, match="duplicated 1"):
        compat.check_every_index_batched([[0, 1], [1, 2]], [0, 1, 2])


def test_pf_generate_outputs_every_example(tiny_run):
    """Default --required-batch-size-multiple 8, batches of 4 over 11 sentences: all 11 come out."""
    proc = _run([_script("pf-generate"), "bin", "--path", "ckpt/checkpoint_last.pt",
                 "--gen-subset", "valid", "--batch-size", "4", "--beam", "2", "--cpu"],
                cwd=tiny_run)
    hyp_ids = sorted(int(line.split("\t")[0][2:]) for line in proc.stdout.splitlines()
                     if line.startswith("H-"))
    assert hyp_ids == list(range(N_VALID))


# ------------------------------------------------------------------ console scripts

def test_console_scripts_run_the_fairseq_mains():
    from fairseq_poolingformer import cli

    # The Fairseq tools run through cli; the two document tools have their own modules.
    own = {"pf-answer": "fairseq_poolingformer.qa.answer:cli_main",
           "pf-summarize": "fairseq_poolingformer.summarization.summarize:cli_main"}
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="console_scripts")
           if ep.name.startswith("pf-")}
    assert set(eps) == {f"pf-{tool}" for tool in cli.TOOLS} | set(own), "reinstall: pip install -e ."
    for name, ep in eps.items():
        if name in own:
            assert ep.value == own[name]
            assert callable(ep.load())
            continue
        assert ep.value == f"fairseq_poolingformer.cli:{name[3:]}"
        assert ep.load() is getattr(cli, name[3:])
    for tool, module in cli.TOOLS.items():
        assert cli._fairseq_main(tool) is importlib.import_module(module).cli_main


def test_cli_main_usage_and_help(capsys):
    from fairseq_poolingformer import cli

    with pytest.raises(SystemExit, match="usage: python -m fairseq_poolingformer.cli"):
        cli.main([])
    with pytest.raises(SystemExit, match="usage"):
        cli.main(["fairseq-train"])
    argv = sys.argv
    try:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["train", "--help"])
    finally:
        sys.argv = argv
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: pf-train" in out and "--user-dir" in out


# ------------------------------------------------------------------ 6. repeated n-grams

PAD, BOS = 1, 2  # Fairseq's dictionary indices


def _beam_buffer(generated, max_len=12):
    """Fairseq's token buffer at step len(generated): bos, the generated tokens, then padding."""
    # (1, max_len + 2)
    tokens = torch.full((1, max_len + 2), PAD, dtype=torch.long)
    tokens[0, : len(generated) + 1] = torch.tensor([BOS, *generated])
    return tokens


def _banned(no_repeat_ngram, n, generated, vocab=20):
    from fairseq.ngram_repeat_block import NGramRepeatBlock

    blocker = NGramRepeatBlock(n, use_extension=False)
    lprobs = torch.zeros(1, vocab)
    out = no_repeat_ngram(blocker, _beam_buffer(generated), lprobs, 1, 1, len(generated))
    return sorted(torch.nonzero(torch.isinf(out[0])).flatten().tolist())


@pytest.mark.parametrize("n, generated, banned", [
    (3, [5, 6, 7, 5, 6], [7]),            # "5 6 7" seen: after "5 6", 7 would repeat it
    (3, [5, 6, 7, 8, 5, 6, 9, 5, 6], [7, 9]),
    (2, [4, 4], [4]),                      # a bigram repeated in place
    (2, [5, 6, 7], []),                    # nothing to repeat yet
    (3, [5, 6], []),                       # shorter than an n-gram
])
def test_no_repeat_ngram_bans_what_would_repeat_an_ngram(n, generated, banned):
    """compat's blocker bans exactly the tokens that would complete an n-gram already generated
    (checked against a direct count over the hypothesis); stock Fairseq, reading the buffer's
    padded end, bans nothing."""
    from fairseq.ngram_repeat_block import NGramRepeatBlock

    seen = {tuple(generated[i:i + n]) for i in range(len(generated) - n + 1)}
    expected = sorted({t for t in range(20) if tuple([*generated, t][-n:]) in seen})
    assert expected == banned
    assert _banned(NGramRepeatBlock._no_repeat_ngram, n, generated) == banned
    stock = NGramRepeatBlock._no_repeat_ngram.__wrapped__
    assert _banned(stock, n, generated) == []
