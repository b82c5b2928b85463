"""make gpu-check: what a CUDA machine must confirm before anyone spends GPU-days on this code.

Parts (each reported as passed, failed or skipped with the reason):

1. ``attention_<dtype>`` for float32, float16, bfloat16: the attention tests marked ``device``
   (tests/test_attention.py: sliding window, pooling attention, the two-level module; values
   and gradients) with the fast kernels on CUDA in that dtype against the dense reference in
   fp32 on the CPU (``PF_TEST_DEVICE=cuda PF_TEST_DTYPE=<dtype>``, see tests/device.py).
   Needs pytest; bfloat16 needs ``torch.cuda.is_bf16_supported()``.
2. ``fairseq_train_fp16``: ``fairseq-train --fp16`` of ``poolingformer_bart_tiny`` on synthetic
   summarization data (built here, no download), 40 updates; passes when every logged loss is
   finite and the last is below the first. Needs Fairseq (``python -m fairseq_cli.train``).
3. ``attention_benchmark_<dtype>`` (float16, bfloat16): benchmarks/attention.py on CUDA (dense
   SDPA, LED when transformers is installed, level 1, two-level; T = 1k..16k).

Parts 1 and 3 need only torch (and pytest): when Fairseq is missing or does not import, they
run with ``FAIRSEQ_POOLINGFORMER_TORCH_ONLY=1`` and part 2 is skipped, saying why.

Without CUDA (or without torch) it prints that, writes the summary and exits 0. Otherwise it
exits 1 when a part that ran failed. Everything goes under ``--output-dir`` (default
``$PF_GPU_CHECK_OUT`` or ``gpu-check-results``): ``gpu_check.json`` (the summary, written
atomically), one ``<part>.log`` per part, the benchmark's ``attention_cuda_<dtype>.*``.

    python benchmarks/gpu_check.py [--output-dir DIR] [--parts attention train benchmark]
    python benchmarks/gpu_check.py --cpu-dry-run   # exercise this script on a CPU (fp32 only)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
PARTS = ("attention", "train", "benchmark")
TEST_DTYPES = ("float32", "float16", "bfloat16")
BENCH_DTYPES = ("float16", "bfloat16")
TRAIN_UPDATES = 40


# ----------------------------------------------------------------------------- helpers
def write_atomic(path: Path, text: str) -> None:
    """Temp file next to ``path``, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _bf16_unsupported(dtype: str, device: str) -> bool:
    import torch

    return dtype == "bfloat16" and device == "cuda" and not torch.cuda.is_bf16_supported()


def run_logged(cmd: List[str], log: Path, env: Dict[str, str], timeout: int) -> tuple:
    """Run cmd, output to ``log``; returns (returncode or None on timeout, seconds, output)."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=str(REPO), env=env, capture_output=True, text=True, timeout=timeout)
        code, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        code = None
        output = f"{err.stdout or ''}{err.stderr or ''}\nTIMEOUT after {timeout} s"
    seconds = time.perf_counter() - start
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"$ {' '.join(cmd)}\n{output}")
    return code, seconds, output


def part(name: str, status: str, reason: str = "", seconds: float = 0.0, **details) -> dict:
    return {"name": name, "status": status, "reason": reason, "seconds": round(seconds, 1), **details}


def fairseq_status(python: str, env: Dict[str, str]) -> Optional[str]:
    """None when Fairseq imports (with its CLI), else why not."""
    if importlib.util.find_spec("fairseq") is None:
        return "fairseq is not installed"
    proc = subprocess.run([python, "-c", "import fairseq, fairseq_cli.train, fairseq_cli.preprocess"],
                          capture_output=True, text=True, env=env, cwd=str(REPO))
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        return f"fairseq is installed but does not import: {last}"
    return None


# ----------------------------------------------------------------------------- part 1: tests
def attention_tests(out: Path, env: Dict[str, str], device: str, dtypes) -> List[dict]:
    results = []
    if importlib.util.find_spec("pytest") is None:
        return [part(f"attention_{d}", "skipped", "pytest is not installed") for d in dtypes]
    for dtype in dtypes:
        name = f"attention_{dtype}"
        if _bf16_unsupported(dtype, device):
            results.append(part(name, "skipped", "torch.cuda.is_bf16_supported() is False"))
            continue
        cmd = [sys.executable, "-m", "pytest", "-q", "-m", "device", "-p", "no:cacheprovider",
               "tests/test_attention.py"]
        code, seconds, output = run_logged(cmd, out / f"{name}.log",
                                           dict(env, PF_TEST_DEVICE=device, PF_TEST_DTYPE=dtype), timeout=1800)
        summary = next((line for line in reversed(output.splitlines()) if " passed" in line or " failed" in line
                        or " error" in line), output.strip().splitlines()[-1] if output.strip() else "")
        status = "passed" if code == 0 else "failed"
        results.append(part(name, status, "" if code == 0 else f"pytest exit {code}: {summary}",
                            seconds, pytest=summary.strip("= ")))
        print(f"  {name}: {status} ({summary.strip('= ')})", flush=True)
    return results


# ----------------------------------------------------------------------------- part 2: train
def _synthetic_pair(rng: random.Random) -> tuple:
    """A source of 12-180 words and a target that depends on it (lead words + a sorted set)."""
    vocab = [f"tok{i}" for i in range(40)]
    src = [rng.choice(vocab) for _ in range(rng.randint(12, 180))]
    return " ".join(src), " ".join(src[:3] + sorted(set(src[3:9])))


def _json_records(text: str) -> List[dict]:
    """The JSON records of fairseq's --log-format json output (other lines, e.g. the config dump, skipped)."""
    records = []
    for line in text.splitlines():
        if "{" in line and line.rstrip().endswith("}"):
            try:
                records.append(json.loads(line[line.index("{"):]))
            except json.JSONDecodeError:
                continue
    return records


