"""Where a training step's memory goes: what each encoder layer keeps for backward, and where
the step peaks (CPU, the models of ``train_step.py``).

Each model runs in a fresh process with glibc's ``MALLOC_MMAP_THRESHOLD_=65536``, so every
tensor has its own mapping and the resident set follows the live tensors (no heap
fragmentation). Hooks on every encoder and decoder layer read the resident set (and its peak
since the previous hook) as forward and backward pass through it. Reports, per model: the
memory each encoder layer adds in forward (what it keeps for backward), everything the
encoder keeps, the step's peak and the interval it falls in.

Usage::

    python benchmarks/memory_timeline.py [--length 16384] [--models poolingformer full]
        [--json benchmarks/results/memory_timeline_16k.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_step  # noqa: E402  (the models, the batch and the step)

def _mib(field: str) -> float:
    return train_step.status_kib(field) / 1024


def child(kind: str, length: int) -> Dict[str, object]:
    import torch

    torch.manual_seed(0)
    model, dictionary = train_step.build_model(kind, length)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    marks: List[List[object]] = []  # [label, rss, peak since the previous mark]

    def mark(label: str) -> None:
        marks.append([label, _mib("VmRSS"), _mib("VmHWM")])
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS

    for name, module in model.named_modules():
        parts = name.split(".")
        if len(parts) == 3 and parts[1] == "layers":  # encoder.layers.i, decoder.layers.i
            module.register_forward_pre_hook(lambda *_, n=name: mark(f"forward {n}"))
            module.register_full_backward_pre_hook(lambda *_, n=name: mark(f"backward {n}"))

    # warm-up (Adam's state allocated), then the measured step
    train_step.training_step(model, dictionary, optimizer, train_step.make_batch(dictionary, 512))
    inputs = train_step.make_batch(dictionary, length)
    marks.clear()
    mark("start")
    train_step.training_step(model, dictionary, optimizer, inputs, mark)
    base = marks[0][1]
    intervals = [{"from": a[0], "to": b[0], "rss_mib": b[1] - base, "peak_mib": b[2] - base}
                 for a, b in zip(marks, marks[1:])]
    enc = [m for m in marks if str(m[0]).startswith("forward encoder.layers.")]
    enc_end = next(m for m in marks if str(m[0]).startswith("forward decoder."))
    starts = [m[1] for m in enc] + [enc_end[1]]
    peak = max(intervals, key=lambda i: i["peak_mib"])
    return {"kind": kind, "T": length, "per_encoder_layer_mib": [b - a for a, b in zip(starts, starts[1:])],
            "encoder_kept_mib": enc_end[1] - enc[0][1], "peak_mib": peak["peak_mib"],
            "peak_between": [peak["from"], peak["to"]], "intervals": intervals}


def run(kind: str, length: int, timeout: float) -> Dict[str, object]:
    env = dict(os.environ, OMP_NUM_THREADS="1", **train_step.LIVE_MEMORY_ENV)
    cmd = [sys.executable, __file__, "--child", kind, str(length)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"kind": kind, "T": length, "status": f"failed: {tail[:160]}"}
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "status": "ok"}


def markdown(rows: List[Dict[str, object]]) -> str:
    lines = ["| T | model | kept per encoder layer (MiB) | encoder keeps (MiB) | step peak (MiB) | peak between |",
             "|---:|---|---|---:|---:|---|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['T']} | {r['kind']} | {r['status']} | - | - | - |")
            continue
        layers = ", ".join(f"{x:.0f}" for x in r["per_encoder_layer_mib"])
        lines.append(f"| {r['T']} | {r['kind']} | {layers} | {r['encoder_kept_mib']:.0f} | {r['peak_mib']:.0f} "
                     f"| {r['peak_between'][0]} -> {r['peak_between'][1]} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        import torch

        torch.set_num_threads(1)
        print(json.dumps(child(sys.argv[2], int(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=16384)
    parser.add_argument("--models", nargs="+", default=["poolingformer", "full"],
                        choices=[m + sfx for m in train_step.MODELS for sfx in ("", train_step.CKPT_SUFFIX)])
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    rows = [run(kind, args.length, args.timeout) for kind in args.models]
    print(markdown(rows))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
