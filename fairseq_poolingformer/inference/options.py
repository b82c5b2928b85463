"""Command-line values checked when they are parsed: argparse prints ``argument --flag: ...``
naming the flag and the value, before any file is read or model loaded; and a tool's run from
parsed options to its exit status (``tool_main``)."""
from __future__ import annotations

import argparse
import math
from typing import Callable, NoReturn, Optional, Sequence

from fairseq_poolingformer.inference.console import quiet, run
from fairseq_poolingformer.inference.errors import InferenceError


def _number(kind: type, text: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                         f"got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0."""
    value = _number(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def finite_float(text: str) -> float:
    """A finite number (not nan, not inf)."""
    value = _number(float, text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def add_device_options(parser: argparse.ArgumentParser) -> None:
    """The options every tool shares: the device and dtype, the logs (``tool_main`` reads ``--verbose``)."""
    parser.add_argument("--cpu", action="store_true", help="run on CPU even when CUDA is available")
    parser.add_argument("--fp16", action="store_true", help="half precision (CUDA only)")
    parser.add_argument("--verbose", action="store_true",
                        help="print Fairseq's log lines (dictionaries, model, task) on stderr")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """``add_device_options`` and where a streamed output goes (stdout by default)."""
    add_device_options(parser)
    parser.add_argument("--output", help="write here instead of stdout: a file complete or absent, a FIFO or "
                        "device streamed, a symlink followed, never one of the inputs")


def tool_main(prog: str, parse: Callable[[Optional[Sequence[str]]], argparse.Namespace],
              work: Callable[[argparse.Namespace], int]) -> Callable[[Optional[Sequence[str]]], NoReturn]:
    """A tool's ``main(argv=None)``: parse ``argv`` (exit 2 on a usage error), quiet the logs
    (``--verbose``: Fairseq's), run ``work`` and exit: 0, 1 with one error line, 130 on Ctrl-C
    (``console.run``)."""
    def main(argv: Optional[Sequence[str]] = None) -> NoReturn:
        args = parse(argv)
        quiet(args.verbose)
        run(prog, lambda: work(args), errors=(InferenceError,))
    return main
