"""Shared utilities for every preprocessing step (arXiv, QA, BPE, ...).

Each helper has one job; together they give every converter the same guarantees:
a run writes complete outputs or none, bad input is reported with file, line and
field, and every record is either kept or counted as skipped with a reason.

API
---
``InputError(path, line, field, message, reason="invalid")``
    A ``ValueError`` whose ``str`` is ``"path:line: field 'F': message"``. ``reason``
    is a short category used as the key of skip counts (``malformed_json``,
    ``non_utf8``, ``missing_field``, ``wrong_type``, ``empty_field``, ...). Picklable,
    so worker processes may return or raise it.

``atomic_outputs(paths) -> ContextManager[list[str]]``
    Yields one temporary path per final path, in the same directory (so that
    ``os.replace`` is atomic). On normal exit every temporary is ``os.replace``d onto
    its final path; on any exception (``KeyboardInterrupt`` included) every temporary
    is deleted, no final path is touched, and parent directories that the call
    created are removed again. Use one call for all outputs of a step, so that e.g.
    ``train.source`` and ``train.target`` appear together or not at all. A symlink
    stays a symlink (its target is the file replaced), a replaced file keeps its
    mode, every temporary is fsync'd before the rename, and an existing final path
    that is not a regular file (a directory, a device, a FIFO) is refused at entry.

``iter_lines(path) -> Iterator[tuple[int, bytes]]``
    Streams raw lines (1-based line numbers, trailing newline removed) of a plain
    or ``.gz`` file. Blank lines are yielded too; callers decide. A truncated or
    not-gzip ``.gz`` raises ``InputError`` (``bad_gzip``) naming the file and the last
    good line.

``parse_jsonl_line(path, line_no, raw) -> dict``
    Decodes one raw line as strict UTF-8 and parses it as a JSON object; raises
    ``InputError`` (``non_utf8``, ``malformed_json``, ``not_an_object``). A
    ``non_utf8`` error names the top-level field holding the bad bytes when the rest
    of the line is valid JSON. Pure, so it can run inside worker processes.

``iter_jsonl(path) -> Iterator[tuple[int, dict]]``
    ``iter_lines`` + ``parse_jsonl_line`` for ``.jsonl`` / ``.jsonl.gz`` files
    (any name works: the arXiv release calls its JSONL files ``*.txt``). Blank lines
    are ignored. Raises ``InputError`` on the first bad line, unless ``on_error`` is
    given: then each error is passed to it and the line is skipped.

``require(record, field, types, path, line, item_type=None) -> Any``
    Returns ``record[field]``; raises ``InputError`` (``missing_field``,
    ``wrong_type``) when it is absent, ``None``, not an instance of ``types``, or (for
    lists, when ``item_type`` is given) holds an item of another type (the field is
    then named ``field[i]``).

``normalize_whitespace(text) -> str``
    Collapses every run of Unicode whitespace (newlines, tabs, U+2028, ...) to one
    space and strips the ends, so that a document is safe on one line.

``Report(name)``
    Counts ``kept`` records and ``skipped`` ones by reason (a ``Counter``), keeping
    the first message of each reason as an example. ``summary()`` is one line,
    ``log()`` prints it to stderr, ``write_json(path)`` writes it atomically,
    ``write_json_to(tmp)`` into a temporary of the caller's ``atomic_outputs``.

``parallel_map(fn, items, workers=1, chunksize=16, desc=None, total=None, progress=True)``
    Ordered, streaming map: ``multiprocessing.Pool.imap`` with ``chunksize`` and a
    bound on the number of items in flight (``Pool.imap`` alone reads its whole
    input ahead), with a ``tqdm`` progress bar on stderr when tqdm is installed.
    ``workers <= 1`` runs in-process. ``fn`` must be picklable (a module-level
    function or a ``functools.partial`` of one).
"""
from __future__ import annotations

import contextlib
import errno
import gzip
import json
import multiprocessing
import os
import re
import stat
import sys
import tempfile
import threading
import zlib
from collections import Counter
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

