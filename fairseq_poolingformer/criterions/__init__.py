"""Registered Fairseq criteria: importing this package registers them."""

from . import long_qa  # noqa: F401  (long_qa: span + long-answer + answer-type cross-entropies)
