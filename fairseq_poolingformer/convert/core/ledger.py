"""Tensor accounting: every tensor of a source checkpoint (today: a Hugging Face directory) is
mapped (renamed), folded (added into another tensor, exactly) or dropped with a reason; one left
over or missing is an error naming it. The readers fill a :class:`TensorLedger`;
:func:`log_summary` writes its account as ``hf_conversion.txt`` beside the converted checkpoint.
"""

from __future__ import annotations

import logging
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

from fairseq_poolingformer.convert.core.errors import ConversionError

logger = logging.getLogger("fairseq_poolingformer.convert")


@dataclass
class TensorLedger:
    """The source tensors, each taken exactly once: mapped, folded or dropped (with a reason)."""

    source: str
    tensors: Dict[str, torch.Tensor]
    out: "OrderedDict[str, torch.Tensor]" = field(default_factory=OrderedDict)
    events: List[Tuple[str, str, str]] = field(default_factory=list)  # (kind, source name, detail)

    def __post_init__(self) -> None:
        self.remaining = dict(self.tensors)

    def has(self, name: str) -> bool:
        """True while ``name`` is a source tensor not yet taken."""
        return name in self.remaining

    def take(self, name: str) -> torch.Tensor:
        """Remove ``name`` from the remaining tensors and return it (missing or taken twice: an error)."""
        if name not in self.remaining:
            known = "already used" if name in self.tensors else "missing"
            raise ConversionError(f"{self.source}: tensor {name} is {known}")
        return self.remaining.pop(name)

    def map(self, name: str, target: str, value: Optional[torch.Tensor] = None, detail: str = "") -> None:
        """Rename ``name`` to ``target`` (``value``: the tensor after an exact transformation,
        described by ``detail``)."""
        if value is None:
            tensor = self.take(name)
        elif name in self.tensors:  # already taken by the caller, who transformed it
            tensor = value
            self.remaining.pop(name, None)
        else:
            raise ConversionError(f"{self.source}: tensor {name} is missing")
        if target in self.out:
            raise ConversionError(f"{self.source}: two tensors map to {target}")
        self.out[target] = tensor
        self.events.append(("mapped", name, f"{target} ({detail})" if detail else target))

    def fold(self, name: str, detail: str) -> torch.Tensor:
        """Take ``name`` to be added into another tensor by the caller (``detail`` says where)."""
        self.events.append(("folded", name, detail))
        return self.take(name)

    def drop(self, name: str, reason: str) -> None:
        """Take ``name`` and leave it out of the converted checkpoint, for ``reason``."""
        self.take(name)
        self.events.append(("dropped", name, reason))

    def drop_duplicate(self, name: str, of: torch.Tensor, what: str) -> None:
        """Drop ``name`` if it equals ``of`` (a tied copy); an untied, different copy is an error."""
        tensor = self.take(name)
        if tensor.shape != of.shape or not torch.equal(tensor, of):
            raise ConversionError(f"{self.source}: {name} differs from {what}; the Fairseq model ties them, "
                                  "so this checkpoint cannot be converted exactly")
        self.events.append(("dropped", name, f"a tied copy of {what} (equal)"))

    def finish(self) -> "OrderedDict[str, torch.Tensor]":
        """The converted state dict, once every source tensor was taken (else an error naming the rest)."""
        if self.remaining:
            names = sorted(self.remaining)
            raise ConversionError(f"{self.source}: unknown tensors (not converted): {names[:20]}"
                                  f"{' ...' if len(names) > 20 else ''}")
        return self.out

    def summary(self) -> List[str]:
        """One line per (kind, name pattern, detail), layer indices collapsed to ``{i}``."""
        groups: "OrderedDict[Tuple[str, str, str], List[str]]" = OrderedDict()
        for kind, name, detail in self.events:
            key = (kind, re.sub(r"\.\d+\.", ".{i}.", name), re.sub(r"\.\d+\.", ".{i}.", detail))
            groups.setdefault(key, []).append(name)
        lines = []
        for (kind, name, detail), names in groups.items():
            count = f" (x{len(names)})" if len(names) > 1 else ""
            arrow = "->" if kind == "mapped" else ":"
            lines.append(f"{kind:8s} {name}{count} {arrow} {detail}")
        return lines


def key_prefix(tensors: Dict[str, torch.Tensor], suffix: str, source: str) -> str:
    """The prefix of the one key ending in ``suffix`` ('model.', 'led.', 'roberta.' or '')."""
    found = [k[: -len(suffix)] for k in tensors if k.endswith(suffix) and (k == suffix or k[-len(suffix) - 1] == ".")]
    if len(found) != 1:
        raise ConversionError(f"{source}: expected one tensor named *{suffix}, found {sorted(found) or 'none'}")
    return found[0]


def layer_count(ledger: TensorLedger, pattern: str) -> int:
    """1 + the largest layer index (``pattern``'s group 1) among the source tensor names; 0 if none."""
    indices = {int(m.group(1)) for k in ledger.tensors for m in [re.match(pattern, k)] if m}
    return max(indices) + 1 if indices else 0


def log_summary(ledger: TensorLedger, out_dir: str) -> str:
    """Log the accounting (stderr) and write it as ``hf_conversion.txt``; returns its path."""
    counts = {kind: sum(1 for k, _, _ in ledger.events if k == kind) for kind in ("mapped", "folded", "dropped")}
    head = (f"{ledger.source}: {len(ledger.tensors)} tensors: {counts['mapped']} mapped, {counts['folded']} folded, "
            f"{counts['dropped']} dropped")
    lines = [head] + ledger.summary()
    for line in lines:
        logger.info(line)
    path = os.path.join(out_dir, "hf_conversion.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path