def fairseq_train(out: Path, env: Dict[str, str], device: str) -> dict:
    name = "fairseq_train_fp16" if device == "cuda" else "fairseq_train_cpu"
    work = out / "train_work"
    shutil.rmtree(work, ignore_errors=True)  # a rerun into the same results: fairseq refuses an existing dict
    text = work / "text"
    text.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for split, n in (("train", 157), ("valid", 21)):
        pairs = [_synthetic_pair(rng) for _ in range(n)]
        (text / f"{split}.source").write_text("".join(s + "\n" for s, _ in pairs))
        (text / f"{split}.target").write_text("".join(t + "\n" for _, t in pairs))
    data = work / "bin"
    code, pre_s, _ = run_logged(
        [sys.executable, "-m", "fairseq_cli.preprocess", "--source-lang", "source", "--target-lang", "target",
         "--trainpref", str(text / "train"), "--validpref", str(text / "valid"), "--joined-dictionary",
         "--destdir", str(data), "--workers", "1"], out / f"{name}_preprocess.log", env, timeout=600)
    if code != 0:
        return part(name, "failed", f"fairseq_cli.preprocess exit {code} (see {name}_preprocess.log)", pre_s)
    cmd = [sys.executable, "-m", "fairseq_cli.train", str(data),
           "--user-dir", str(REPO / "fairseq_poolingformer"), "--task", "translation",
           "--source-lang", "source", "--target-lang", "target",
           "--arch", "poolingformer_bart_tiny", "--max-source-positions", "256", "--max-target-positions", "64",
           "--truncate-source", "--pf-w1", "8", "--pf-w2", "32",
           "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
           "--optimizer", "adam", "--lr", "1e-3", "--lr-scheduler", "polynomial_decay",
           "--warmup-updates", "4", "--total-num-update", str(TRAIN_UPDATES), "--max-update", str(TRAIN_UPDATES),
           "--batch-size", "8", "--required-batch-size-multiple", "1", "--log-format", "json",
           "--log-interval", "1", "--no-save", "--seed", "1", "--num-workers", "0"]
    cmd += ["--fp16"] if device == "cuda" else ["--cpu"]
    code, seconds, output = run_logged(cmd, out / f"{name}.log", env, timeout=1200)
    if code != 0:
        return part(name, "failed", f"fairseq_cli.train exit {code} (see {name}.log)", seconds)
    records = _json_records(output)
    losses = [float(r["loss"]) for r in records if "loss" in r and "num_updates" in r]
    scales = [float(r["loss_scale"]) for r in records if "loss_scale" in r]
    valid = [float(r["valid_loss"]) for r in records if "valid_loss" in r]
    details = {"updates": len(losses), "first_loss": losses[0] if losses else None,
               "last_loss": losses[-1] if losses else None, "valid_loss": valid[-1] if valid else None,
               "final_loss_scale": scales[-1] if scales else None}
    if not losses:
        return part(name, "failed", "no training loss in the log", seconds, **details)
    if not all(math.isfinite(x) for x in losses + valid):
        return part(name, "failed", "a logged loss is not finite", seconds, **details)
    if not losses[-1] < losses[0]:
        return part(name, "failed", f"loss did not decrease ({losses[0]:.3f} -> {losses[-1]:.3f})", seconds, **details)
    return part(name, "passed", "", seconds, **details)


