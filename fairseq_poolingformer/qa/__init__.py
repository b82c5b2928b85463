"""Question answering on long documents with a ``long_qa`` checkpoint (docs/qa.md).

windows -> batches -> per-window scores (``scores``) -> document answers (``combine``) ->
the official NQ / TyDi files (``official``; command line ``predict``); raw documents
(``documents``) through the reader (``reader``; command line ``answer``, ``pf-answer``).
Built on ``fairseq_poolingformer.inference``; never imports ``summarization``.
"""
from fairseq_poolingformer.qa.errors import ReaderError
from fairseq_poolingformer.qa.reader import QAReader, load_reader

__all__ = ["ReaderError", "QAReader", "load_reader"]