__all__ = [
    "InputError",
    "atomic_outputs",
    "iter_lines",
    "parse_jsonl_line",
    "iter_jsonl",
    "require",
    "normalize_whitespace",
    "Report",
    "parallel_map",
]

T = TypeVar("T")
R = TypeVar("R")

LINE_FIELD = "<line>"  # field name used for errors about a whole line


# ---------------------------------------------------------------------------
# errors

# The largest fraction of subwords that may be the dictionary's <unk>: above it, a run (and the
# QA reader) treats the dictionary as one that does not belong to the BPE.
MAX_UNK_RATE = 0.01


class InputError(ValueError):
    """Bad input record; ``str(e)`` names file, line and field."""

    def __init__(self, path: str, line: int, field: str, message: str, reason: str = "invalid"):
        # all constructor arguments go to Exception.args so that pickling round-trips
        super().__init__(path, line, field, message, reason)
        self.path = str(path)
        self.line = line
        self.field = field
        self.message = message
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: field '{self.field}': {self.message}"

    def cli_message(self, on_error: str) -> str:
        """The command-line ``error:`` line; suggests ``--on-error skip`` only for a bad
        record, never for a broken file (``bad_gzip``), which no option can skip."""
        skippable = on_error == "fail" and self.reason not in FILE_LEVEL_REASONS
        hint = " (use --on-error skip to skip and count bad records)" if skippable else ""
        return f"error: {self}{hint}; no output written"


FILE_LEVEL_REASONS = frozenset({"bad_gzip", "bad_dict"})  # the whole file is unusable


# ---------------------------------------------------------------------------
# atomic outputs

@contextlib.contextmanager
def atomic_outputs(paths: Sequence[str | os.PathLike]) -> Iterator[list[str]]:
    """Yield temp paths next to ``paths``; replace all on success, delete all on error."""
    finals = [os.path.realpath(os.fspath(p)) for p in paths]  # a symlink's target is replaced
    if len(set(finals)) != len(finals):
        raise ValueError(f"atomic_outputs: duplicate output paths in {finals}")
    modes = [_replaced_mode(final) for final in finals]
    created_dirs = _make_parent_dirs(finals)
    temps: list[str] = []
    try:
        for final, mode in zip(finals, modes):  # every output's place is checked here, before the caller's work
            directory, base = os.path.split(final)
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory)
            except OSError as e:
                raise OSError(e.errno, f"cannot write {final}: {e.strerror}") from None
            os.close(fd)
            temps.append(tmp)
            os.chmod(tmp, mode)  # mkstemp makes 0600; outputs get the replaced file's or the usual mode
        yield list(temps)
        for tmp in temps:
            _fsync(tmp)
        for tmp, final in zip(temps, finals):
            os.replace(tmp, final)
        temps = []
        for directory in sorted({os.path.dirname(final) for final in finals}):
            with contextlib.suppress(OSError):  # best effort: not every file system syncs a directory
                _fsync(directory)  # the renames themselves
    except BaseException:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
        for directory in reversed(created_dirs):  # deepest first
            with contextlib.suppress(OSError):
                os.rmdir(directory)  # only succeeds when empty
        raise


def _replaced_mode(final: str) -> int:
    """The mode a new ``final`` gets: the existing file's, else 0666 less the umask."""
    try:
        st = os.stat(final)
    except (FileNotFoundError, NotADirectoryError):  # a new file (a missing place is reported later)
        return 0o666 & ~_current_umask()
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise OSError(errno.EEXIST, f"cannot write {final}: it is {kind}, and only a file is replaced")
    return stat.S_IMODE(st.st_mode)