# ----------------------------------------------------------------------------- part 3: benchmark
def attention_benchmark(out: Path, env: Dict[str, str], device: str, dtypes, lengths: List[int]) -> List[dict]:
    results = []
    for dtype in dtypes:
        name = f"attention_benchmark_{dtype}"
        if _bf16_unsupported(dtype, device):
            results.append(part(name, "skipped", "torch.cuda.is_bf16_supported() is False"))
            continue
        cmd = [sys.executable, "benchmarks/attention.py", "--device", device, "--dtype", dtype,
               "--lengths", *map(str, lengths), "--output-dir", str(out)]
        cmd += ["--rounds", "3"] if device == "cuda" else ["--rounds", "1", "--no-memory"]
        code, seconds, output = run_logged(cmd, out / f"{name}.log", env, timeout=1800)
        stem = "attention" if device == "cpu" else f"attention_{device}_{dtype}"
        summary_path = out / f"{stem}.json"
        if code != 0 or not summary_path.is_file():
            results.append(part(name, "failed", f"benchmarks/attention.py exit {code} (see {name}.log)", seconds))
            continue
        summary = json.loads(summary_path.read_text()).get("summary", {})
        results.append(part(name, "passed", "", seconds, summary=summary, files=f"{stem}.{{json,md,png}}"))
        print(f"  {name}: passed ({summary})", flush=True)
    return results


# ----------------------------------------------------------------------------- driver
def environment() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        import torch
    except ImportError:
        info["torch"] = None
        return info
    info.update(torch=torch.__version__, cuda_build=torch.version.cuda, cuda_available=torch.cuda.is_available())
    if torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(), capability=list(torch.cuda.get_device_capability()),
                    bf16_supported=torch.cuda.is_bf16_supported(), gpus=torch.cuda.device_count())
    for module in ("fairseq", "transformers", "pytest"):
        info[f"has_{module}"] = importlib.util.find_spec(module) is not None
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path,
                        default=Path(os.environ.get("PF_GPU_CHECK_OUT", "gpu-check-results")))
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384],
                        help="benchmark sequence lengths (multiples of 1024)")
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="exercise this script on a CPU: fp32 tests, CPU training, a 1k benchmark")
    args = parser.parse_args(argv)
    out = args.output_dir.resolve()
    env_info = environment()
    summary = {"environment": env_info, "output_dir": str(out), "parts": []}

    device = "cpu" if args.cpu_dry_run else "cuda"
    if not args.cpu_dry_run and not env_info.get("cuda_available"):
        why = "torch is not installed" if env_info.get("torch") is None else (
            f"torch {env_info['torch']} sees no CUDA device")
        print(f"gpu-check: {why}; nothing to check on this machine (exit 0)")
        summary.update(cuda=False, reason=why)
        write_atomic(out / "gpu_check.json", json.dumps(summary, indent=2) + "\n")
        return 0
    summary["cuda"] = device == "cuda"

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    no_fairseq = fairseq_status(sys.executable, env)
    if no_fairseq:
        env["FAIRSEQ_POOLINGFORMER_TORCH_ONLY"] = "1"  # the attention modules need torch only
        print(f"gpu-check: {no_fairseq}: the Fairseq part is skipped, the others run torch-only")
    summary["fairseq"] = no_fairseq or "ok"
    print(f"gpu-check on {env_info.get('gpu', 'CPU (dry run)')}, torch {env_info['torch']}; output in {out}",
          flush=True)

    parts = summary["parts"]
    if "attention" in args.parts:
        parts += attention_tests(out, env, device, TEST_DTYPES if device == "cuda" else ("float32",))
    if "train" in args.parts:
        if no_fairseq:
            parts.append(part("fairseq_train_fp16", "skipped", no_fairseq))
        else:
            parts.append(fairseq_train(out, env, device))
            print(f"  {parts[-1]['name']}: {parts[-1]['status']} {parts[-1]['reason']}", flush=True)
    if "benchmark" in args.parts:
        parts += attention_benchmark(out, env, device, BENCH_DTYPES if device == "cuda" else ("float32",),
                                     args.lengths if device == "cuda" else [1024])
    write_atomic(out / "gpu_check.json", json.dumps(summary, indent=2) + "\n")

    print("\n| part | status | seconds | note |\n|---|---|---:|---|")
    for p in parts:
        print(f"| {p['name']} | {p['status']} | {p['seconds']} | {p['reason']} |")
    print(f"\nwrote {out / 'gpu_check.json'}")
    return 1 if any(p["status"] == "failed" for p in parts) else 0


if __name__ == "__main__":
    sys.exit(main())
