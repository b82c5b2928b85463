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


def test_a_run_with_no_budget_left_is_skipped_not_failed():
    """Each run inside a part (a dtype's tests, a length's step, a model's training) is skipped,
    saying why, once under 10 s are left, instead of starting with a timeout of 0 and failing."""
    assert gpu_check.Budget(600).spent("tests_float16") is None
    skipped = gpu_check.Budget(5).spent("tests_float16")
    assert skipped["name"] == "tests_float16" and skipped["status"] == "skipped"
    assert "out of the time budget (5 s)" in skipped["reason"]
    results = gpu_check.device_tests(None, {}, "cuda", ("float32",), gpu_check.Budget(0))
    assert [(r["name"], r["status"]) for r in results] == [("tests_float32", "skipped")]


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
