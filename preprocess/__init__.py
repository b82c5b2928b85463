"""Data conversion for fairseq-poolingformer: raw corpora -> plain text -> BPE -> fairseq-preprocess.

Modules:
  common  -- shared helpers: atomic outputs, JSONL reading, InputError, Report, parallel_map
  arxiv   -- Cohan et al. arXiv/PubMed JSONL -> {split}.source / {split}.target
  bpe     -- text files -> GPT-2 BPE ids or sentencepiece pieces (one line per line)

This package never imports the models (data flows one way: raw -> preprocess -> binarized).
"""
