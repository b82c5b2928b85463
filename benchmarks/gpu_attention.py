"""The attention module on a GPU: every attention path side by side, and the NaN/inf check.

``module``: forward + backward of one BART-base-sized self-attention (768 hidden, 12 heads,
batch 1, projections included) at ``--length`` tokens (default 16384) in ``--dtype``:
flash full attention (``F.scaled_dot_product_attention``, as benchmarks/attention.py's dense
row), level 1 and the two-level module (w1 128, w2 512, kernel 5, stride 4, LDConv, first token
global) with every ``--attention-impl``. Per row: median time over ``--repeats`` after
warm-up (compiling included there), the CUDA allocator's peak over the inputs, the CUDA
kernels one forward + backward launches and their summed time (torch.profiler), and the
time as a fraction of full attention's.

``nan``: the two-level module (flex and eager) in fp16 and bf16 with large activations, a batch
of a left-padded, a right-padded and a fully padded sequence (padding longer than a
FlexAttention tile: whole windows and segments of padding), and w2 = 1 (tokens that see no
segment); passes when every output and gradient is finite and the padded rows are zero.

    python benchmarks/gpu_attention.py [--parts module nan] [--length 16384] [--dtype bfloat16]
        [--json out.json]

Writes the JSON summary (``--json``) and prints a markdown table. ``--device cpu`` exercises the
script without a GPU and measures the compiled path against the eager kernels there (flex is
left out: FlexAttention has no backward on the CPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.attention import (DIM, HEADS, KERNEL, POOLING, STRIDE, W1, W2, DenseSelfAttention,  # noqa: E402
                                  cuda_peak_growth_mib, sync, timed)
from benchmarks.train_step import cuda_kernels  # noqa: E402
from fairseq_poolingformer.modules import PoolingformerSelfAttention, SlidingWindowSelfAttention  # noqa: E402

ROWS = (("full", None), ("level1", "eager"), ("level1", "flex"), ("two_level", "eager"),
        ("two_level", "flex"), ("two_level", "compiled"))


def build(kind: str, impl: str) -> torch.nn.Module:
    if kind == "full":
        return DenseSelfAttention()
    if kind == "level1":
        return SlidingWindowSelfAttention(DIM, HEADS, W1, global_first_token=True, impl=impl)
    return PoolingformerSelfAttention(DIM, HEADS, W1, W2, KERNEL, STRIDE, POOLING, global_first_token=True, impl=impl)


def fwd_bwd(module: torch.nn.Module, x: torch.Tensor) -> None:
    out = module(x)
    out = out[0] if isinstance(out, tuple) else out
    out.float().sum().backward()


def runs_here(impl: str, device: str) -> bool:
    """On the CPU all but flex (FlexAttention has no backward there; "compiled" compiles the
    eager kernels)."""
    return device == "cuda" or impl != "flex"


def kernel_profile(fn: Callable[[], None]) -> Dict[str, float]:
    """CUDA kernels launched by fn and their summed time (0 on the CPU)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        sync()
    kernels = cuda_kernels(prof.events())
    return {"kernels": kernels["kernels"], "kernel_ms": 1e3 * kernels["kernel_s"]}


def peak_mib(fn: Callable[[], None], device: str) -> Optional[float]:
    """The CUDA allocator's peak during fn over what was allocated before (None on the CPU)."""
    if device != "cuda":
        fn()
        return None
    return cuda_peak_growth_mib(fn)


def module_rows(length: int, dtype: torch.dtype, repeats: int, device: str) -> List[Dict[str, object]]:
    rows = []
    for kind, impl in ROWS:
        if not runs_here(impl, device):
            continue
        torch.manual_seed(0)
        module = build(kind, impl).to(device, dtype).train()
        x = torch.randn(length, 1, DIM, device=device, dtype=dtype, requires_grad=True)
        step = lambda: fwd_bwd(module, x)  # noqa: E731
        row: Dict[str, object] = {"T": length, "module": kind, "impl": impl or "flash SDPA"}
        try:
            row["warmup_s"] = sum(timed(step) for _ in range(2))  # compiling, for the compiled paths
            times = [timed(step) for _ in range(repeats)]
            row["peak_mib"] = peak_mib(step, device)
            row.update(kernel_profile(step), ms=1e3 * statistics.median(times), status="ok")
        except Exception as err:  # a path that fails is reported, the others still run
            row["status"] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:160]}"
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
        del module, x
        if device == "cuda":
            torch.cuda.empty_cache()
    full = next((r["ms"] for r in rows if r["module"] == "full" and r["status"] == "ok"), None)
    for r in rows:
        if full and r["status"] == "ok":
            r["vs_full"] = r["ms"] / full
    return rows


