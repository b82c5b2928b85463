"""Bad input for the preprocessing tests: a good record, edited one way, as the bytes of a JSON line.

Shared by the NQ and TyDi QA tests (test_preprocess_nq.py, test_preprocess_tydi.py): each edit
is a ``make()`` that returns the line, built afresh from a deep copy of the good record."""

import copy
import json
from typing import Any, Callable, Hashable, List

Make = Callable[[], bytes]


class RecordEdits:
    """Edits of ``record()`` (a fresh copy each time), written with ``json.dumps(ensure_ascii=...)``."""

    def __init__(self, record: Callable[[], dict], ensure_ascii: bool = True) -> None:
        self.record = record
        self.ensure_ascii = ensure_ascii

    def edit(self, fn: Callable[[dict], Any]) -> Make:
        """The record after ``fn(record)`` (which changes it in place)."""
        def make() -> bytes:
            rec = copy.deepcopy(self.record())
            fn(rec)
            return json.dumps(rec, ensure_ascii=self.ensure_ascii).encode()
        return make

    def set(self, path: List[Hashable], value: Any) -> Make:
        """The record with the field at ``path`` (keys and list indices) set to ``value``."""
        def fn(rec: dict) -> None:
            obj = rec
            for k in path[:-1]:
                obj = obj[k]
            obj[path[-1]] = value
        return self.edit(fn)

    def delete(self, key: str) -> Make:
        """The record without its top-level field ``key``."""
        return self.edit(lambda rec: rec.pop(key))
