"""The decoding defaults of every summarizer: the hub's ``sample``, ``pf-summarize`` and
``recipes/arxiv/generate.sh`` all read this one table.

The paper's beam search (beam 5, length penalty 2) with BART's arXiv-style length limits and
trigram blocking. ``generate.sh`` reads the table as shell defaults (:func:`shell_defaults`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Optional

from fairseq_poolingformer.summarization.errors import SummarizerError


@dataclass(frozen=True)
class Decoding:
    """Fairseq's generation options (``fairseq-generate``'s flags without the dashes)."""
    beam: int = 5
    lenpen: float = 2.0
    max_len_a: float = 0.0             # max length = max_len_a * source length + max_len_b
    max_len_b: int = 512
    min_len: int = 56
    no_repeat_ngram_size: int = 3

    def as_kwargs(self) -> dict:
        return asdict(self)


DEFAULTS = Decoding()
# generate.sh's environment variable for each option
SHELL_NAMES = {"beam": "BEAM", "lenpen": "LENPEN", "max_len_a": "MAX_LEN_A", "max_len_b": "MAX_LEN_B",
               "min_len": "MIN_LEN", "no_repeat_ngram_size": "NO_REPEAT"}


def check_decoding(options: dict, max_target: Optional[int] = None, max_source: Optional[int] = None,
                   name: Callable[[str], str] = str) -> None:
    """SummarizerError naming the option (``name(option)``: ``--min-len`` on a command line)
    unless Fairseq's generator can honour ``options`` for every document: a beam of at least 1,
    a positive ``max_len_b``, non-negative ``min_len``, ``max_len_a`` and n-gram size, a finite
    ``lenpen`` and ``max_len_a``, and ``min_len`` within the shortest maximum length the
    generator can set for a batch. That maximum is ``min(int(max_len_a * source tokens +
    max_len_b), max_target)``; a short document makes it ``max_len_b``, so ``min_len`` may not
    exceed ``max_len_b`` (whatever ``max_len_a``) nor the model's ``max_target`` target
    positions. With the model's ``max_source`` positions, ``max_len_a * max_source +
    max_len_b`` must be a finite length."""
    value = {**DEFAULTS.as_kwargs(), **options}
    for option in ("lenpen", "max_len_a"):
        if not math.isfinite(value[option]):
            raise SummarizerError(f"{name(option)} must be a finite number, got {value[option]}")
    for option, least in (("beam", 1), ("max_len_b", 1), ("min_len", 0), ("no_repeat_ngram_size", 0),
                          ("max_len_a", 0)):
        if value[option] < least:
            raise SummarizerError(f"{name(option)} must be at least {least}, got {value[option]}")
    min_len, max_len_a, max_len_b = value["min_len"], value["max_len_a"], value["max_len_b"]
    if min_len > max_len_b:
        whose, why = ("a summary", "") if max_len_a == 0 else (
            "a short document's summary", f" (its maximum length is {name('max_len_a')} {max_len_a:g} x its "
                                          f"tokens + {name('max_len_b')} {max_len_b})")
        raise SummarizerError(f"{name('min_len')} {min_len} is larger than {name('max_len_b')} {max_len_b}: "
                              f"{whose} cannot be both{why}")
    if max_target is not None and min_len > max_target:
        raise SummarizerError(f"{name('min_len')} {min_len} is larger than the {max_target} tokens "
                              "the checkpoint's decoder can write")
    if max_source is not None and not math.isfinite(max_len_a * max_source + max_len_b):
        raise SummarizerError(f"{name('max_len_a')} {max_len_a:g} x the checkpoint's {max_source} source positions "
                              f"+ {name('max_len_b')} {max_len_b} is not a finite length")


def shell_defaults(decoding: Decoding = DEFAULTS) -> str:
    """``NAME=${NAME:-value}`` lines for a shell (``generate.sh``): the table where the
    environment sets nothing."""
    return "".join(f"{SHELL_NAMES[k]}=${{{SHELL_NAMES[k]}:-{v:g}}}\n" for k, v in decoding.as_kwargs().items())
