"""Summarizing long documents with a Poolingformer-BART checkpoint (docs/summarization.md).

The hub (``hub``: ``from_pretrained``, ``PoolingformerSummarizer``), its command line
(``summarize``, ``pf-summarize``) and the decoding defaults they and ``generate.sh`` share
(``decoding``). Built on ``fairseq_poolingformer.inference``; never imports ``qa``.
"""
from fairseq_poolingformer.summarization.errors import SummarizerError
from fairseq_poolingformer.summarization.hub import PoolingformerSummarizer, from_pretrained

__all__ = ["SummarizerError", "PoolingformerSummarizer", "from_pretrained"]
