"""Command-line values checked when they are parsed: argparse prints ``argument --flag: ...``
naming the flag and the value, before any file is read or model loaded; and a tool's run from
parsed options to its exit status (``run_tool``)."""
from __future__ import annotations

import argparse
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


def nonnegative_float(text: str) -> float:
    """A finite number >= 0."""
    value = _number(float, text)
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def add_verbose(parser: argparse.ArgumentParser) -> None:
    """``--verbose``: Fairseq's own log lines (dictionaries, model, task) on stderr."""
    parser.add_argument("--verbose", action="store_true",
                        help="print Fairseq's log lines (dictionaries, model, task) on stderr")


def run_tool(prog: str, parse: Callable[[Optional[Sequence[str]]], argparse.Namespace],
             work: Callable[[argparse.Namespace], int], argv: Optional[Sequence[str]] = None) -> NoReturn:
    """Parse ``argv`` (exit 2 on a usage error), quiet the logs (``--verbose``: Fairseq's), run
    ``work`` and exit: 0, 1 with one error line, 130 on Ctrl-C (``console.run``)."""
    args = parse(argv)
    quiet(args.verbose)
    run(prog, lambda: work(args), errors=(InferenceError,))
