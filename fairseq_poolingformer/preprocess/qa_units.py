"""The "units" of a QA example record (``<split>.examples.jsonl``, docs/qa_data_format.md).

A unit is the source span ``[start, end)`` that window positions map back to (``unit_map``).
Records hold them in one of two forms:

* explicit (TyDi: UTF-8 byte spans): ``"units": [[start, end], ...]``;
* compact (NQ: one unit per document token): ``"units": null, "num_units": N`` meaning
  ``units[i] == [i, i + 1]`` for ``0 <= i < N``. NQ documents have up to ~100k tokens, so the
  explicit list would be most of the file.

This module is the one place that writes and reads that field: the preprocessing writes it
with ``units_to_json``; ``qa_binarize`` and ``predict_qa`` read it with ``example_units``.
Standard library only (the model side imports it without pulling in the preprocessing).
"""
from __future__ import annotations

from typing import Sequence

from fairseq_poolingformer.preprocess.common import InputError

__all__ = ["Units", "units_to_json", "example_units"]


class Units:
    """Read-only view of an example's units: ``len(units)`` and ``units[u] -> (start, end)``."""

    __slots__ = ("_spans", "_n")

    def __init__(self, spans: Sequence[Sequence[int]] | None, n: int) -> None:
        self._spans = spans   # None: the identity units [i, i + 1)
        self._n = n

    @property
    def is_identity(self) -> bool:
        return self._spans is None

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, u: int) -> tuple[int, int]:
        if not 0 <= u < self._n:
            raise IndexError(f"unit {u} out of range [0, {self._n})")
        if self._spans is None:
            return u, u + 1
        start, end = self._spans[u]
        return start, end

    def __iter__(self):
        return (self[u] for u in range(self._n))


def units_to_json(units: Sequence[Sequence[int]], compact: bool) -> dict:
    """The ``units`` (and ``num_units``) fields of an example record. ``compact`` writes the
    identity form and requires ``units[i] == (i, i + 1)`` for every ``i``."""
    if not compact:
        return {"units": [[s, e] for s, e in units]}
    for i, (s, e) in enumerate(units):
        if (s, e) != (i, i + 1):
            raise ValueError(f"units_to_json: unit {i} is ({s}, {e}), not ({i}, {i + 1}): "
                             f"the compact form holds identity units only")
    return {"units": None, "num_units": len(units)}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def example_units(record: dict, path: str = "<example>", line: int = 0) -> Units:
    """The units of an examples.jsonl record (either form), checked; raises ``InputError``
    naming ``path``, ``line`` and the field."""
    if "units" not in record:
        raise InputError(path, line, "units", "missing required field", reason="missing_field")
    spans, n = record["units"], record.get("num_units")
    if spans is None:
        if not _is_int(n) or n < 0:
            raise InputError(path, line, "num_units",
                             f"expected a non-negative integer with \"units\": null, got {n!r}", reason="wrong_type")
        return Units(None, n)
    if not isinstance(spans, list):
        raise InputError(path, line, "units", f"expected a list or null, got {type(spans).__name__}",
                         reason="wrong_type")
    for i, unit in enumerate(spans):
        if not (isinstance(unit, list) and len(unit) == 2 and all(_is_int(v) for v in unit)):
            raise InputError(path, line, f"units[{i}]", f"expected [start, end] integers, got {unit!r}",
                             reason="wrong_type")
    if n is not None and n != len(spans):
        raise InputError(path, line, "num_units", f"{n!r} != len(units) {len(spans)}", reason="invalid_value")
    return Units(spans, len(spans))
