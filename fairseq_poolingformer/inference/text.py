"""Documents as the tools read them: UTF-8 bytes decoded as they are (no newline translation),
so character offsets are those of the file on disk (CRLF included)."""
from __future__ import annotations

import sys

from fairseq_poolingformer.inference.errors import InferenceError


def read_text(path: str) -> str:
    """A UTF-8 file (``-``: stdin) as text; InferenceError naming it otherwise."""
    try:
        if path == "-":
            return sys.stdin.buffer.read().decode("utf-8")
        with open(path, "rb") as f:
            return f.read().decode("utf-8")
    except UnicodeDecodeError as e:
        raise InferenceError(f"{'stdin' if path == '-' else path}: not UTF-8 text (byte {e.start}: "
                             f"{e.object[e.start:e.start + 1]!r})") from None
    except OSError as e:
        raise InferenceError(f"{path}: {e.strerror or e}") from None