def _fsync(path: str) -> None:
    """Flush ``path`` (a file, or a directory's entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _make_parent_dirs(paths: Sequence[str]) -> list[str]:
    """Create missing parent directories; return the ones created, shallowest first."""
    created: list[str] = []
    try:
        _make_missing_dirs(paths, created)
    except OSError:
        for directory in reversed(created):
            with contextlib.suppress(OSError):
                os.rmdir(directory)
        raise
    return created


def _make_missing_dirs(paths: Sequence[str], created: list[str]) -> None:
    for path in paths:
        missing = []
        directory = os.path.dirname(path)
        while directory and not os.path.isdir(directory):
            if os.path.lexists(directory):
                raise NotADirectoryError(f"cannot write {path}: {directory} is not a directory")
            missing.append(directory)
            directory = os.path.dirname(directory)
        for d in reversed(missing):
            if d not in created:
                try:
                    os.makedirs(d, exist_ok=True)
                except OSError as e:
                    raise OSError(e.errno, f"cannot write {path}: cannot create {d}: {e.strerror}") from None
                created.append(d)


# ---------------------------------------------------------------------------
# reading

def _open_binary(path: str | os.PathLike):
    path = os.fspath(path)
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def iter_lines(path: str | os.PathLike) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_no, raw_bytes)`` for each line (1-based, newline stripped).

    A ``.gz`` file that is cut short or not gzip raises ``InputError`` (``bad_gzip``) naming
    the file and the last line read whole, instead of a bare ``EOFError`` / ``BadGzipFile``.
    """
    path = os.fspath(path)
    line_no = 0
    try:
        with _open_binary(path) as f:
            for line_no, raw in enumerate(f, start=1):
                yield line_no, raw.rstrip(b"\r\n")
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        if not path.endswith(".gz"):
            raise
        what = "not a gzip file" if isinstance(e, gzip.BadGzipFile) else "gzip data cut short or corrupt"
        last = f"the last good line is {line_no}" if line_no else "no line could be read"
        raise InputError(path, line_no + 1, "<file>", f"{what} ({e}); {last}", reason="bad_gzip") from None


