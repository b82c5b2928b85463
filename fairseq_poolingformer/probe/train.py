"""Train one probe classifier on CPU and record accuracy against training steps."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F

from fairseq_poolingformer.modules.checks import check_positive_int

from .model import ProbeClassifier
from .task import ProbeTask


@dataclass(frozen=True)
class TrainConfig:
    """Adam with linear warm-up then cosine decay; a fresh batch every step (infinite data)."""

    steps: int = 160
    batch: int = 16
    lr: float = 2e-3
    warmup: int = 16
    clip_norm: float = 1.0
    eval_every: int = 20
    eval_size: int = 256
    eval_seed: int = 1_000_003  # the held-out set is the same for every variant and seed

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "eval_every", "eval_size"):
            check_positive_int(f"TrainConfig.{name}", getattr(self, name))
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr!r}")

    def lr_at(self, step: int) -> float:
        """Learning rate for update ``step`` (0-based)."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def eval_set(task: ProbeTask, cfg: TrainConfig, first_symbol: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The held-out examples: tokens (N, T), labels (N,)."""
    generator = torch.Generator().manual_seed(cfg.eval_seed)
    return task.sample(cfg.eval_size, generator, first_symbol)


@torch.no_grad()
def accuracy(model: ProbeClassifier, tokens: torch.Tensor, labels: torch.Tensor, chunk: int = 256) -> float:
    """Fraction of ``labels`` (N,) predicted from ``tokens`` (N, T), in eval mode."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, tokens.shape[0], chunk):
        logits = model(tokens[start:start + chunk])
        correct += int((logits.argmax(-1) == labels[start:start + chunk]).sum())
    model.train(was_training)
    return correct / tokens.shape[0]


def train_probe(model: ProbeClassifier, task: ProbeTask, cfg: TrainConfig, seed: int) -> Dict:
    """Train ``model`` on fresh batches drawn from ``seed``; evaluate every ``eval_every`` steps.

    Returns ``{"accuracy": final held-out accuracy, "curve": [[step, accuracy], ...],
    "seconds": wall time of training and evaluation, "final_loss": mean loss of the last
    ``eval_every`` steps}``. Raises ``FloatingPointError`` on a non-finite loss."""
    start = time.perf_counter()
    tokens_eval, labels_eval = eval_set(task, cfg, model.first_symbol)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-8)
    curve: List[List[float]] = [[0, accuracy(model, tokens_eval, labels_eval)]]
    recent: List[float] = []
    model.train()
    for step in range(cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr_at(step)
        tokens, labels = task.sample(cfg.batch, generator, model.first_symbol)
        loss = F.cross_entropy(model(tokens), labels)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"probe training: loss is {loss.item()} at step {step + 1}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
        optimizer.step()
        recent = (recent + [loss.item()])[-cfg.eval_every:]
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            curve.append([step + 1, accuracy(model, tokens_eval, labels_eval)])
    return {
        "accuracy": curve[-1][1],
        "curve": curve,
        "seconds": time.perf_counter() - start,
        "final_loss": sum(recent) / len(recent),
    }
