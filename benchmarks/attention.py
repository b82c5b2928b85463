"""Attention benchmark: Poolingformer vs dense SDPA vs HF Longformer/LED, side by side in one run.

BART-base sized self-attention (768 hidden, 12 heads, batch 1), including the q/k/v/out
projections, at T = 1k .. 16k:
  dense         q/k/v/out projections + full scaled_dot_product_attention
  led           transformers' LEDEncoderAttention, one-side window 512, one global token
  pf_level1     SlidingWindowSelfAttention, w1=128, one global token
  pf_two_level  PoolingformerSelfAttention, w1=128, w2=512, kernel 5, stride 4, ldconv, one global token

Timings are medians over round-robin repeats (every implementation runs once per round, so
machine noise hits all of them alike). Peak memory is the peak resident set growth of one
forward+backward, measured in a fresh subprocess per (implementation, T) with glibc's mmap
threshold pinned so freed tensors go back to the OS. The two-level core (attention only, no
projections) is also timed against this machine's dense-matmul rate, measured in the same run,
counting useful FLOPs only (QK^T and AV over the allowed keys).

    python benchmarks/attention.py            # full: T = 1k..16k, 3 rounds
    python benchmarks/attention.py --small    # demo: T = 1k, 2k, 1 round
    python benchmarks/attention.py --device cuda --dtype float16   # on a GPU (make gpu-check)

On CUDA, timings synchronise the device and peak memory is ``torch.cuda.max_memory_allocated``
growth over one forward+backward (in process); ``led`` runs only when ``transformers`` is
installed (otherwise it is left out and the run says so). Outputs on CUDA are named
``attention_cuda_<dtype>.*``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fairseq_poolingformer.modules import (  # noqa: E402
    PoolingformerSelfAttention,
    SlidingWindowSelfAttention,
    pooling_attention,
    sliding_window_attention,
)

DIM, HEADS = 768, 12
W1, W2, KERNEL, STRIDE, POOLING = 128, 512, 5, 4, "ldconv"
LED_ONE_SIDE = 512
IMPLS = ("dense", "led", "pf_level1", "pf_two_level")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
RESULTS = Path(__file__).resolve().parent / "results"


# ----------------------------------------------------------------------------- implementations
class DenseSelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(DIM, 3 * DIM)
        self.out = nn.Linear(DIM, DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (T, B, C)
        length, batch, _ = x.shape
        q, k, v = self.qkv(x).view(length, batch, 3, HEADS, DIM // HEADS).permute(2, 1, 3, 0, 4)
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v)  # (B, H, T, D)
        return self.out(y.permute(2, 0, 1, 3).reshape(length, batch, DIM))


class LEDSelfAttention(nn.Module):
    """transformers' LED encoder attention (self-attention + output projection), one global token."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import LEDConfig
        from transformers.models.led.modeling_led import LEDEncoderAttention

        cfg = LEDConfig(d_model=DIM, encoder_attention_heads=HEADS, attention_window=[2 * LED_ONE_SIDE],
                        attention_dropout=0.0)
        self.attn = LEDEncoderAttention(cfg, layer_id=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (T, B, C); T a multiple of 512
        hidden = x.transpose(0, 1)
        batch, length, _ = hidden.shape
        mask = torch.zeros(batch, length, device=x.device)
        mask[:, 0] = 10000.0  # global
        out = self.attn(hidden, attention_mask=mask, is_index_masked=mask < 0,
                        is_index_global_attn=mask > 0, is_global_attn=True)[0]
        return out.transpose(0, 1)


class PoolingformerLevel1(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = SlidingWindowSelfAttention(DIM, HEADS, W1, global_first_token=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x)[0]


class PoolingformerTwoLevel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = PoolingformerSelfAttention(DIM, HEADS, W1, W2, KERNEL, STRIDE, POOLING, global_first_token=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x)[0]


BUILDERS: Dict[str, Callable[[], nn.Module]] = {
    "dense": DenseSelfAttention,
    "led": LEDSelfAttention,
    "pf_level1": PoolingformerLevel1,
    "pf_two_level": PoolingformerTwoLevel,
}


# ----------------------------------------------------------------------------- measurement
def forward_backward(module: nn.Module, x: torch.Tensor) -> None:
    module(x).sum().backward()


def forward_only(module: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        module(x)


def sync() -> None:
    """Wait for the GPU's queued work (nothing on the CPU)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def cuda_peak_growth_mib(fn: Callable[[], None]) -> float:
    """Peak CUDA memory allocated during fn, above what was allocated before it (MiB)."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def available_impls() -> List[str]:
    """IMPLS, without led when transformers is not installed (said on stderr)."""
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        print("transformers is not installed: the led row is left out", file=sys.stderr)
        return [name for name in IMPLS if name != "led"]
    return list(IMPLS)


def peak_memory_mib(impl: str, length: int, threads: int) -> float:
    """Peak RSS growth of one forward+backward, in a fresh process."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0", OMP_NUM_THREADS=str(threads))
    code = (
        "import sys, torch; sys.argv=['x']; sys.path.insert(0, %r); import attention as a\n"
        "torch.set_num_threads(%d); torch.manual_seed(0)\n"
        "m = a.BUILDERS[%r](); x = torch.randn(%d, 1, a.DIM, requires_grad=True)\n"
        "print(a.rss_peak_growth_mib(lambda: a.forward_backward(m, x)))\n"
    ) % (str(Path(__file__).resolve().parent), threads, impl, length)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def rss_peak_growth_mib(fn: Callable[[], None]) -> float:
    """Runs fn; returns (peak RSS during fn - RSS before) in MiB. Linux: resets VmHWM first."""

    def status_kib(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise RuntimeError(f"{field} not in /proc/self/status")

    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    before = status_kib("VmRSS")
    fn()
    return (status_kib("VmHWM") - before) / 1024


def useful_flops(length: int) -> float:
    """QK^T + AV FLOPs of the two-level core over allowed keys only (token 0 global)."""
    i = torch.arange(length, dtype=torch.float64)
    local = (torch.clamp(i + W1, max=length - 1) - torch.clamp(i - W1, min=0) + 1)
    local = local + (i > W1).double()  # the global token 0 when outside the window
    local[0] = length  # the global token attends to everything
    segments = (length + STRIDE - 1) // STRIDE
    half = (KERNEL - 1) / 2
    if W2 >= length:
        pooled = torch.full_like(i, float(segments))
    else:  # segments s with |s*stride + half - i| <= w2
        lo = torch.ceil((i - W2 - half) / STRIDE).clamp(min=0)
        hi = torch.floor((i + W2 - half) / STRIDE).clamp(max=segments - 1)
        pooled = (hi - lo + 1).clamp(min=0)
    head_dim = DIM // HEADS
    return float((local.sum() + pooled.sum()) * HEADS * 4 * head_dim)


def core_forward(q, k, v, glob, weights) -> None:
    with torch.no_grad():
        sliding_window_attention(q, k, v, W1, global_mask=glob)
        pooling_attention(q, k, v, W2, KERNEL, STRIDE, POOLING, None, *weights)


def matmul_rate(size: int = 2048, device: str = "cpu", dtype: torch.dtype = torch.float32) -> float:
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    return 2 * size**3 / timed(lambda: a @ b)


# ----------------------------------------------------------------------------- driver
def run(lengths: List[int], rounds: int, threads: int, memory: bool, device: str = "cpu",
        dtype: torch.dtype = torch.float32) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    impls = available_impls()
    modules = {name: BUILDERS[name]().to(device, dtype) for name in impls}
    cuda = torch.device(device).type == "cuda"
    rows = []
    for length in lengths:
        x = torch.randn(length, 1, DIM, device=device, dtype=dtype, requires_grad=True)
        q, k, v = (torch.randn(1, HEADS, length, DIM // HEADS, device=device, dtype=dtype) for _ in range(3))
        glob = torch.zeros(1, length, dtype=torch.bool, device=device)
        glob[0, 0] = True
        weights = [(torch.randn(KERNEL, DIM) * DIM**-0.5).to(device, dtype) for _ in range(2)]
        times = {name: {"fwd": [], "fwd_bwd": []} for name in impls}
        core, rate = [], []
        for name in impls:  # warm-up (on CUDA also the backward kernels)
            forward_only(modules[name], x)
            if cuda:
                forward_backward(modules[name], x)
        for _ in range(rounds):
            for name in impls:
                times[name]["fwd"].append(timed(lambda: forward_only(modules[name], x)))
                times[name]["fwd_bwd"].append(timed(lambda: forward_backward(modules[name], x)))
            core.append(timed(lambda: core_forward(q, k, v, glob, weights)))
            rate.append(matmul_rate(device=device, dtype=dtype))
        flops = useful_flops(length)
        for name in impls:
            if not memory:
                peak = None
            elif cuda:
                peak = cuda_peak_growth_mib(lambda: forward_backward(modules[name], x))
            else:
                peak = peak_memory_mib(name, length, threads)
            row = {"T": length, "impl": name,
                   "fwd_s": statistics.median(times[name]["fwd"]),
                   "fwd_bwd_s": statistics.median(times[name]["fwd_bwd"]),
                   "fwd_bwd_spread_s": max(times[name]["fwd_bwd"]) - min(times[name]["fwd_bwd"]),
                   "peak_mib": peak}
            if name == "pf_two_level":
                core_s, matmul = statistics.median(core), statistics.median(rate)
                row.update(core_fwd_s=core_s, core_gflops=flops / core_s / 1e9, matmul_gflops=matmul / 1e9,
                           matmul_fraction=flops / core_s / matmul)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return {"threads": threads, "rounds": rounds, "rows": rows, "impls": impls, "device": str(device),
            "dtype": str(dtype).replace("torch.", ""),
            "gpu": torch.cuda.get_device_name() if cuda else None}


def summary(result: dict) -> dict:
    by = {(r["T"], r["impl"]): r for r in result["rows"]}
    lengths = sorted({r["T"] for r in result["rows"]})
    top = lengths[-1]
    out = {"T": top, "pf_core_matmul_fraction": by[top, "pf_two_level"]["matmul_fraction"],
           "dense_over_pf_fwd_bwd_time": by[top, "dense"]["fwd_bwd_s"] / by[top, "pf_two_level"]["fwd_bwd_s"]}
    if (top, "led") in by:
        out["led_over_pf_fwd_bwd_time"] = by[top, "led"]["fwd_bwd_s"] / by[top, "pf_two_level"]["fwd_bwd_s"]
        if by[top, "led"]["peak_mib"]:
            out["pf_over_led_peak_memory"] = by[top, "pf_two_level"]["peak_mib"] / by[top, "led"]["peak_mib"]
    if len(lengths) >= 3 and lengths[-1] == 4 * lengths[-3]:
        out["pf_growth_fwd_bwd_4x_length"] = by[top, "pf_two_level"]["fwd_bwd_s"] / by[lengths[-3], "pf_two_level"]["fwd_bwd_s"]
    return out


def markdown(result: dict) -> str:
    lines = ["| T | implementation | forward (s) | forward+backward (s) | peak memory (MiB) |",
             "|---:|---|---:|---:|---:|"]
    for r in result["rows"]:
        mem = f"{r['peak_mib']:.0f}" if r["peak_mib"] is not None else "-"
        lines.append(f"| {r['T']} | {r['impl']} | {r['fwd_s']:.3f} | {r['fwd_bwd_s']:.3f} | {mem} |")
    lines.append("")
    lines.append("| T | two-level core forward (s) | useful GFLOP/s | matmul GFLOP/s | fraction of matmul rate |")
    lines.append("|---:|---:|---:|---:|---:|")
    for r in result["rows"]:
        if r["impl"] == "pf_two_level":
            lines.append(f"| {r['T']} | {r['core_fwd_s']:.3f} | {r['core_gflops']:.1f} | "
                         f"{r['matmul_gflops']:.1f} | {r['matmul_fraction']:.2f} |")
    lines.append("")
    for key, value in summary(result).items():
        lines.append(f"- {key}: {value:.3g}" if isinstance(value, float) else f"- {key}: {value}")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name in result.get("impls", IMPLS):
        rows = [r for r in result["rows"] if r["impl"] == name]
        axes[0].plot([r["T"] for r in rows], [r["fwd_bwd_s"] for r in rows], marker="o", label=name)
        if rows[0]["peak_mib"] is not None:
            axes[1].plot([r["T"] for r in rows], [r["peak_mib"] for r in rows], marker="o", label=name)
    for ax, title in zip(axes, ("forward+backward time (s)", "peak memory (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend()
        else:  # --no-memory: nothing measured on this panel
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
    where = (f"{result['gpu']}, {result['dtype']}" if result.get("gpu")
             else f"{result['threads']} CPU threads")
    fig.suptitle(f"BART-base self-attention, batch 1, {where}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="quick run: T = 1k, 2k, one round")
    parser.add_argument("--lengths", type=int, nargs="+", help="sequence lengths (multiples of 1024)")
    parser.add_argument("--rounds", type=int, help="round-robin repeats (median reported)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true", help="skip the per-process peak-memory runs")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch.cuda.is_available() is False")
    lengths = args.lengths or ([1024, 2048] if args.small else [1024, 2048, 4096, 8192, 16384])
    rounds = args.rounds or (1 if args.small else 3)
    result = run(lengths, rounds, args.threads, memory=not args.no_memory, device=args.device,
                 dtype=DTYPES[args.dtype])
    result["summary"] = summary(result)
    table = markdown(result)
    print(table)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stem = "attention_small" if args.small else "attention"
    if torch.device(args.device).type != "cpu":
        stem += f"_{torch.device(args.device).type}_{args.dtype}"
    (args.output_dir / f"{stem}.json").write_text(json.dumps(result, indent=2))
    (args.output_dir / f"{stem}.md").write_text(table + "\n")
    plot(result, args.output_dir / f"{stem}.png")
    print(f"\nwrote {args.output_dir / stem}.{{json,md,png}}")


if __name__ == "__main__":
    main()
