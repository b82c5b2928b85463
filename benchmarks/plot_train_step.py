"""Plot step time and peak memory against source length from ``train_step.py --json`` files.

Each point is one row of one file: pass the files and, per file, the variant to plot (rows of
other variants are left out), e.g.::

    python benchmarks/plot_train_step.py --output benchmarks/results/train_step_steady.png \\
        benchmarks/results/train_step_steady_4k_16k_1t.json:

    python benchmarks/plot_train_step.py --output before_after.png \\
        before_after_4k.json:after before_after_8k.json:after full_16k.json:

A file's ``full`` row without that variant falls back to its plain ("") row (full attention
has no before/after). Rows of different files come from different runs: the legend says so.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

MODELS = ("poolingformer", "sliding", "full")


def points(specs: List[str]) -> Dict[str, List[Tuple[int, float, float]]]:
    """{model: [(T, step_s, peak_mib), ...]} sorted by T, from FILE:VARIANT specs."""
    out: Dict[str, List[Tuple[int, float, float]]] = {m: [] for m in MODELS}
    for spec in specs:
        path, _, variant = spec.rpartition(":")
        rows = [r for r in json.loads(Path(path).read_text())["rows"] if r.get("status") == "ok"]
        for model in MODELS:
            mine = [r for r in rows if r["model"] == model and r.get("variant", "") == variant]
            if not mine and model == "full":
                mine = [r for r in rows if r["model"] == model and r.get("variant", "") == ""]
            out[model].extend((r["T"], r["step_s"], r["peak_mib"]) for r in mine)
    return {m: sorted(p) for m, p in out.items() if p}


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("specs", nargs="+", metavar="FILE:VARIANT")
    p.add_argument("--output", required=True)
    args = p.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = points(args.specs)
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for model, pts in data.items():
        t = [x[0] for x in pts]
        ax_t.plot(t, [x[1] for x in pts], marker="o", label=model)
        ax_m.plot(t, [x[2] / 1024 for x in pts], marker="o", label=model)
    for ax, label in ((ax_t, "one training step (s)"), (ax_m, "peak memory of the step (GiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("source tokens (T)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("BART-base-sized training step, CPU, 1 thread (one run per T: " + ", ".join(
        Path(s).name for s in args.specs) + ")", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)


if __name__ == "__main__":
    main()
