"""Kept for scripts written against the old name: the summarization hub is
``fairseq_poolingformer.summarization`` and the QA reader ``fairseq_poolingformer.qa``."""
from fairseq_poolingformer.qa import QAReader, load_reader  # noqa: F401
from fairseq_poolingformer.summarization import PoolingformerSummarizer, from_pretrained  # noqa: F401
