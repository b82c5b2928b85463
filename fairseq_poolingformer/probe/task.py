"""The long-range probe: a synthetic classification task that only level 2 can reach.

Design
------
A sequence of ``seq_len`` tokens. Position 0 holds the query token ``<q>``; the others hold
noise tokens drawn uniformly from ``noise_vocab`` symbols, except for

- one *evidence block*: ``run`` consecutive copies of one class token ``c0 .. c{K-1}``, at
  positions ``[d, d + run)`` with ``d`` uniform in ``[min_distance, max_distance]``; its
  class is the label;
- *distractor runs* (with ``distractor_rate`` > 0): short runs of 1..``distractor_max``
  copies of random class tokens, anywhere, never touching each other, so the evidence is the
  only run of ``run`` or more equal class tokens. Distractors are independent of the label.

The model reads its final hidden state at the query (position 0) and must name the class of
the one *long* run: coarse information (which class dominates a stretch of text), far away.
Chance is exactly 1/K.

Why it separates the attention patterns (no global token: ``--pf-global none``):

- **Sliding window only** (``L`` layers of window ``w1``): the output at position 0 depends
  on positions ``<= L * w1`` only. With ``min_distance > L * w1`` the label is independent of
  everything the model sees, so it stays at chance *by construction*, however long it trains.
- **Full attention** (``w1 >= seq_len``) reaches the block from position 0 in one hop: the
  upper bound.
- **Two-level Poolingformer**: in a two-level layer, position 0 attends to pooled segments
  whose centres lie within ``w2``. With ``max_distance + run - 1 <= w2`` the whole block is
  within ``w2``, and ``run >= kernel + stride - 1`` puts at least one segment wholly inside
  the block: that segment is pooled from ``kernel`` positions holding the same class token
  (mean, max and any LDConv weighting of them keep the class), while a distractor run fills
  at most ``distractor_max < kernel`` positions of a segment. The pooled view is exactly the
  coarse signal the task needs; what must be learnt is to attend from ``<q>`` to it.
- **Control** (``control=True`` in :func:`probe_bands`): the block lies beyond the receptive
  field of the whole two-level stack (level-1 hops before and after the two-level layers and
  the level-1 output that level 2 pools, see :func:`stack_reach`). Poolingformer must fall to
  chance there too, while full attention still solves it: what level 2 buys is its reach
  ``w2``, not extra parameters.

Data come from a ``torch.Generator`` seeded by the caller: no download, no files, the same
batches for a given seed and torch version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import torch

from fairseq_poolingformer.modules.checks import check_positive_int

QUERY = "<q>"


@dataclass(frozen=True)
class ProbeTask:
    """Sequences of ``seq_len`` tokens, one evidence block of ``run`` class tokens at distance
    ``d`` in ``[min_distance, max_distance]`` from the query at position 0."""

    seq_len: int = 64
    num_classes: int = 4
    noise_vocab: int = 16
    run: int = 8
    min_distance: int = 17
    max_distance: int = 25
    distractor_rate: float = 0.5
    distractor_max: int = 3

    def __post_init__(self) -> None:
        for name in ("seq_len", "num_classes", "noise_vocab", "run", "min_distance", "max_distance"):
            check_positive_int(f"ProbeTask.{name}", getattr(self, name))
        if not 1 <= self.distractor_max < self.run:
            raise ValueError(f"ProbeTask.distractor_max must be in [1, run={self.run}), got {self.distractor_max!r}")
        if not 0.0 <= self.distractor_rate <= 1.0:
            raise ValueError(f"ProbeTask.distractor_rate must be in [0, 1), got {self.distractor_rate!r}")
        if self.num_classes < 2:
            raise ValueError(f"ProbeTask.num_classes must be >= 2, got {self.num_classes}")
        if self.min_distance > self.max_distance:
            raise ValueError(
                f"ProbeTask: min_distance {self.min_distance} > max_distance {self.max_distance}")
        if self.max_distance + self.run > self.seq_len:
            raise ValueError(
                f"ProbeTask: the block [d, d + run) must fit in seq_len={self.seq_len}; "
                f"max_distance {self.max_distance} + run {self.run} > {self.seq_len}")

    def symbols(self) -> List[str]:
        """The task's symbols, in dictionary order: query, noise, classes."""
        return ([QUERY] + [f"n{i}" for i in range(self.noise_vocab)]
                + [f"c{i}" for i in range(self.num_classes)])

    @property
    def chance(self) -> float:
        return 1.0 / self.num_classes

    def sample(self, batch: int, generator: torch.Generator, first_symbol: int = 0
               ) -> Tuple[torch.Tensor, torch.Tensor]:
        """A batch from ``generator``. Token ids are ``first_symbol + index in symbols()``.

        Returns tokens: (B, T) long and labels: (B,) long in [0, num_classes)."""
        query_id = first_symbol
        noise_first = first_symbol + 1
        class_first = noise_first + self.noise_vocab
        tokens = noise_first + torch.randint(self.noise_vocab, (batch, self.seq_len), generator=generator)
        if self.distractor_rate > 0:
            runs = self._distractor_runs(batch, generator)
            tokens = torch.where(runs >= 0, class_first + runs, tokens)
        tokens[:, 0] = query_id
        labels = torch.randint(self.num_classes, (batch,), generator=generator)
        starts = torch.randint(self.min_distance, self.max_distance + 1, (batch,), generator=generator)
        positions = torch.arange(self.seq_len)
        in_block = (positions[None, :] >= starts[:, None]) & (positions[None, :] < starts[:, None] + self.run)
        tokens = torch.where(in_block, (class_first + labels)[:, None], tokens)
        return tokens, labels

    def _distractor_runs(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """(B, T) long: a class id offset per position, -1 outside distractor runs.

        Positions 1.. are cut into cells of distractor_max + 1; a cell holds, with probability
        distractor_rate, one run of 1..distractor_max copies of a random class at its start.
        The cell's last position is always free, so distractor runs never touch each other
        and none is ever as long as the evidence block."""
        cell = self.distractor_max + 1
        cells = (self.seq_len - 1 + cell - 1) // cell
        used = torch.rand(batch, cells, generator=generator) < self.distractor_rate
        lengths = torch.randint(1, self.distractor_max + 1, (batch, cells), generator=generator) * used
        classes = torch.randint(self.num_classes, (batch, cells), generator=generator)
        offset = torch.arange(cells * cell) % cell  # position within its cell
        lengths = lengths.repeat_interleave(cell, dim=1)
        classes = classes.repeat_interleave(cell, dim=1)
        runs = torch.where(offset[None, :] < lengths, classes, torch.full_like(classes, -1))
        out = torch.full((batch, self.seq_len), -1, dtype=torch.long)
        out[:, 1:] = runs[:, : self.seq_len - 1]
        return out


@dataclass(frozen=True)
class Reach:
    """How far (in tokens) information travels towards the query through an encoder stack."""

    level1: int  # L * w1: every layer level 1 only
    two_level: int  # the given two-level layers reach w2 + (kernel - 1) // 2, the others w1


def stack_reach(num_layers: int, two_level_layers, w1: int, w2: int, kernel: int, mix: bool = False) -> Reach:
    """Receptive field of position 0 over the stack (no global tokens).

    A level-1 layer moves information by at most ``w1`` positions. A two-level layer also
    attends to segments with centre ``c_s <= i + w2``; such a segment pools positions up to
    ``c_s + (kernel - 1) / 2``, and (unless ``mix``) what it pools is the same layer's level-1
    output Y, which itself reaches ``w1`` further: at most ``w2 + (kernel - 1) // 2 + w1``."""
    two_level = set(two_level_layers)
    pooled = w2 + (kernel - 1) // 2 + (0 if mix else w1)
    return Reach(level1=num_layers * w1,
                 two_level=sum(max(w1, pooled) if i in two_level else w1 for i in range(num_layers)))


def probe_bands(seq_len: int, run: int, reach: Reach, w2: int, control: bool = False) -> Tuple[int, int]:
    """(min_distance, max_distance) of the evidence block.

    In range: beyond the level-1 stack (``> reach.level1``) and wholly within ``w2``.
    Control: beyond the two-level stack's reach (``> reach.two_level``), to the end of the
    sequence. Raises ``ValueError`` when the geometry leaves no room."""
    if control:
        lo, hi = reach.two_level + 1, seq_len - run
        what = f"beyond the two-level reach {reach.two_level}"
    else:
        lo, hi = reach.level1 + 1, w2 - run + 1
        what = f"beyond the level-1 reach {reach.level1} and within w2={w2} (run {run})"
    if lo > hi:
        raise ValueError(f"probe: no room for an evidence block {what} in {seq_len} tokens")
    return lo, hi