def nan_rows(device: str, length: int = 2048) -> List[Dict[str, object]]:
    rows = []
    pad = torch.zeros(3, length, dtype=torch.bool, device=device)
    pad[0, : length // 2] = True  # left: 1024 pads, whole tiles and segments of padding
    pad[1, length // 3:] = True  # right
    pad[2] = True  # a sequence of padding only
    for dtype in (torch.float16, torch.bfloat16):
        for impl in [i for i in ("flex", "eager") if runs_here(i, device)]:
            for w2 in (W2, 1):  # w2 = 1 < kernel: some tokens see no segment
                torch.manual_seed(0)
                module = PoolingformerSelfAttention(DIM, HEADS, W1, w2, KERNEL, STRIDE, POOLING,
                                                    global_first_token=True, impl=impl).to(device, dtype)
                x = (torch.randn(length, 3, DIM, device=device) * 30).to(dtype).requires_grad_()
                row = {"dtype": str(dtype).split(".")[-1], "impl": impl, "w2": w2}
                try:
                    out, _ = module(x, key_padding_mask=pad)
                    (out.float().sum() / length).backward()  # per-token gradients of 1/T: no fp16 overflow in the sums
                    grads = [x.grad] + [p.grad for p in module.parameters()]
                    finite = bool(torch.isfinite(out).all()) and all(bool(torch.isfinite(g).all()) for g in grads)
                    zero = bool((out.transpose(0, 1)[pad] == 0).all())
                    row.update(finite=finite, padded_rows_zero=zero, status="passed" if finite and zero else "failed")
                except Exception as err:
                    row["status"] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:160]}"
                rows.append(row)
                print(row, file=sys.stderr, flush=True)
    return rows


def markdown(module: List[Dict[str, object]], nan: List[Dict[str, object]]) -> str:
    lines = []
    if module:
        lines += ["| T | module | impl | fwd+bwd (ms) | x full | peak (MiB) | CUDA kernels | kernel time (ms) | warm-up (s) |",
                  "|---:|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in module:
            if r["status"] != "ok":
                lines.append(f"| {r['T']} | {r['module']} | {r['impl']} | {r['status']} |" + " - |" * 5)
                continue
            ratio = f"{r['vs_full']:.2f}" if "vs_full" in r else "-"
            peak = "-" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
            lines.append(f"| {r['T']} | {r['module']} | {r['impl']} | {r['ms']:.2f} | {ratio} | {peak} "
                         f"| {r['kernels']} | {r['kernel_ms']:.2f} | {r['warmup_s']:.1f} |")
    if nan:
        lines += ["", "| dtype | impl | w2 | NaN/inf check |", "|---|---|---:|---|"]
        lines += [f"| {r['dtype']} | {r['impl']} | {r['w2']} | {r['status']} |" for r in nan]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=("module", "nan"), default=["module", "nan"])
    parser.add_argument("--length", type=int, default=16384)
    parser.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default="bfloat16")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_attention.py: no CUDA device", file=sys.stderr)
        return 2
    dtype = getattr(torch, args.dtype)
    module = module_rows(args.length, dtype, args.repeats, args.device) if "module" in args.parts else []
    nan = nan_rows(args.device) if "nan" in args.parts else []
    print(markdown(module, nan))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        gpu = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
        args.json.write_text(json.dumps({"gpu": gpu, "torch": torch.__version__,
                                         "dtype": args.dtype, "module": module, "nan": nan}, indent=2))
    failed = any(r["status"] != "ok" for r in module) or any(r["status"] != "passed" for r in nan)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
