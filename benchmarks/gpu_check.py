"""make gpu-check: one call that measures, on a CUDA machine, everything the GPU path must show.

Parts, in this order (each reported as passed, failed or skipped with the reason; together
about 8 minutes of GPU time, ``--budget``, after which the remaining parts are skipped and say so):

1. ``tests_bfloat16`` (part ``tests``; float16 and float32 come last, part ``more_tests``,
   as they compile their own kernels): the tests marked ``device``
   (tests/test_attention.py: the eager kernels; tests/test_flex.py: the FlexAttention path,
   compiled, and the compiled path; values and gradients) on CUDA in that dtype against the
   dense reference in fp32 on the CPU (``PF_TEST_DEVICE=cuda PF_TEST_DTYPE=<dtype>``, see
   tests/device.py). Needs pytest; bfloat16 needs ``torch.cuda.is_bf16_supported()``.
2. ``nan_check``: benchmarks/gpu_attention.py --parts nan: the two-level module (flex and eager)
   in fp16 and bf16 with left, right and full padding (whole windows and segments of padding)
   and tokens that see no segment; every output and gradient finite, padded rows zero.
3. ``module_16k``: benchmarks/gpu_attention.py --parts module: forward + backward of the
   attention module at 16k in bf16, flash full attention vs level 1 and two-level in every
   ``--attention-impl``, with CUDA kernel counts (the target: at most 1/4 of flash's time).
4. ``step``: benchmarks/train_step.py --device cuda --dtype bfloat16 at 4k, 16k and 64k:
   Poolingformer, level 1 only and full attention (flash SDPA) side by side in the same mode,
   then LED with checkpointing at 16k (when transformers is installed).
5. ``train_arxiv``: recipes/arxiv/train.sh (fp16: stock Fairseq turns ``--bf16`` into TPU mode
   for the stock ``bart_base``; no activation checkpointing; attention dropout 0: FlexAttention
   has none) on synthetic 16k-token documents, ``poolingformer_bart_base`` and
   then ``bart_base`` (full attention), ``--train-updates`` updates each (default 200); passes
   when every logged loss is finite and the last is below the first; words per second from
   Fairseq's own log (the median ``wps`` of its records, the first left out: it compiles).
6. ``profile_16k``: benchmarks/train_step.py --profile at 16k: CUDA kernels per training step
   and their time, Poolingformer vs full attention.
7. ``tests_float16``, ``tests_float32`` (part ``more_tests``).

Optional (``--parts``): ``tiny_fp16`` (``fairseq-train --fp16`` of ``poolingformer_bart_tiny``,
40 updates) and ``benchmark`` (benchmarks/attention.py in fp16 and bf16, T = 1k-16k).

When Fairseq is missing or does not import, the parts that need only torch run with
``FAIRSEQ_POOLINGFORMER_TORCH_ONLY=1`` and the others are skipped, saying why.

Without CUDA (or without torch) it prints that, writes the summary and exits 0. Otherwise it
exits 1 when a part that ran failed. Everything goes under ``--output-dir`` (default
``$PF_GPU_CHECK_OUT`` or ``gpu-check-results``): ``gpu_check.json`` (the summary, written
atomically after every part), one ``<part>.log`` per part, the benchmarks' JSON files.

    python benchmarks/gpu_check.py [--output-dir DIR] [--parts tests nan module step train profile more_tests]
        [--budget 480] [--train-updates 200]
    python benchmarks/gpu_check.py --cpu-dry-run   # exercise this script on a CPU (small sizes)
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
PARTS = ("tests", "nan", "module", "step", "train", "profile", "more_tests", "tiny_fp16", "benchmark")
DEFAULT_PARTS = PARTS[:7]
TEST_FILES = ("tests/test_attention.py", "tests/test_flex.py")
BENCH_DTYPES = ("float16", "bfloat16")
TRAIN_UPDATES = 40  # tiny_fp16
STEP_LENGTHS = (4096, 16384, 65536)
ARXIV_LENGTH, ARXIV_TARGET = 16384, 128


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


class Budget:
    """The GPU time the whole check may take: each part's timeout is what is left of it."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = seconds, time.perf_counter()

    def left(self) -> int:
        return max(0, int(self.seconds - (time.perf_counter() - self.start)))

    def spent(self, name: str) -> Optional[dict]:
        """A "skipped" part for ``name`` when less than 10 s are left (a run would get no time), else None."""
        if self.left() >= 10:
            return None
        return part(name, "skipped", f"out of the time budget ({self.seconds:.0f} s)")


