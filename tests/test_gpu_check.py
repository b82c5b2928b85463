"""benchmarks/gpu_check.py on a machine without CUDA: says so, writes its summary, exits 0."""

import json
import os

import pytest
import torch

from benchmarks import gpu_check


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: run make gpu-check")
def test_without_cuda_it_says_so_and_exits_zero(tmp_path, capsys):
    assert gpu_check.main(["--output-dir", str(tmp_path)]) == 0
    assert "sees no CUDA device; nothing to check" in capsys.readouterr().out
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert summary["cuda"] is False and summary["parts"] == []
    assert summary["environment"]["torch"] == torch.__version__
    assert [p.name for p in tmp_path.iterdir()] == ["gpu_check.json"]  # no temp file left behind


def test_training_log_records_are_parsed():
    text = 'noise\n2026 | INFO | train_inner | {"loss": "5.6", "num_updates": "1", "loss_scale": "128"}\n{bad json}\n'
    assert gpu_check._json_records(text) == [{"loss": "5.6", "num_updates": "1", "loss_scale": "128"}]


def test_fairseq_training_part_runs_again_into_the_same_results(tmp_path):
    """make gpu-check twice into one results directory: the second run rebuilds its work
    directory (fairseq-preprocess refuses an existing dictionary) and passes too."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(gpu_check.REPO), os.environ.get("PYTHONPATH")])))
    for _ in range(2):
        result = gpu_check.fairseq_train(tmp_path, env, "cpu")
        assert result["status"] == "passed", result
