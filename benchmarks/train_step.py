"""Time and peak memory of one training step of BART-base-sized models on long sources (CPU).

Compares, at the same size (BART-base: 6+6 layers, 768 hidden, 12 heads, GPT-2 vocabulary of
50,265, batch 1 document, a 256-token target):

- ``poolingformer``: ``poolingformer_bart_base`` (two-level in encoder layers 2-4, level 1
  elsewhere; w1 128, w2 512, kernel 5, stride 4, LDConv, first token global);
- ``sliding``: the same model with every encoder layer level 1 only (``--pf-layers none``);
- ``full``: stock Fairseq ``bart_base`` (full self-attention) with its positions extended.

Any of them with ``+ckpt`` (e.g. ``--models poolingformer+ckpt``) runs with
``--checkpoint-activations`` (every encoder and decoder layer recomputed in the backward).

One training step = forward, label-smoothed cross-entropy, backward and an Adam update, in
``model.train()`` (dropout on). Each (model, T) runs in a fresh subprocess: the model is built,
Adam's state allocated, the kernels warmed up on a 512-token input, then the step is timed
(median of ``--repeats`` steps) and the peak memory of the first is measured as the growth of the process's peak
resident set (Linux ``VmHWM``, reset just before the step) over the resident set before it:
what the step itself needs on top of the model, gradients excluded at the start, optimizer
state included in the baseline. ``full`` is skipped above ``--max-full`` tokens, and a run
that fails (e.g. out of memory) or exceeds ``--timeout`` is reported as such.

Usage::

    python benchmarks/train_step.py [--lengths 4096 8192 16384] [--threads 2] [--repeats 1]
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
from typing import Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
MODELS = ("poolingformer", "sliding", "full")
CKPT_SUFFIX = "+ckpt"  # a model kind with this suffix runs with --checkpoint-activations
TARGET_TOKENS = 256
VOCAB = 50265


# ----------------------------------------------------------------------------- in the child


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_growth_mib(fn: Callable[[], None]) -> float:
    """Runs fn; returns (peak RSS during fn - RSS before) in MiB (Linux: VmHWM reset first)."""
    import gc

    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
    before = _status_kib("VmRSS")
    fn()
    return (_status_kib("VmHWM") - before) / 1024


def build_model(kind: str, max_source: int):
    checkpoint = kind.endswith(CKPT_SUFFIX)
    kind = kind[: -len(CKPT_SUFFIX)] if checkpoint else kind
    import fairseq_poolingformer  # noqa: F401  (registers poolingformer_bart)
    from fairseq.data import Dictionary
    from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY

    dictionary = Dictionary()
    for i in range(VOCAB - len(dictionary)):
        dictionary.add_symbol(f"tok{i}")

    class Task:
        source_dictionary = target_dictionary = dictionary

    arch = "bart_base" if kind == "full" else "poolingformer_bart_base"
    args = argparse.Namespace(arch=arch, task="translation", max_source_positions=max_source,
                              max_target_positions=1024, checkpoint_activations=checkpoint)
    if kind == "sliding":
        args.pf_layers = "none"
    ARCH_CONFIG_REGISTRY[arch](args)
    return ARCH_MODEL_REGISTRY[arch].build_model(args, Task()), dictionary


def child(kind: str, length: int, repeats: int) -> Dict[str, float]:
    import torch
    from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss

    torch.manual_seed(0)
    model, dictionary = build_model(kind, length)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    for p in model.parameters():  # allocate Adam's state now: it belongs to the baseline
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

    def batch(n_src: int):
        src = torch.randint(4, len(dictionary), (1, n_src))  # (B, T)
        src[0, -1] = dictionary.eos()
        tgt = torch.randint(4, len(dictionary), (1, TARGET_TOKENS))
        prev = torch.cat([torch.full((1, 1), dictionary.eos()), tgt[:, :-1]], dim=1)
        return src, torch.tensor([n_src]), prev, tgt

    def step(src, src_len, prev, tgt) -> None:
        logits, _ = model(src, src_len, prev)  # (B, T_tgt, V)
        lprobs = torch.log_softmax(logits.float(), dim=-1).view(-1, logits.shape[-1])
        loss, _ = label_smoothed_nll_loss(lprobs, tgt.view(-1), 0.1, ignore_index=dictionary.pad())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(*batch(512))  # warm-up: kernels, allocator
    inputs = batch(length)
    times: List[float] = []

    def timed_step() -> None:
        t0 = time.perf_counter()
        step(*inputs)
        times.append(time.perf_counter() - t0)

    peak = peak_growth_mib(timed_step)  # the first step is timed too
    for _ in range(repeats - 1):
        timed_step()
    return {"step_s": statistics.median(times), "step_s_min": min(times),
            "step_s_max": max(times), "peak_mib": peak,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6}


# ----------------------------------------------------------------------------- the driver


def run_one(kind: str, length: int, threads: int, repeats: int, timeout: float) -> Dict[str, object]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, __file__, "--child", kind, str(length), str(repeats), str(threads)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
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


def markdown(rows: List[Dict[str, object]]) -> str:
    lines = ["| source tokens | model | one training step (s) | peak memory of the step (MiB) |",
             "|---:|---|---:|---:|"]
    for r in rows:
        if r["status"] == "ok":
            spread = f" ({r['step_s_min']:.1f}-{r['step_s_max']:.1f})" if r["step_s_max"] > r["step_s_min"] else ""
            lines.append(f"| {r['T']} | {r['model']} | {r['step_s']:.1f}{spread} | {r['peak_mib']:.0f} |")
        else:
            lines.append(f"| {r['T']} | {r['model']} | {r['status']} | - |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> List[Dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 8192, 16384])
    parser.add_argument("--models", nargs="+", default=list(MODELS),
                        choices=[m + sfx for m in MODELS for sfx in ("", CKPT_SUFFIX)],
                        help=f"'{CKPT_SUFFIX}' = with --checkpoint-activations (encoder and decoder)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="timed steps per run (median)")
    parser.add_argument("--max-full", type=int, default=16384, help="longest source for full attention")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per (model, length) run")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)

    rows = []
    for length in args.lengths:
        for kind in args.models:
            if kind.startswith("full") and length > args.max_full:
                result: Dict[str, object] = {"status": f"skipped (> --max-full {args.max_full})"}
            else:
                result = run_one(kind, length, args.threads, args.repeats, args.timeout)
            rows.append({"T": length, "model": kind, **result})
            print(f"T={length} {kind}: {result}", file=sys.stderr, flush=True)
    print(f"\nOne training step, batch 1, {TARGET_TOKENS} target tokens, BART-base size, "
          f"CPU, {args.threads} threads:\n")
    print(markdown(rows))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, length, repeats, threads = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        import torch

        torch.set_num_threads(threads)
        print(json.dumps(child(kind, length, repeats)))
    else:
        main()
