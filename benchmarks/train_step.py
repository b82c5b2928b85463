"""Time and peak memory of one training step of BART-base-sized models on long sources (CPU,
or CUDA with ``--device cuda``).

Compares, at the same size (BART-base: 6+6 layers, 768 hidden, 12 heads, GPT-2 vocabulary of
50,265, batch 1 document, a 256-token target):

- ``poolingformer``: ``poolingformer_bart_base`` (two-level in encoder layers 2-4, level 1
  elsewhere; w1 128, w2 512, kernel 5, stride 4, LDConv, first token global);
- ``sliding``: the same model with every encoder layer level 1 only (``--pf-layers none``);
- ``full``: stock Fairseq ``bart_base`` (full self-attention) with its positions extended;
- ``led``: transformers' LED-base built from its config (no download): window 1024 (512 each
  side), first token global.

Any of them with ``+ckpt`` (e.g. ``--models poolingformer+ckpt``) runs with
``--checkpoint-activations`` (every encoder and decoder layer recomputed in the backward).

One training step = forward, label-smoothed cross-entropy, backward and an Adam update, in
``model.train()`` (dropout on). Each (model, T) runs in a fresh subprocess: the model is built,
Adam's state allocated, the kernels warmed up on a 512-token input, then ``--repeats`` steps are
timed at the full length. The first of them also pays for growing the heap to the step's size (page
faults); with ``--repeats`` of 2 or more it is reported apart (``first_step_s``) and the row's
step time is the median of the others, the steady step a training run is made of. The peak
memory of the first is measured as the growth of the process's peak
resident set (Linux ``VmHWM``, reset just before the step) over the resident set before it:
what the step itself needs on top of the model, gradients excluded at the start, optimizer
state included in the baseline. ``full`` is skipped above ``--max-full`` tokens, and a run
that fails (e.g. out of memory) or exceeds ``--timeout`` is reported as such.

Every row also reports the step's **matmul bound** (``step_flops``: the FLOPs of the matmuls
the step cannot avoid, counted from the shapes, over this machine's dense fp32 matmul rate
measured at the start of the same run) and the step time as a multiple of it.

``--baseline COMMIT`` (or a directory holding the package) also runs every Poolingformer model
with the package as it was then, interleaved with the working tree's: rows ``before`` and
``after``. ``--malloc-env`` adds a ``+malloc`` row per model with glibc's
``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` raised (see docs/benchmark.md).
``--live-memory`` runs every row once more (one untimed step) with glibc's
``MALLOC_MMAP_THRESHOLD_=65536``: every tensor then has its own mapping, returned when it is
freed, so the peak is that of the live tensors (what a GPU's caching allocator would need), free
of the heap fragmentation that the fast allocator settings add to the resident set.
``--rounds N`` repeats the whole interleaved sequence and reports medians. ``--profile``
profiles one step per row instead (after one unprofiled step at the same length) and reports
the share of self CPU time in matmul, SDPA, copy, fill and other ops, with the raw op table.

``--device cuda`` runs the same step on the GPU, with the weights and activations in
``--dtype`` (a half dtype gives half weights, as ``fairseq-train --fp16``/``--bf16`` do): the
step is timed between ``torch.cuda.synchronize()`` calls, peak memory is the CUDA allocator's
peak of live tensors over what was allocated before the step, and the matmul bound uses the
GPU's rate in that dtype. ``--attention-impl`` picks how the Poolingformer models run their
attention (default auto: FlexAttention on CUDA, the eager kernels on the CPU); ``--compile`` runs
every model, Poolingformer and the others alike, under ``torch.compile`` (the first steps then
pay for compiling: the steady step is the median of the later ones). ``--profile`` on CUDA also
counts the CUDA kernels of the step and their time.

Usage::

    python benchmarks/train_step.py [--lengths 4096 8192 16384] [--threads 2] [--repeats 1]
        [--models poolingformer sliding full led] [--baseline COMMIT] [--malloc-env] [--live-memory] [--rounds 1]
        [--profile] [--device cuda --dtype bfloat16] [--attention-impl auto] [--compile]
        [--json benchmarks/results/train_step.json]

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
MODELS = ("poolingformer", "sliding", "full", "led")
CKPT_SUFFIX = "+ckpt"  # a model kind with this suffix runs with --checkpoint-activations
TARGET_TOKENS = 256
VOCAB = 50265


# ----------------------------------------------------------------------------- in the child


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_growth_mib(fn: Callable[[], None], device: str = "cpu") -> float:
    """Runs fn; returns (peak RSS during fn - RSS before) in MiB (Linux: VmHWM reset first).
    On CUDA: the CUDA allocator's peak of allocated tensors during fn over what was allocated
    before (live tensors, as ``--live-memory`` measures on the CPU)."""
    import gc

    gc.collect()
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
    before = status_kib("VmRSS")
    fn()
    return (status_kib("VmHWM") - before) / 1024


def fairseq_dictionary():
    """A GPT-2-sized Fairseq dictionary (pad 1, eos 2: LED's ids too)."""
    from fairseq.data import Dictionary

    dictionary = Dictionary()
    for i in range(VOCAB - len(dictionary)):
        dictionary.add_symbol(f"tok{i}")
    return dictionary


def build_model(kind: str, max_source: int, impl: str = "auto"):
    checkpoint = kind.endswith(CKPT_SUFFIX)
    kind = kind[: -len(CKPT_SUFFIX)] if checkpoint else kind
    if kind == "led":
        return build_led(max_source, checkpoint), fairseq_dictionary()
    import fairseq_poolingformer  # noqa: F401  (registers poolingformer_bart)
    from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY

    dictionary = fairseq_dictionary()

    class Task:
        source_dictionary = target_dictionary = dictionary

    arch = "bart_base" if kind == "full" else "poolingformer_bart_base"
    args = argparse.Namespace(arch=arch, task="translation", max_source_positions=max_source,
                              max_target_positions=1024, checkpoint_activations=checkpoint, attention_impl=impl)
    if kind == "sliding":
        args.pf_layers = "none"
    ARCH_CONFIG_REGISTRY[arch](args)
    return ARCH_MODEL_REGISTRY[arch].build_model(args, Task()), dictionary


def build_led(max_source: int, checkpoint: bool):
    """HF LED-base from its config (no download): 6+6 layers, 768 hidden, 12 heads, window 1024
    (512 each side), first token global; gradient checkpointing with ``+ckpt``."""
    import transformers

    cfg = transformers.LEDConfig(
        vocab_size=VOCAB, d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
        decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072, attention_window=[1024] * 6,
        max_encoder_position_embeddings=max_source, max_decoder_position_embeddings=1024,
        dropout=0.1, attention_dropout=0.1)
    model = transformers.LEDForConditionalGeneration(cfg)
    if checkpoint:
        model.gradient_checkpointing_enable()
    return model


class LEDStep:
    """LED's (src, src_len, prev, tgt) -> logits adapter: the first token is global."""

    def __init__(self, model) -> None:
        self.model = model

    def __call__(self, src, src_len, prev):
        glob = torch_zeros_like_bool(src)
        glob[:, 0] = True
        out = self.model(input_ids=src, global_attention_mask=glob.long(), decoder_input_ids=prev)
        return out.logits, None


def torch_zeros_like_bool(x):
    import torch

    return torch.zeros_like(x, dtype=torch.bool)


# ----------------------------------------------------------------------------- the matmul bound

ENC_LAYERS = DEC_LAYERS = 6
DIM, FFN, HEADS = 768, 3072, 12
W1, W2, KERNEL, STRIDE, TWO_LEVEL_LAYERS = 128, 512, 5, 4, 3  # poolingformer_bart_base
LED_ONE_SIDE = 512


def _banded_keys(length: int, one_side: int) -> int:
    """Sum over queries i of |{j in [0, T): |i - j| <= one_side}|, plus the first token as global
    (for rows outside its window) and its own full row."""
    w = min(one_side, length - 1)
    band = length * (2 * w + 1) - w * (w + 1)
    return band + max(0, length - 1 - w) + length


def _pooled_keys(length: int) -> int:
    """Sum over queries of the segments whose centre s*stride + (kernel-1)/2 is within w2."""
    segments = -(-length // STRIDE)
    half = (KERNEL - 1) / 2
    total = 0
    for i in range(length):
        lo = max(0, -int(-(i - W2 - half) // STRIDE))  # ceil
        hi = min(segments - 1, int((i + W2 - half) // STRIDE))
        total += max(0, hi - lo + 1)
    return total


def step_flops(kind: str, length: int) -> Dict[str, float]:
    """FLOPs of the matmuls a training step cannot avoid, counted from the shapes (2 per
    multiply-add; backward = 2x forward, for the input and the weight gradients):

    - every linear layer on the rows it must see: encoder q/k/v/out (4 T C^2) and FFN
      (2 T C F) per layer; level 2 adds q2 and out2 on T rows and k2, v2 on the T/stride
      pooled rows (LDConv's W_p folds into W_k, so the centres need no projection);
      LED adds its global k/v projections (2 T C^2 per layer);
    - attention QK^T and AV (4 D H flops per query-key pair) over the allowed keys only:
      |i-j| <= w1 plus the global first token (and its full row) for level 1, the segments
      within w2 for level 2, T^2 for full attention, |i-j| <= 512 + global for LED;
    - the decoder (256 target tokens): self-attention, cross-attention whose k/v
      projections run over the T source rows, FFN, and the output projection to the vocabulary.
    Returns {"forward": F, "step": 3 F} in FLOPs.
    """
    base = kind[: -len(CKPT_SUFFIX)] if kind.endswith(CKPT_SUFFIX) else kind
    t, tt, c = length, TARGET_TOKENS, DIM
    pair = 4 * c  # QK^T + AV over all heads, per (query, key) pair
    enc = ENC_LAYERS * (4 * 2 * t * c * c + 2 * 2 * t * c * FFN)
    if base == "full":
        enc += ENC_LAYERS * pair * t * t
    elif base == "led":
        enc += ENC_LAYERS * (2 * 2 * t * c * c + pair * _banded_keys(t, LED_ONE_SIDE))
    else:
        enc += ENC_LAYERS * pair * _banded_keys(t, W1)
        if base == "poolingformer":
            segments = -(-t // STRIDE)
            enc += TWO_LEVEL_LAYERS * (2 * 2 * t * c * c + 2 * 2 * segments * c * c + pair * _pooled_keys(t))
    dec = DEC_LAYERS * (4 * 2 * tt * c * c + pair * tt * (tt + 1) // 2  # self-attention
                        + 2 * 2 * tt * c * c + 2 * 2 * t * c * c + pair * tt * t  # cross-attention
                        + 2 * 2 * tt * c * FFN)
    forward = enc + dec + 2 * tt * c * VOCAB
    return {"forward": float(forward), "step": float(3 * forward)}


def matmul_rate(threads: int, repeats: int = 5, device: str = "cpu", dtype: str = "float32") -> float:
    """This machine's dense matmul rate (FLOP/s) at the step's typical shape
    (4096 x 768 @ 768 x 3072) on ``device`` in ``dtype``, median of ``repeats`` (of 20
    back-to-back products on CUDA, where one is too short to time)."""
    import torch

    torch.set_num_threads(threads)
    a = torch.randn(4096, DIM, device=device, dtype=getattr(torch, dtype))
    b = torch.randn(DIM, FFN, device=device, dtype=a.dtype)
    inner = 20 if device == "cuda" else 1
    a @ b
    times = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(inner):
            a @ b
        synchronize(device)
        times.append((time.perf_counter() - t0) / inner)
    return 2 * 4096 * DIM * FFN / statistics.median(times)


def synchronize(device: str) -> None:
    """Waits for the GPU's queued work (CUDA runs asynchronously); nothing on the CPU."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- the profile

CATEGORIES = {  # aten op -> share of the step it is counted in (self CPU time)
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addmv", "aten::mv",
               "aten::matmul", "aten::linear", "aten::_addmm_activation"),
    "sdpa": ("scaled_dot_product", "flash_attention"),
    "copy": ("aten::copy_", "aten::cat", "aten::index", "aten::index_put_", "aten::_index_put_impl_",
             "aten::clone", "aten::contiguous", "aten::constant_pad_nd", "aten::as_strided_scatter",
             "aten::unfold_backward", "aten::index_add_", "aten::gather", "aten::scatter_add_"),
    "fill": ("aten::fill_", "aten::zero_", "aten::zeros", "aten::zeros_like", "aten::new_zeros"),
}


def _category(name: str) -> str:
    if any(key in name for key in CATEGORIES["sdpa"]):
        return "sdpa"
    for cat in ("matmul", "copy", "fill"):
        if name in CATEGORIES[cat]:
            return cat
    return "other"


def profile_step(step: Callable[[], None], device: str = "cpu") -> Dict[str, object]:
    """One step under torch.profiler: self CPU time per aten op, grouped into CATEGORIES; on
    CUDA also the number of CUDA kernels launched and their summed time (``cuda``)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
        synchronize(device)
    ops = [{"op": e.key, "calls": e.count, "self_s": e.self_cpu_time_total / 1e6}
           for e in prof.key_averages() if e.self_cpu_time_total > 0]
    ops.sort(key=lambda o: -o["self_s"])
    total = sum(o["self_s"] for o in ops)
    shares: Dict[str, float] = {}
    seconds: Dict[str, float] = {}
    for o in ops:
        cat = _category(o["op"])
        seconds[cat] = seconds.get(cat, 0.0) + o["self_s"]
    for cat in ("matmul", "sdpa", "copy", "fill", "other"):
        seconds.setdefault(cat, 0.0)
        shares[cat] = seconds[cat] / total
    calls = {name: sum(o["calls"] for o in ops if o["op"] == name) for name in ("aten::copy_", "aten::fill_")}
    result = {"profiled_s": total, "share": shares, "seconds": seconds, "calls": calls, "top_ops": ops[:40]}
    if device == "cuda":
        result["cuda"] = cuda_kernels(prof.events())
    return result


def cuda_kernels(events) -> Dict[str, object]:
    """The CUDA kernels of a profiled step: how many were launched, their summed time, and
    the 20 that took longest in all (name, launches, seconds)."""
    from torch.autograd import DeviceType

    kernels: Dict[str, List[float]] = {}
    for e in events:
        if e.device_type == DeviceType.CUDA:
            kernels.setdefault(e.name, []).append(e.device_time_total / 1e6)
    top = sorted(([name, len(t), sum(t)] for name, t in kernels.items()), key=lambda k: -k[2])
    return {"kernels": sum(len(t) for t in kernels.values()), "kernel_s": sum(k[2] for k in top),
            "top_kernels": top[:20]}


def make_batch(dictionary, n_src: int, device: str = "cpu"):
    """One random document of n_src tokens and a TARGET_TOKENS target: (src, src_lengths, prev, tgt)."""
    import torch

    src = torch.randint(4, len(dictionary), (1, n_src))  # (B, T)
    src[0, -1] = dictionary.eos()
    tgt = torch.randint(4, len(dictionary), (1, TARGET_TOKENS))
    prev = torch.cat([torch.full((1, 1), dictionary.eos()), tgt[:, :-1]], dim=1)
    return tuple(x.to(device) for x in (src, torch.tensor([n_src]), prev, tgt))


def training_step(forward, dictionary, optimizer, inputs, mark: Callable[[str], None] = lambda label: None) -> None:
    """Forward, label-smoothed loss, backward and an Adam update on make_batch's inputs;
    mark(label) is called after the loss, the backward and the update."""
    import torch
    from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss

    src, src_len, prev, tgt = inputs
    logits, _ = forward(src, src_len, prev)  # (B, T_tgt, V)
    lprobs = torch.log_softmax(logits.float(), dim=-1).view(-1, logits.shape[-1])
    loss, _ = label_smoothed_nll_loss(lprobs, tgt.view(-1), 0.1, ignore_index=dictionary.pad())
    mark("loss")
    loss.backward()
    mark("backward done")
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    mark("optimizer done")


def child(kind: str, length: int, repeats: int, profile: bool = False, device: str = "cpu",
          dtype: str = "float32", impl: str = "auto", compile_: bool = False) -> Dict[str, object]:
    import torch

    torch.manual_seed(0)
    model, dictionary = build_model(kind, length, impl)
    model.to(device, getattr(torch, dtype))  # half dtypes: half weights, as fairseq-train --fp16/--bf16
    forward = torch.compile(model) if compile_ else model
    forward = LEDStep(forward) if kind.startswith("led") else forward
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    for p in model.parameters():  # allocate Adam's state now: it belongs to the baseline
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

    def batch(n_src: int):
        return make_batch(dictionary, n_src, device)

    def step(*inputs) -> None:
        training_step(forward, dictionary, optimizer, inputs)

    step(*batch(512 if kind.split("+")[0] != "led" else 1024))  # warm-up: kernels, allocator
    inputs = batch(length)
    if profile:
        step(*inputs)  # a first step at the full length: the profile sees a warm allocator
        return profile_step(lambda: step(*inputs), device)
    times: List[float] = []

    def timed_step() -> None:
        synchronize(device)
        t0 = time.perf_counter()
        step(*inputs)
        synchronize(device)
        times.append(time.perf_counter() - t0)

    peak = peak_growth_mib(timed_step, device)  # the first step is timed too
    for _ in range(repeats - 1):
        timed_step()
    return {"step_times": times, "peak_mib": peak,  # _median_rows derives the first and steady steps
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6}


def steady_steps(times: List[float]) -> List[float]:
    """The steps a long training run is made of: all but the first full-length step, which also
    pays for growing the heap (page faults) and is reported apart as ``first_step_s``; the first
    itself when it is the only one (``--repeats 1``)."""
    return times[1:] or times


# ----------------------------------------------------------------------------- the driver


def export_tree(commit: str) -> Path:
    """The package as it was at ``commit`` in a temporary directory (for before/after runs);
    ``commit`` may also be a directory that holds a ``fairseq_poolingformer`` package."""
    import tempfile

    if (Path(commit) / "fairseq_poolingformer").is_dir():
        return Path(commit)
    out = Path(tempfile.mkdtemp(prefix=f"train_step_{commit[:7]}_"))
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "fairseq_poolingformer"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out


def run_one(kind: str, length: int, threads: int, repeats: int, timeout: float,
            tree: Path = REPO, profile: bool = False, env_extra: Optional[Dict[str, str]] = None,
            device: str = "cpu", dtype: str = "float32", impl: str = "auto",
            compile_: bool = False) -> Dict[str, object]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONPATH=str(tree) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env_extra or {}))
    cmd = [sys.executable, __file__, "--child", kind, str(length), str(repeats), str(threads), str(int(profile)),
           device, dtype, impl, str(int(compile_))]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=tree)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout > {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        killed = proc.returncode in (-9, 137)
        return {"status": "out of memory (killed)" if killed else f"failed: {tail[:120]}"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["status"] = "ok"
    result["wall_s"] = time.perf_counter() - t0
    return result


def seconds(x: float) -> str:
    """A step time for the table: tenths of a second on the CPU, milliseconds below a second (GPU)."""
    return f"{x:.1f}" if x >= 1 else f"{x:.3f}"


def markdown(rows: List[Dict[str, object]]) -> str:
    live = any(r.get("live_peak_mib") is not None for r in rows)
    repeated = any(len(r.get("step_times", ())) > 1 for r in rows)  # steady steps apart from the first
    lines = ["| source tokens | model | variant | "
             + ("first step (s) | steady step (s) " if repeated else "one training step (s) ")
             + "| peak memory of the step (MiB) " + ("| peak of live tensors (MiB) " if live else "")
             + "| x matmul bound |",
             "|---:|---|---|" + ("---:|" if repeated else "") + "---:|---:|" + ("---:|" if live else "") + "---:|"]
    for r in rows:
        if r["status"] == "ok":
            spread = f" ({seconds(r['step_s_min'])}-{seconds(r['step_s_max'])})" if r["step_s_max"] > r["step_s_min"] else ""
            bound = f"{r['step_s'] / r['bound_s']:.2f}" if r.get("bound_s") else "-"
            live_cell = "" if not live else (
                f"| {r['live_peak_mib']:.0f} " if r.get("live_peak_mib") is not None else "| - ")
            first_cell = f"{seconds(r['first_step_s'])} | " if repeated else ""
            lines.append(f"| {r['T']} | {r['model']} | {r.get('variant', '')} | {first_cell}{seconds(r['step_s'])}{spread} "
                         f"| {r['peak_mib']:.0f} {live_cell}| {bound} |")
        else:
            dashes = " | -" * (2 + repeated + live)  # the row's other figures
            lines.append(f"| {r['T']} | {r['model']} | {r.get('variant', '')} | {r['status']}{dashes} |")
    return "\n".join(lines)


def _median_rows(runs: List[Dict[str, object]]) -> Dict[str, object]:
    """One row from the rounds of a (T, model, variant): median step time, max peak memory."""
    ok = [r for r in runs if r["status"] == "ok"]
    if not ok:
        return runs[-1]
    times = [t for r in ok for t in steady_steps(r["step_times"])]
    return {**ok[0], "step_s": statistics.median(times), "step_s_min": min(times), "step_s_max": max(times),
            "first_step_s": statistics.median(r["step_times"][0] for r in ok),
            "peak_mib": max(r["peak_mib"] for r in ok), "rounds": len(ok),
            "live_peak_mib": max((r["live_peak_mib"] for r in ok if r.get("live_peak_mib") is not None), default=None)}


def main(argv: Optional[List[str]] = None) -> List[Dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 8192, 16384])
    parser.add_argument("--models", nargs="+", default=list(MODELS),
                        choices=[m + sfx for m in MODELS for sfx in ("", CKPT_SUFFIX)],
                        help=f"'{CKPT_SUFFIX}' = with --checkpoint-activations (encoder and decoder)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="timed steps per run (median)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="runs of every (T, model, variant), interleaved round by round (median)")
    parser.add_argument("--baseline", metavar="COMMIT",
                        help="also run every Poolingformer model with the package as it was at COMMIT (or in a "
                             "directory holding it), "
                             "interleaved with the working tree's (variant 'before' vs 'after')")
    parser.add_argument("--malloc-env", action="store_true",
                        help="also run every model with glibc's MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ "
                             "raised (variant '+malloc')")
    parser.add_argument("--live-memory", action="store_true",
                        help="also measure every row's peak of live tensors (one more step with "
                             "MALLOC_MMAP_THRESHOLD_=65536: no heap fragmentation)")
    parser.add_argument("--profile", action="store_true",
                        help="profile one step per (T, model, variant) instead of timing it: shares of matmul, "
                             "SDPA, copy, fill and other, written as JSON (--json)")
    parser.add_argument("--max-full", type=int, default=16384, help="longest source for full attention")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per (model, length) run")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: time with CUDA synchronisation, peak = the CUDA allocator's (live tensors)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                        help="the model's weights and activations (half dtypes: CUDA only)")
    parser.add_argument("--attention-impl", choices=("auto", "eager", "flex", "compiled"), default="auto",
                        help="the Poolingformer models' attention path (docs/GPU.md)")
    parser.add_argument("--compile", action="store_true", help="every model under torch.compile")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    if args.device == "cpu" and args.dtype != "float32":
        parser.error("--dtype bfloat16/float16 needs --device cuda")
    if args.device == "cuda" and (args.live_memory or args.malloc_env):
        parser.error("--live-memory and --malloc-env are CPU measurements: the CUDA peak is of live tensors already")

    variants: List[Tuple[str, Path, Dict[str, str]]] = [("after" if args.baseline else "", REPO, {})]
    if args.baseline:
        variants.insert(0, ("before", export_tree(args.baseline), {}))
    if args.malloc_env:
        variants.append(("+malloc", REPO, MALLOC_ENV))
    rate = matmul_rate(args.threads, device=args.device, dtype=args.dtype)
    where = f"CPU, {args.threads} threads" if args.device == "cpu" else f"CUDA, {args.dtype}"
    where += f", attention {args.attention_impl}" + (", every model compiled" if args.compile else "")
    print(f"dense matmul rate: {rate / 1e9:.1f} GFLOP/s at {where}", file=sys.stderr, flush=True)
    runs: Dict[Tuple[int, str, str], List[Dict[str, object]]] = {}
    for rnd in range(args.rounds):
        for length in args.lengths:
            for kind in args.models:
                for name, tree, env_extra in variants:
                    stock = kind.startswith(("full", "led"))  # not this package's code
                    if stock and name == "before":
                        continue
                    if kind.startswith("full") and length > args.max_full:
                        result: Dict[str, object] = {"status": f"skipped (> --max-full {args.max_full})"}
                    else:
                        result = run_one(kind, length, args.threads, args.repeats, args.timeout,
                                         tree, args.profile, env_extra, args.device, args.dtype,
                                         args.attention_impl, args.compile)
                        if args.live_memory and result["status"] == "ok":
                            live = run_one(kind, length, args.threads, 1, args.timeout, tree, False,
                                           {**env_extra, **LIVE_MEMORY_ENV})
                            result["live_peak_mib"] = live.get("peak_mib")
                    variant = "" if stock and name == "after" else name
                    runs.setdefault((length, kind, variant), []).append(result)
                    print(f"round {rnd} T={length} {kind} {variant}: "
                          f"{ {k: v for k, v in result.items() if k != 'top_ops'} }", file=sys.stderr, flush=True)
    rows = []
    for (length, kind, variant), results in runs.items():
        row = {"T": length, "model": kind, "variant": variant}
        if args.profile:
            row.update(results[-1])
        else:
            row.update(_median_rows(results))
            bound = step_flops(kind, length)["step"] / rate
            row.update({"bound_flop": step_flops(kind, length)["step"], "bound_s": bound})
        rows.append(row)
    header = (f"One training step, batch 1, {TARGET_TOKENS} target tokens, BART-base size, "
              f"{where}, dense matmul rate {rate / 1e9:.1f} GFLOP/s")
    print(f"\n{header}:\n")
    if args.profile:
        print(profile_markdown(rows))
    else:
        print(markdown(rows))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"threads": args.threads, "device": args.device, "dtype": args.dtype,
                                               "attention_impl": args.attention_impl, "compile": args.compile,
                                               "matmul_gflops": rate / 1e9,
                                               "date": time.strftime("%Y-%m-%d"), "rows": rows}, indent=2))
    return rows


MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 31)}
LIVE_MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def profile_markdown(rows: List[Dict[str, object]]) -> str:
    cuda = any("cuda" in r for r in rows)  # kernels launched and their time
    lines = ["| source tokens | model | variant | profiled step (s) | matmul | SDPA | copy | fill | other | copy_ calls | fill_ calls |"
             + (" CUDA kernels | kernel time (ms) |" if cuda else ""),
             "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if cuda else "")]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['T']} | {r['model']} | {r['variant']} | {r['status']} |" + " - |" * (7 + 2 * cuda))
            continue
        sh = r["share"]
        kernels = f" {r['cuda']['kernels']} | {1e3 * r['cuda']['kernel_s']:.1f} |" if cuda else ""
        lines.append(f"| {r['T']} | {r['model']} | {r['variant']} | {r['profiled_s']:.1f} | "
                     + " | ".join(f"{100 * sh[c]:.1f}%" for c in ("matmul", "sdpa", "copy", "fill", "other"))
                     + f" | {r['calls']['aten::copy_']} | {r['calls']['aten::fill_']} |" + kernels)
    return "\n".join(lines)

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, length, repeats, threads = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        import torch

        torch.set_num_threads(threads)
        print(json.dumps(child(kind, length, repeats, profile=sys.argv[6] == "1", device=sys.argv[7],
                               dtype=sys.argv[8], impl=sys.argv[9], compile_=sys.argv[10] == "1")))
    else:
        main()
