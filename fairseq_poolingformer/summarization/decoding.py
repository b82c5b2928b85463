"""The decoding defaults of every summarizer: the hub's ``sample``, ``pf-summarize`` and
``recipes/arxiv/generate.sh`` all read this one table.

The paper's beam search (beam 5, length penalty 2) with BART's arXiv-style length limits and
trigram blocking. ``python -m fairseq_poolingformer.summarization.decoding`` prints the table
as shell assignments (``BEAM=5``, ...); ``generate.sh`` reads them through
:func:`shell_defaults`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


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


def shell_defaults(decoding: Decoding = DEFAULTS, prefix: str = "") -> str:
    """``<prefix>NAME=value`` lines for a shell (``generate.sh``)."""
    return "".join(f"{prefix}{SHELL_NAMES[k]}={v:g}\n" for k, v in decoding.as_kwargs().items())


if __name__ == "__main__":
    print(shell_defaults(), end="")