def parse_jsonl_line(path: str, line_no: int, raw: bytes) -> dict:
    """Decode one UTF-8 JSON-object line; raise ``InputError`` naming file and line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        bad = raw[e.start:e.start + 1].hex()
        raise InputError(path, line_no, _field_with_bad_bytes(raw),
                         f"invalid UTF-8 byte 0x{bad} at byte offset {e.start}",
                         reason="non_utf8") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(path, line_no, LINE_FIELD,
                         f"malformed JSON: {e.msg} (column {e.colno})",
                         reason="malformed_json") from None
    if not isinstance(record, dict):
        raise InputError(path, line_no, LINE_FIELD,
                         f"expected a JSON object, got {type(record).__name__}",
                         reason="not_an_object")
    return record


def _field_with_bad_bytes(raw: bytes) -> str:
    """Name the top-level field holding undecodable bytes, or ``<line>`` if unknown."""
    try:
        record = json.loads(raw.decode("utf-8", errors="surrogateescape"))
    except ValueError:
        return LINE_FIELD
    if isinstance(record, dict):
        for key, value in record.items():
            if _SURROGATE.search(key) or _SURROGATE.search(json.dumps(value, ensure_ascii=False)):
                return key
    return LINE_FIELD


_SURROGATE = re.compile("[\udc80-\udcff]")


def iter_jsonl(path: str | os.PathLike,
               on_error: Callable[[InputError], None] | None = None) -> Iterator[tuple[int, dict]]:
    """Stream ``(line_no, record)`` from a JSONL(.gz) file; blank lines are ignored."""
    path_str = os.fspath(path)
    for line_no, raw in iter_lines(path_str):
        if not raw.strip():
            continue
        try:
            record = parse_jsonl_line(path_str, line_no, raw)
        except InputError as e:
            if on_error is None:
                raise
            on_error(e)
            continue
        yield line_no, record


_TYPE_NAMES = {str: "string", int: "integer", float: "number", list: "list", dict: "object", bool: "boolean"}


def _type_name(t: type | tuple[type, ...]) -> str:
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return _TYPE_NAMES.get(t, t.__name__)


def _json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    return _type_name(type(value))


def require(record: dict, field: str, types: type | tuple[type, ...], path: str, line: int,
            item_type: type | tuple[type, ...] | None = None) -> Any:
    """Return ``record[field]`` checked against ``types`` (and list items against ``item_type``)."""
    if field not in record or record[field] is None:
        raise InputError(path, line, field, "missing required field", reason="missing_field")
    value = record[field]
    # bool is an int subclass in Python but not in JSON
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        raise InputError(path, line, field,
                         f"expected {_type_name(types)}, got {_json_type_name(value)}",
                         reason="wrong_type")
    if item_type is not None and isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, item_type):
                raise InputError(path, line, f"{field}[{i}]",
                                 f"expected {_type_name(item_type)}, got {_json_type_name(item)}",
                                 reason="wrong_type")
    return value


def _as_tuple(t: type | tuple[type, ...]) -> tuple[type, ...]:
    return t if isinstance(t, tuple) else (t,)


def normalize_whitespace(text: str) -> str:
    """Collapse all Unicode whitespace runs to one space; strip the ends."""
    return " ".join(text.split())


# ---------------------------------------------------------------------------
# reporting

class Report:
    """Kept / skipped counts, skipped ones by reason, with one example message per reason."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.kept = 0
        self.skipped: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def keep(self, n: int = 1) -> None:
        self.kept += n

    def skip(self, error: InputError) -> None:
        self.skipped[error.reason] += 1
        self.examples.setdefault(error.reason, str(error))

    @property
    def total(self) -> int:
        return self.kept + sum(self.skipped.values())

    def summary(self) -> str:
        n_skipped = sum(self.skipped.values())
        head = f"{self.name}: " if self.name else ""
        line = f"{head}kept {self.kept}, skipped {n_skipped} of {self.total} records"
        if n_skipped:
            reasons = ", ".join(f"{r}: {c}" for r, c in sorted(self.skipped.items()))
            line += f" ({reasons})"
        return line

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kept": self.kept,
            "skipped": sum(self.skipped.values()),
            "total": self.total,
            "skipped_by_reason": dict(sorted(self.skipped.items())),
            "examples": dict(sorted(self.examples.items())),
        }

    def log(self, stream=None) -> None:
        print(self.summary(), file=stream if stream is not None else sys.stderr, flush=True)

    def write_json(self, path: str | os.PathLike) -> None:
        with atomic_outputs([path]) as (tmp,):
            self.write_json_to(tmp)

    def write_json_to(self, path: str | os.PathLike) -> None:
        """Write the JSON to ``path`` as it is (e.g. a temporary of a caller's ``atomic_outputs``)."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, ensure_ascii=False)
            f.write("\n")


# ---------------------------------------------------------------------------
# parallel map

def _tqdm(iterable: Iterable[T], desc: str | None, total: int | None, enabled: bool) -> Iterable[T]:
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional
        return iterable
    return tqdm(iterable, desc=desc, total=total, unit="rec", file=sys.stderr,
                dynamic_ncols=True, mininterval=1.0)


def _gated(items: Iterable[T], slots: threading.Semaphore, stop: threading.Event) -> Iterator[T]:
    """Yield items, taking one slot each (released by the consumer); give up on ``stop``."""
    for item in items:
        while not slots.acquire(timeout=0.1):
            if stop.is_set():
                return
        yield item


def parallel_map(fn: Callable[[T], R], items: Iterable[T], workers: int = 1, chunksize: int = 16,
                 desc: str | None = None, total: int | None = None,
                 progress: bool = True) -> Iterator[R]:
    """Ordered streaming ``map(fn, items)`` over ``workers`` processes with a progress bar."""
    if workers <= 1:
        yield from _tqdm(map(fn, items), desc, total, progress)
        return
    chunksize = max(1, chunksize)
    max_in_flight = workers * chunksize * 4  # > chunksize, so the feeder never deadlocks
    slots = threading.Semaphore(max_in_flight)
    stop = threading.Event()
    pool = multiprocessing.get_context().Pool(workers)
    try:
        results = pool.imap(fn, _gated(items, slots, stop), chunksize)
        for result in _tqdm(results, desc, total, progress):
            slots.release()
            yield result
        pool.close()
    finally:
        stop.set()  # lets the feeder thread exit so terminate() can join it
        pool.terminate()
        pool.join()
