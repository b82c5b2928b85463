"""Inference time and peak memory at the lengths users run (CPU), before and after a change.

Two workloads, each in a fresh subprocess per (workload, variant), interleaved round by round:

- ``qa``: QA prediction over 4096-token windows, as ``predict_qa`` and the reader run it:
  ``poolingformer_roberta_base`` (12 layers, 768 hidden, two-level in layers 5-7; w1 128,
  w2 512, kernel 5, stride 4) in eval mode under ``torch.no_grad``, the first 64 tokens of each
  window global (the question), the ``long_qa`` head on top; ``--windows`` windows in batches of
  ``--batch-size``. Reported per window.
- ``generate``: beam search from a long source, as ``fairseq-generate`` / ``pf-summarize`` run
  it: ``poolingformer_bart_base`` (two-level in encoder layers 2-4), Fairseq's
  ``SequenceGenerator`` with beam 5 and length penalty 2 over a ``--source``-token document
  (16,384 by default), exactly ``--target`` tokens (min = max length, so every variant decodes
  the same number of steps with random weights).

Weights are random (seeded): time and memory do not depend on them. ``--baseline COMMIT`` (or a
directory holding the package) also runs each workload with the package as it was then: rows
``before`` and ``after`` in one run, so that the ratio is measured on the same machine at the
same moment. Peak memory = growth of the process's peak RSS over the RSS before the timed call
(as ``benchmarks/train_step.py`` measures a training step).

Usage::

    python benchmarks/inference.py [--workloads qa generate] [--threads 1] [--rounds 1]
        [--windows 4] [--batch-size 2] [--source 16384] [--target 32] [--baseline COMMIT]
        [--json benchmarks/results/inference.json]

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
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import REPO, export_tree, fairseq_dictionary, peak_growth_mib  # noqa: E402

WINDOW, QUESTION = 4096, 64


class _Task:
    """The little of a Fairseq task that building the models needs."""

    def __init__(self, dictionary, max_positions: int):
        self.source_dictionary = self.target_dictionary = dictionary
        self._max = max_positions

    def max_positions(self):
        return self._max


def qa_child(windows: int, batch_size: int) -> Dict[str, object]:
    """Seconds per 4096-token window of QA prediction (forward + long_qa head, no_grad)."""
    import torch
    import fairseq_poolingformer  # noqa: F401  (registers the models)
    from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY

    dictionary = fairseq_dictionary()
    args = argparse.Namespace(arch="poolingformer_roberta_base", max_positions=WINDOW)
    ARCH_CONFIG_REGISTRY[args.arch](args)
    model = ARCH_MODEL_REGISTRY[args.arch].build_model(args, _Task(dictionary, WINDOW))
    model.register_qa_head("long_qa")
    model.eval()

    def batch(n: int, length: int):
        src = torch.randint(4, len(dictionary), (n, length))  # (B, T)
        src[:, 0], src[:, -1] = dictionary.bos(), dictionary.eos()
        glob = torch.zeros_like(src, dtype=torch.bool)
        glob[:, :QUESTION] = True
        return src, glob

    def run(src, glob) -> None:
        with torch.no_grad():
            model(src, global_mask=glob, qa_head="long_qa")

    run(*batch(1, 512))  # warm-up: kernels, allocator
    inputs = [batch(min(batch_size, windows - i), WINDOW) for i in range(0, windows, batch_size)]
    times: List[float] = []

    def timed() -> None:
        t0 = time.perf_counter()
        for b in inputs:
            run(*b)
        times.append(time.perf_counter() - t0)

    peak = peak_growth_mib(timed)
    return {"seconds": times[0], "per_unit_s": times[0] / windows, "unit": "window", "peak_mib": peak}


def generate_child(source: int, target: int) -> Dict[str, object]:
    """Seconds of one beam search (beam 5, lenpen 2) of exactly ``target`` tokens from ``source``."""
    import torch
    import fairseq_poolingformer  # noqa: F401
    from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY
    from fairseq.sequence_generator import SequenceGenerator

    torch.manual_seed(0)
    dictionary = fairseq_dictionary()
    args = argparse.Namespace(arch="poolingformer_bart_base", task="translation", max_source_positions=source,
                              max_target_positions=1024)
    ARCH_CONFIG_REGISTRY[args.arch](args)
    model = ARCH_MODEL_REGISTRY[args.arch].build_model(args, _Task(dictionary, (source, 1024)))
    model.eval()
    generator = SequenceGenerator([model], dictionary, beam_size=5, len_penalty=2.0, min_len=target,
                                  max_len_a=0, max_len_b=target)

    def sample(n: int):
        src = torch.randint(4, len(dictionary), (1, n))  # (B, T)
        src[0, -1] = dictionary.eos()
        return {"net_input": {"src_tokens": src, "src_lengths": torch.tensor([n])}}

    with torch.no_grad():
        generator.generate([model], sample(512))  # warm-up
    big = sample(source)
    times: List[float] = []

    def timed() -> None:
        t0 = time.perf_counter()
        with torch.no_grad():
            hypos = generator.generate([model], big)
        times.append(time.perf_counter() - t0)
        assert len(hypos[0][0]["tokens"]) == target + 1  # + </s>

    peak = peak_growth_mib(timed)
    return {"seconds": times[0], "per_unit_s": times[0] / target, "unit": "target token", "peak_mib": peak}


def run_one(workload: str, opts: argparse.Namespace, tree: Path) -> Dict[str, object]:
    env = dict(os.environ, OMP_NUM_THREADS=str(opts.threads), MKL_NUM_THREADS=str(opts.threads),
               PYTHONPATH=str(tree) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, __file__, "--child", workload, str(opts.windows), str(opts.batch_size),
           str(opts.source), str(opts.target), str(opts.threads)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=opts.timeout, cwd=tree)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout > {opts.timeout:.0f} s"}
    if proc.returncode != 0:
        return {"status": "failed: " + ((proc.stderr.strip().splitlines() or ["?"])[-1])[:160]}
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "status": "ok"}


def markdown(rows: List[Dict[str, object]]) -> str:
    lines = ["| workload | variant | seconds (median) | per unit | peak memory (MiB) |", "|---|---|---:|---:|---:|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['workload']} | {r['variant']} | {r['status']} | - | - |")
            continue
        lines.append(f"| {r['workload']} | {r['variant']} | {r['seconds']:.2f} | {r['per_unit_s']:.3f} s / "
                     f"{r['unit']} | {r['peak_mib']:.0f} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> List[Dict[str, object]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", nargs="+", choices=("qa", "generate"), default=["qa", "generate"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=1, help="runs of every (workload, variant), interleaved")
    p.add_argument("--windows", type=int, default=4, help="qa: 4096-token windows predicted")
    p.add_argument("--batch-size", type=int, default=2, help="qa: windows per forward")
    p.add_argument("--source", type=int, default=16384, help="generate: source tokens")
    p.add_argument("--target", type=int, default=32, help="generate: tokens generated (beam 5)")
    p.add_argument("--baseline", metavar="COMMIT", help="also run the package as it was at COMMIT (or in a directory)")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--json", help="also write the rows here")
    opts = p.parse_args(argv)
    trees = [("after" if opts.baseline else "", REPO)]
    if opts.baseline:
        trees.insert(0, ("before", export_tree(opts.baseline)))
    runs: Dict[tuple, List[Dict[str, object]]] = {}
    for _ in range(opts.rounds):
        for workload in opts.workloads:
            for variant, tree in trees:
                result = run_one(workload, opts, tree)
                print(f"{workload} {variant}: {result}", file=sys.stderr, flush=True)
                runs.setdefault((workload, variant), []).append(result)
    rows = []
    for (workload, variant), results in runs.items():
        ok = [r for r in results if r["status"] == "ok"]
        row = {"workload": workload, "variant": variant, "threads": opts.threads, "rounds": len(ok),
               **({k: v for k, v in ok[0].items()} if ok else results[-1])}
        if ok:
            row.update(seconds=statistics.median(r["seconds"] for r in ok),
                       per_unit_s=statistics.median(r["per_unit_s"] for r in ok),
                       peak_mib=max(r["peak_mib"] for r in ok), all_seconds=[r["seconds"] for r in ok])
        rows.append(row)
    settings = (f"{opts.threads} thread(s); qa: {opts.windows} windows of {WINDOW} tokens in batches of "
                f"{opts.batch_size}; generate: {opts.source} source tokens, beam 5, {opts.target} tokens")
    print(f"\nInference, CPU, {settings}:\n\n{markdown(rows)}")
    if opts.json:
        Path(opts.json).write_text(json.dumps({"settings": vars(opts), "rows": rows}, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        workload, windows, batch_size, source, target, threads = sys.argv[2], *map(int, sys.argv[3:8])
        import torch

        torch.set_num_threads(threads)
        child = qa_child(windows, batch_size) if workload == "qa" else generate_child(source, target)
        print(json.dumps(child))
    else:
        main()
