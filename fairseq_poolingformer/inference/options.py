"""Command-line values checked when they are parsed: argparse prints ``argument --flag: ...``
naming the flag and the value, before any file is read or model loaded."""
from __future__ import annotations

import argparse


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
