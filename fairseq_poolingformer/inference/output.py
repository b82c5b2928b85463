"""Where a tool's output goes, and the promise that nothing is ever clobbered.

``check_output(path, inputs)`` runs at parse time, before any model work: it refuses an output
that is one of the inputs (the same file, also through a symlink or a hard link), a directory,
a block device or socket, a read-only file, and a regular-file output whose directory is missing
or not writable. ``None``, ``-``, an existing character device (``/dev/null``) and a FIFO are
fine: they are streamed.

``open_output(path, inputs)`` opens it as UTF-8 text with ``\\n`` newlines:

- ``None`` or ``-``: stdout (flushed, never closed);
- a character device or a FIFO (following symlinks): opened and written in place, streamed;
  the node stays what it is;
- a regular file or a new path: a temporary file in the target's real directory, fsync'd and
  renamed over the target when the block ends without an exception, removed on any exception
  (``KeyboardInterrupt`` included), so the target is complete or untouched. A symlink stays a
  symlink: its target is the file replaced. A replaced file keeps its mode.

The temporary-and-rename part is ``preprocess.common.atomic_outputs``, shared with every
preprocessing step.
"""
from __future__ import annotations

import contextlib
import io
import os
import stat
import sys
from typing import Iterator, Sequence, TextIO

from fairseq_poolingformer.preprocess.common import atomic_outputs

__all__ = ["OutputError", "check_output", "open_output", "is_stream", "streams_in_use"]


class OutputError(ValueError):
    """An output the tool refuses to write; ``str(e)`` is one line naming the path."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"output {path}: {problem}")
        self.path = path
        self.problem = problem


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def is_stream(path: str | None) -> bool:
    """True for stdout (``None``, ``-``) and an existing character device or FIFO (symlinks followed)."""
    if path is None or path == "-":
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # either one missing or unreadable: not the same existing file
        return False


def check_output(path: str | None, inputs: Sequence[str | None] = ()) -> None:
    """Raise ``OutputError`` unless ``path`` can be written without harm (see the module doc)."""
    if path is None or path == "-":
        return
    if path == "":
        raise OutputError("''", "an empty path; give a file name, or - for stdout")
    for source in inputs:
        if source not in (None, "-") and _same_file(path, source):
            same = "" if os.path.abspath(source) == os.path.abspath(path) else f" ({source})"
            raise OutputError(path, f"is one of the inputs{same}; writing it would destroy it")
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None  # a new file (or a symlink to one): its directory is checked below
    except OSError as e:
        raise OutputError(path, e.strerror or str(e)) from None
    if mode is not None:
        for is_kind, kind in _KINDS:
            if is_kind(mode):
                raise OutputError(path, f"is {kind}, not a file to write")
        if not os.access(path, os.W_OK):
            raise OutputError(path, "is not writable" if stat.S_ISREG(mode) else "cannot be opened for writing")
        if not stat.S_ISREG(mode):
            return  # a character device or a FIFO: streamed in place
    directory = os.path.dirname(os.path.realpath(path))
    if not os.path.isdir(directory):
        missing = "is not a directory" if os.path.exists(directory) else "does not exist"
        raise OutputError(path, f"directory {directory} {missing}")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(path, f"directory {directory} is not writable")


@contextlib.contextmanager
def open_output(path: str | None, inputs: Sequence[str | None] = ()) -> Iterator[TextIO]:
    """``check_output``, then a text stream to ``path``: atomic for a file, streamed otherwise."""
    check_output(path, inputs)
    if is_stream(path):
        name = "stdout" if path is None or path == "-" else path
        _STREAMS.append(name)  # until the block ends well: what an interrupt or error cuts short
        with _stdout_text() if name == "stdout" else open(path, "w", encoding="utf-8", newline="\n") as out:
            yield out
        _STREAMS.remove(name)
    else:
        with atomic_outputs([path]) as (tmp,):
            with open(tmp, "w", encoding="utf-8", newline="\n") as out:
                yield out


_STREAMS: list[str] = []  # streamed outputs of this process not yet finished


def streams_in_use() -> list[str]:
    """The streamed outputs (``stdout``, a FIFO, a device) that ``open_output`` left unfinished."""
    return list(_STREAMS)


@contextlib.contextmanager
def _stdout_text() -> Iterator[TextIO]:
    """stdout as UTF-8 text with ``\\n`` newlines whatever the locale; flushed, not closed."""
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # stdout replaced by a text-only object: use it as it is
        yield sys.stdout
        sys.stdout.flush()
        return
    out = io.TextIOWrapper(buffer, encoding="utf-8", newline="\n")
    try:
        yield out
        out.flush()  # a closed pipe raises here, for the caller to see
    finally:
        with contextlib.suppress(ValueError, OSError):
            out.detach()  # leaves sys.stdout's buffer open