def run_script(name: str, cmd: List[str], out: Path, env: Dict[str, str], timeout: int,
               json_path: Optional[Path] = None) -> dict:
    """A benchmark script as a part: passed when it exits 0; its JSON summary (if any) attached."""
    code, seconds, output = run_logged(cmd, out / f"{name}.log", env, timeout=timeout)
    details = {}
    if json_path is not None and json_path.is_file():
        details["results"] = json.loads(json_path.read_text())
    if code != 0:
        why = "timeout (out of the time budget)" if code is None else f"exit {code}"
        return part(name, "failed", f"{why} (see {name}.log)", seconds, **details)
    return part(name, "passed", "", seconds, **details)


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


# ----------------------------------------------------------------------------- tests
def device_tests(out: Path, env: Dict[str, str], device: str, dtypes, budget: Budget) -> List[dict]:
    results = []
    if importlib.util.find_spec("pytest") is None:
        return [part(f"tests_{d}", "skipped", "pytest is not installed") for d in dtypes]
    for dtype in dtypes:
        name = f"tests_{dtype}"
        if _bf16_unsupported(dtype, device):
            results.append(part(name, "skipped", "torch.cuda.is_bf16_supported() is False"))
            continue
        if skipped := budget.spent(name):
            results.append(skipped)
            continue
        cmd = [sys.executable, "-m", "pytest", "-q", "-m", "device", "-p", "no:cacheprovider", *TEST_FILES]
        code, seconds, output = run_logged(cmd, out / f"{name}.log",
                                           dict(env, PF_TEST_DEVICE=device, PF_TEST_DTYPE=dtype),
                                           timeout=min(240, budget.left()))
        summary = next((line for line in reversed(output.splitlines()) if " passed" in line or " failed" in line
                        or " error" in line), output.strip().splitlines()[-1] if output.strip() else "")
        status = "passed" if code == 0 else "failed"
        results.append(part(name, status, "" if code == 0 else f"pytest exit {code}: {summary}",
                            seconds, pytest=summary.strip("= ")))
        print(f"  {name}: {status} ({summary.strip('= ')})", flush=True)
    return results


# ----------------------------------------------------------------------------- the module, the step
def gpu_attention(out: Path, env: Dict[str, str], device: str, which: str, budget: Budget) -> dict:
    """benchmarks/gpu_attention.py: ``nan`` (the NaN/inf check) or ``module`` (16k, bf16)."""
    name = "nan_check" if which == "nan" else "module_16k"
    json_path = out / f"{name}.json"
    cmd = [sys.executable, "benchmarks/gpu_attention.py", "--parts", which, "--device", device, "--json", str(json_path)]
    if which == "module":
        cmd += ["--length", "16384", "--dtype", "bfloat16"] if device == "cuda" else [
            "--length", "1024", "--dtype", "float32", "--repeats", "1"]
    return run_script(name, cmd, out, env, min(300, budget.left()), json_path)


def train_steps(out: Path, env: Dict[str, str], device: str, budget: Budget, has_led: bool) -> List[dict]:
    """benchmarks/train_step.py: every model in the same mode at 4k/16k/64k, LED + ckpt at 16k."""
    cuda = ["--device", "cuda", "--dtype", "bfloat16"] if device == "cuda" else ["--threads", "2"]
    lengths = [str(t) for t in STEP_LENGTHS] if device == "cuda" else ["1024"]
    runs = [("step", ["--lengths", *lengths, "--models", "poolingformer", "sliding", "full",
                      "--max-full", "65536", "--repeats", "3" if device == "cuda" else "2"])]
    if has_led:
        runs.append(("step_led_16k", ["--lengths", "16384" if device == "cuda" else "1024", "--models", "led+ckpt",
                                      "--repeats", "3" if device == "cuda" else "1"]))
    results = []
    for name, args in runs:
        if skipped := budget.spent(name):
            results.append(skipped)
            continue
        json_path = out / f"{name}.json"
        cmd = [sys.executable, "benchmarks/train_step.py", *cuda, *args, "--timeout", "300", "--json", str(json_path)]
        results.append(run_script(name, cmd, out, env, min(420, budget.left()), json_path))
        print(f"  {name}: {results[-1]['status']} {results[-1]['reason']}", flush=True)
    return results


