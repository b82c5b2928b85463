"""The long-range probe and the paper's ablation grid, trained on CPU in minutes.

Each variant (``fairseq_poolingformer.probe.model.paper_variants``) is a 4-layer encoder built
from this project's ``PoolingformerTransformerEncoder``, trained from scratch on the synthetic
task of ``fairseq_poolingformer.probe.task`` (the far evidence block lies beyond the
level-1 stack's receptive field and within w2), three seeds each. Two control rows put the
block beyond the two-level stack's reach: there the default two-level model must fall to
chance too, while full attention still solves it.

    python benchmarks/probe.py           # make probe: 3 seeds, the full grid
    python benchmarks/probe.py --quick   # make probe-quick: 1 seed, fewer steps

Writes ``probe.{json,md,png}`` (``probe-quick.*`` with ``--quick``) under
``benchmarks/results/``, all three complete or none (temp files, then renames). Runs go to
``--jobs`` worker processes of one thread each (tiny models run best on one thread); the
seconds per run are wall times measured inside the workers, so they include any contention
from other processes on the machine.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, replace
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESULTS = Path(__file__).resolve().parent / "results"
CONTROLS = {  # name -> variant trained with the evidence beyond the two-level reach
    "control_two_level": "two_level_ldconv",
    "control_full": "full",
}


# ----------------------------------------------------------------------------- one run (worker)
def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_one(job: Tuple[str, str, bool, int, dict]) -> dict:
    """Train ``variant`` with ``seed``; job = (row name, variant name, control, seed, train config)."""
    from fairseq_poolingformer.probe import (
        ProbeModelConfig, TrainConfig, build_probe_model, paper_variants, probe_task, train_probe,
    )

    row, variant_name, control, seed, train_kwargs = job
    cfg = ProbeModelConfig()
    variant = paper_variants(cfg)[variant_name]
    task = probe_task(cfg, control=control)
    model = build_probe_model(cfg, variant, task.symbols(), task.num_classes, task.seq_len, seed)
    result = train_probe(model, task, TrainConfig(**train_kwargs), seed)
    result.update(row=row, variant=variant_name, seed=seed,
                  two_level_layers=sorted(model.two_level_layers()),
                  full=model.sees_everything(),
                  band=[task.min_distance, task.max_distance])
    return result


# ----------------------------------------------------------------------------- the grid
def grid(variant_names: List[str]) -> Tuple[Dict[str, Tuple[str, bool]], Dict[str, str]]:
    """Rows to train {row: (variant, control)} and aliases {row: row it duplicates}: two rows
    whose attention configuration is identical (e.g. layers_1 is the default two-level model)
    are trained once and reported twice."""
    from fairseq_poolingformer.probe import ProbeModelConfig, ProbeTask, paper_variants, pf_config

    cfg = ProbeModelConfig()
    variants = paper_variants(cfg)
    seq_len = ProbeTask().seq_len
    rows: Dict[str, Tuple[str, bool]] = {}
    aliases: Dict[str, str] = {}
    seen: Dict[tuple, str] = {}
    for name in variant_names:
        if name in CONTROLS:
            rows[name] = (CONTROLS[name], True)
            continue
        if name not in variants:
            raise SystemExit(f"probe: unknown variant {name!r}; known: {', '.join(list(variants) + list(CONTROLS))}")
        key = tuple(sorted(asdict(pf_config(cfg, variants[name], seq_len)).items()))
        if key in seen:
            aliases[name] = seen[key]
        else:
            seen[key] = name
            rows[name] = (name, False)
    return rows, aliases


def run_grid(variant_names: List[str], seeds: List[int], train_kwargs: dict, jobs: int) -> dict:
    rows, aliases = grid(variant_names)
    work = [(row, variant, control, seed, train_kwargs) for row, (variant, control) in rows.items() for seed in seeds]
    start = time.perf_counter()
    results: List[dict] = []
    if jobs <= 1:
        _init_worker(1)
        for job in work:
            results.append(run_one(job))
            _progress(results[-1], len(results), len(work))
    else:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(1,)) as pool:
            for future in as_completed([pool.submit(run_one, job) for job in work]):
                results.append(future.result())
                _progress(results[-1], len(results), len(work))
    wall = time.perf_counter() - start
    return summarise(variant_names, rows, aliases, results, wall, train_kwargs, seeds, jobs)


def _progress(result: dict, done: int, total: int) -> None:
    print(f"[{done}/{total}] {result['row']} seed {result['seed']}: accuracy {result['accuracy']:.3f} "
          f"({result['seconds']:.1f} s)", flush=True)


def _steps_to(curve: List[List[float]], level: float):
    """First evaluated step whose accuracy is >= level (None if never)."""
    return next((int(step) for step, acc in curve if acc >= level), None)


def summarise(variant_names, rows, aliases, results, wall, train_kwargs, seeds, jobs) -> dict:
    from fairseq_poolingformer.probe import ProbeModelConfig, ProbeTask, default_reach, paper_variants, probe_task

    cfg = ProbeModelConfig()
    variants = paper_variants(cfg)
    by_row: Dict[str, List[dict]] = {}
    for r in results:
        by_row.setdefault(r["row"], []).append(r)
    out_rows = {}
    for name in variant_names:
        source = aliases.get(name, name)
        runs = sorted(by_row[source], key=lambda r: r["seed"])
        accs = [r["accuracy"] for r in runs]
        steps = [int(s) for s, _ in runs[0]["curve"]]
        mean_curve = [statistics.fmean(r["curve"][i][1] for r in runs) for i in range(len(steps))]
        variant = variants[CONTROLS.get(name, name)]
        out_rows[name] = {
            "acc_mean": statistics.fmean(accs),
            "acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "seconds": statistics.fmean(r["seconds"] for r in runs),
            "accuracies": accs,
            "seeds": [r["seed"] for r in runs],
            "steps_to_90": _steps_to([[s, a] for s, a in zip(steps, mean_curve)], 0.9),
            "curve_auc": statistics.fmean(mean_curve[1:] or mean_curve),
            "curve_steps": steps,
            "curve_mean": mean_curve,
            "curve_std": [statistics.stdev(r["curve"][i][1] for r in runs) if len(runs) > 1 else 0.0
                          for i in range(len(steps))],
            "description": variant.description + (" (evidence beyond the two-level reach)" if name in CONTROLS else ""),
            "two_level_layers": runs[0]["two_level_layers"],
            "full_attention": runs[0]["full"],
            "control": rows[source][1],
            "evidence_distance": runs[0]["band"],
            "same_as": aliases.get(name),
        }
    task = ProbeTask()
    return {
        "variants": out_rows,
        "wall_seconds": wall,
        "seeds": list(seeds),
        "jobs": jobs,
        "threads_per_job": 1,
        "train": train_kwargs,
        "model": asdict(cfg),
        "task": asdict(probe_task(cfg)),
        "control_task": asdict(probe_task(cfg, control=True)),
        "reach": asdict(default_reach(cfg)),
        "chance": task.chance,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "torch": __import__("torch").__version__},
    }


# ----------------------------------------------------------------------------- reports
def markdown(result: dict) -> str:
    m, t, reach = result["model"], result["task"], result["reach"]
    c = result["control_task"]
    lines = [
        f"Probe: {m['layers']}-layer encoder, dim {m['dim']}, {m['heads']} heads; w1={m['w1']}, "
        f"w2={m['w2']}, kernel {m['kernel']}, stride {m['stride']}; default two-level layer(s) "
        f"{m['default_two_level']} (0-based). Sequences of {t['seq_len']} tokens, {t['num_classes']} classes "
        f"(chance {result['chance']:.2f}), evidence block of {t['run']} tokens at distance "
        f"{t['min_distance']}-{t['max_distance']} from the query (level-1 stack reach {reach['level1']}); "
        f"control rows: distance {c['min_distance']}-{c['max_distance']} (two-level stack reach "
        f"{reach['two_level']}). {result['train']['steps']} steps of batch {result['train']['batch']}, "
        f"seeds {', '.join(map(str, result['seeds']))}; accuracy on {result['train']['eval_size']} held-out "
        "sequences. Steps to 90%: first evaluation where the seed-mean accuracy reaches 0.9; mean "
        "accuracy over training: the seed-mean curve averaged over its evaluations after step 0 "
        "(higher = learns sooner).",
        "",
        "| variant | two-level layers | evidence distance | accuracy (mean ± std) | per seed | steps to 90% | "
        "mean acc. over training | s per run |",
        "|---|---|---|---:|---|---:|---:|---:|",
    ]
    for name, r in result["variants"].items():
        layers = "full attention" if r["full_attention"] else (
            ",".join(map(str, r["two_level_layers"])) if r["two_level_layers"] else "none")
        band = "{}-{}".format(*r["evidence_distance"]) + (" (control)" if r["control"] else "")
        seeds = " ".join(f"{a:.2f}" for a in r["accuracies"])
        to90 = str(r["steps_to_90"]) if r["steps_to_90"] is not None else "never"
        label = f"{name} (= {r['same_as']})" if r["same_as"] else name
        lines.append(f"| {label} | {layers} | {band} | {r['acc_mean']:.3f} ± {r['acc_std']:.3f} | {seeds} | "
                     f"{to90} | {r['curve_auc']:.3f} | {r['seconds']:.1f} |")
    lines += ["", f"Total wall time: {result['wall_seconds']:.0f} s ({result['jobs']} worker processes, "
              f"1 thread each; Python {result['machine']['python']}, torch {result['machine']['torch']}, "
              f"{result['machine']['cpus']} CPUs)."]
    return "\n".join(lines) + "\n"


PANELS = (
    ("pooling, Mix, weight sharing", ("level1", "two_level_mean", "two_level_max", "two_level_ldconv",
                                      "two_level_mean_ldconv", "mix", "share", "full")),
    ("number of two-level layers; controls", ("level1", "layers_1", "layers_some", "layers_all", "full",
                                               "control_two_level", "control_full")),
)


def plot_png(result: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    palette = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7]  # no grey: level1/full
    others = [name for name in result["variants"] if name not in ("level1", "full")]
    colours = {name: palette[i % len(palette)] for i, name in enumerate(others)}
    colours.update(level1="black", full="dimgray")
    for ax, (title, names) in zip(axes, PANELS):
        for name in names:
            r = result["variants"].get(name)
            if r is None:
                continue
            style = "--" if r["control"] else "-"
            mean, std = r["curve_mean"], r["curve_std"]
            ax.plot(r["curve_steps"], mean, style, marker="o", markersize=3, label=name, color=colours[name])
            ax.fill_between(r["curve_steps"], [a - s for a, s in zip(mean, std)],
                            [a + s for a, s in zip(mean, std)], color=colours[name], alpha=0.12)
        ax.axhline(result["chance"], color="grey", linewidth=0.8, linestyle=":", label="chance")
        ax.set_title(title)
        ax.set_xlabel("training steps")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="center right")
    axes[0].set_ylabel("held-out accuracy (mean ± std over seeds)")
    fig.suptitle("Long-range probe: evidence beyond the level-1 receptive field, within w2")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def write_reports(result: dict, output_dir: Path, stem: str) -> List[Path]:
    """Render everything first, then write: a rendering error leaves no file behind."""
    payloads = {
        output_dir / f"{stem}.json": (json.dumps(result, indent=2) + "\n").encode(),
        output_dir / f"{stem}.md": markdown(result).encode(),
        output_dir / f"{stem}.png": plot_png(result),
    }
    from fairseq_poolingformer.preprocess.common import atomic_outputs

    with atomic_outputs(list(payloads)) as tmps:  # the three appear together or not at all
        for tmp, data in zip(tmps, payloads.values()):
            Path(tmp).write_bytes(data)
    return list(payloads)


# ----------------------------------------------------------------------------- CLI
def main(argv=None) -> None:
    from fairseq_poolingformer.probe import ProbeModelConfig, TrainConfig, paper_variants

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one seed, fewer steps (make probe-quick)")
    parser.add_argument("--seeds", type=int, help="number of seeds (default 3; --quick: 1)")
    parser.add_argument("--steps", type=int, help="training steps per run (default 160; --quick: 60)")
    parser.add_argument("--variants", nargs="+", help="subset of rows (default: all, controls included)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes, one thread each (default 2)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    parser.add_argument("--replot", action="store_true",
                        help="no training: rewrite the .md and .png from the existing .json")
    args = parser.parse_args(argv)
    stem = "probe-quick" if args.quick else "probe"
    if args.replot:
        source = args.output_dir / f"{stem}.json"
        if not source.is_file():
            parser.error(f"--replot: {source} does not exist (run without --replot first)")
        result = json.loads(source.read_text())
        paths = write_reports(result, args.output_dir, stem)
        print("rewrote " + ", ".join(str(p) for p in paths))
        return
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    defaults = TrainConfig()
    steps = args.steps or (60 if args.quick else defaults.steps)
    seeds = list(range(1, (args.seeds or (1 if args.quick else 3)) + 1))
    eval_every = 15 if args.quick else defaults.eval_every
    train_kwargs = asdict(replace(defaults, steps=steps, eval_every=eval_every))
    names = args.variants or list(paper_variants(ProbeModelConfig())) + list(CONTROLS)
    result = run_grid(names, seeds, train_kwargs, args.jobs)
    paths = write_reports(result, args.output_dir, stem)
    print()
    print(markdown(result))
    print("wrote " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
