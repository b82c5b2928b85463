"""What the tools print: a progress bar over documents, and their output lines."""
from __future__ import annotations

import sys
from typing import Sequence

from fairseq_poolingformer.preprocess.common import atomic_outputs


def progress_bar(total: int | None, desc: str):
    """A progress bar over documents on stderr, shown on a terminal only (``update(n)``)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="doc", file=sys.stderr, dynamic_ncols=True,
                disable=not sys.stderr.isatty())


def write_lines(lines: Sequence[str], output: str | None) -> None:
    """All lines to ``output`` atomically (complete or absent), or to stdout."""
    if output is None:
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()
        return
    with atomic_outputs([output]) as (tmp,):
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in lines)