def profile_steps(out: Path, env: Dict[str, str], device: str, budget: Budget) -> dict:
    name = "profile_16k"
    json_path = out / f"{name}.json"
    sizes = ["--device", "cuda", "--dtype", "bfloat16", "--lengths", "16384"] if device == "cuda" else [
        "--lengths", "1024"]
    cmd = [sys.executable, "benchmarks/train_step.py", "--profile", *sizes, "--models", "poolingformer", "full",
           "--timeout", "300", "--json", str(json_path)]
    return run_script(name, cmd, out, env, min(240, budget.left()), json_path)


# ----------------------------------------------------------------------------- the arXiv recipe
def _long_document(rng: random.Random, length: int) -> tuple:
    """A source of length - 1 words (</s> makes it ``length`` tokens) and a 60-word target that
    depends on its start, its end and its word counts, so that the loss can fall."""
    vocab = [f"w{i}" for i in range(400)]
    src = [rng.choice(vocab) for _ in range(length - 1)]
    common = [word for word, _ in collections.Counter(src[:2000]).most_common(20)]
    return " ".join(src), " ".join(src[:20] + common + src[-20:])


def arxiv_recipe(out: Path, env: Dict[str, str], device: str, updates: int, budget: Budget) -> dict:
    """recipes/arxiv/train.sh on synthetic documents: Poolingformer, then full attention, the
    same data, settings and number of updates; words/s from Fairseq's json log."""
    name = "train_arxiv"
    length = ARXIV_LENGTH if device == "cuda" else 512
    work = out / "arxiv_work"
    rng = random.Random(0)
    code, pre_s, data = synthetic_data(work, lambda: _long_document(rng, length), {"train": updates, "valid": 2},
                                       out / f"{name}_preprocess.log", env, workers=8)
    if code != 0:
        return part(name, "failed", f"fairseq_cli.preprocess exit {code} (see {name}_preprocess.log)", pre_s)
    runs, seconds = {}, pre_s
    for model, arch in (("poolingformer", "poolingformer_bart_base"), ("full", "bart_base")):
        if skipped := budget.spent(name):
            return skipped
        recipe_env = dict(env, ARCH=arch, MAX_SOURCE=str(length), MAX_TARGET=str(ARXIV_TARGET), TOTAL_BATCH="1",
                          BATCH_SIZE="1", EPOCHS="1", WARMUP="10", LR="3e-4", CHECKPOINT_ACTIVATIONS="0",
                          PRECISION="fp16", NGPUS="1" if device == "cuda" else "0", PYTHON=sys.executable)
        cmd = ["bash", "recipes/arxiv/train.sh", str(data), str(work / f"save_{model}"),
               "--attention-dropout", "0", "--log-format", "json", "--log-interval", "10" if updates >= 50 else "1",
               "--no-save", "--disable-validation", "--max-update", str(updates), "--num-workers", "0"]
        code, run_s, output = run_logged(cmd, out / f"{name}_{model}.log", recipe_env,
                                         timeout=min(300, budget.left()))
        seconds += run_s
        records = [r for r in _json_records(output) if "loss" in r and "num_updates" in r]
        losses = [float(r["loss"]) for r in records]
        wps = [float(r["wps"]) for r in records[1:] if "wps" in r]
        runs[model] = {"exit": code, "updates": int(records[-1]["num_updates"]) if records else 0,
                       "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
                       "words_per_s": statistics.median(wps) if wps else None, "seconds": round(run_s, 1)}
        print(f"  {name} {model}: {runs[model]}", flush=True)
    details = {"source_tokens": length, "runs": runs}
    pf, full = runs["poolingformer"], runs["full"]
    if pf["words_per_s"] and full["words_per_s"]:
        details["words_per_s_ratio"] = pf["words_per_s"] / full["words_per_s"]
    for model, r in runs.items():
        if r["exit"] != 0 or not r["updates"]:
            return part(name, "failed", f"{model}: train.sh exit {r['exit']} (see {name}_{model}.log)", seconds, **details)
        if not (math.isfinite(r["first_loss"]) and math.isfinite(r["last_loss"]) and r["last_loss"] < r["first_loss"]):
            return part(name, "failed", f"{model}: loss not finite or not falling", seconds, **details)
    return part(name, "passed", "", seconds, **details)


# ----------------------------------------------------------------------------- tiny fp16 run
def _synthetic_pair(rng: random.Random) -> tuple:
    """A source of 12-180 words and a target that depends on it (lead words + a sorted set)."""
    vocab = [f"tok{i}" for i in range(40)]
    src = [rng.choice(vocab) for _ in range(rng.randint(12, 180))]
    return " ".join(src), " ".join(src[:3] + sorted(set(src[3:9])))


