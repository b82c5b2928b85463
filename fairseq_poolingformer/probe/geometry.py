"""Where the evidence goes for a given encoder: the probe's task from the model's geometry."""

from __future__ import annotations

from dataclasses import replace

from .model import ProbeModelConfig, parse_default_layers
from .task import ProbeTask, Reach, probe_bands, stack_reach


def default_reach(cfg: ProbeModelConfig) -> Reach:
    """Receptive fields of the level-1 stack and of the default two-level stack."""
    return stack_reach(cfg.layers, parse_default_layers(cfg), cfg.w1, cfg.w2, cfg.kernel)


def probe_task(cfg: ProbeModelConfig, control: bool = False, base: ProbeTask = ProbeTask()) -> ProbeTask:
    """``base`` with the evidence band for ``cfg``: beyond the level-1 stack and within w2, or
    (control) beyond the default two-level stack. The block must hold a whole segment."""
    if base.run < cfg.kernel + cfg.stride - 1:
        raise ValueError(
            f"probe: run={base.run} < kernel + stride - 1 = {cfg.kernel + cfg.stride - 1}: no pooling "
            "segment would lie wholly inside the evidence block")
    lo, hi = probe_bands(base.seq_len, base.run, default_reach(cfg), cfg.w2, control=control)
    return replace(base, min_distance=lo, max_distance=hi)
