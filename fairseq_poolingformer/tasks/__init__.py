"""Registered Fairseq tasks: importing this package registers them."""

from . import long_qa  # noqa: F401  (long_qa: NQ / TyDi QA windows)