def synthetic_data(work: Path, make_pair, counts: Dict[str, int], log: Path, env: Dict[str, str],
                   workers: int) -> tuple:
    """Rebuilds ``work`` (fairseq refuses an existing dictionary on a rerun into the same results)
    with text/{split}.source/.target from make_pair() and bin/ from fairseq_cli.preprocess
    (joined dictionary). Returns (preprocess exit code, seconds, the bin directory)."""
    shutil.rmtree(work, ignore_errors=True)
    text = work / "text"
    text.mkdir(parents=True)
    for split, n in counts.items():
        pairs = [make_pair() for _ in range(n)]
        (text / f"{split}.source").write_text("".join(s + "\n" for s, _ in pairs))
        (text / f"{split}.target").write_text("".join(t + "\n" for _, t in pairs))
    data = work / "bin"
    code, seconds, _ = run_logged(
        [sys.executable, "-m", "fairseq_cli.preprocess", "--source-lang", "source", "--target-lang", "target",
         "--trainpref", str(text / "train"), "--validpref", str(text / "valid"), "--joined-dictionary",
         "--destdir", str(data), "--workers", str(workers)], log, env, timeout=600)
    return code, seconds, data


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
    rng = random.Random(0)
    code, pre_s, data = synthetic_data(out / "train_work", lambda: _synthetic_pair(rng), {"train": 157, "valid": 21},
                                       out / f"{name}_preprocess.log", env, workers=1)
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


# ----------------------------------------------------------------------------- attention.py
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
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(DEFAULT_PARTS))
    parser.add_argument("--budget", type=float, default=480,
                        help="seconds for the whole check; parts that do not start in time are skipped")
    parser.add_argument("--train-updates", type=int, default=200, help="updates of each train_arxiv run")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384],
                        help="benchmark part: sequence lengths (multiples of 1024)")
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="exercise this script on a CPU: fp32 tests, small sizes, CPU training")
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
        print(f"gpu-check: {no_fairseq}: the Fairseq parts are skipped, the others run torch-only")
    summary["fairseq"] = no_fairseq or "ok"
    print(f"gpu-check on {env_info.get('gpu', 'CPU (dry run)')}, torch {env_info['torch']}; output in {out}; "
          f"budget {args.budget:.0f} s", flush=True)

    budget = Budget(args.budget)
    parts = summary["parts"]
    needs_fairseq = {"step", "profile", "train", "tiny_fp16"}
    steps = {
        "tests": lambda: device_tests(out, env, device, ("bfloat16",) if device == "cuda" else ("float32",), budget),
        "more_tests": lambda: device_tests(out, env, device, ("float16", "float32") if device == "cuda" else (), budget),
        "nan": lambda: [gpu_attention(out, env, device, "nan", budget)],
        "module": lambda: [gpu_attention(out, env, device, "module", budget)],
        "step": lambda: train_steps(out, env, device, budget, env_info.get("has_transformers", False)),
        "profile": lambda: [profile_steps(out, env, device, budget)],
        "train": lambda: [arxiv_recipe(out, env, device, args.train_updates if device == "cuda" else 6, budget)],
        "tiny_fp16": lambda: [fairseq_train(out, env, device)],
        "benchmark": lambda: attention_benchmark(out, env, device, BENCH_DTYPES if device == "cuda" else ("float32",),
                                                 args.lengths if device == "cuda" else [1024]),
    }
    for name in [p for p in PARTS if p in args.parts]:
        if name in needs_fairseq and no_fairseq:
            parts.append(part(name, "skipped", no_fairseq))
        elif skipped := budget.spent(name):
            parts.append(skipped)
        else:
            done = steps[name]()
            parts += done
            print(f"  {name}: {', '.join(p['status'] for p in done) or 'nothing to run'}; "
                  f"{budget.left()} s of the budget left", flush=True)
        write_atomic(out / "gpu_check.json", json.dumps(summary, indent=2) + "\n")

    print("\n| part | status | seconds | note |\n|---|---|---:|---|")
    for p in parts:
        print(f"| {p['name']} | {p['status']} | {p['seconds']} | {p['reason']} |")
    print(f"\nwrote {out / 'gpu_check.json'}")
    return 1 if any(p["status"] == "failed" for p in parts) else 0


if __name__ == "__main__":
    sys.exit(main())
