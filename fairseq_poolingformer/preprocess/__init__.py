"""Data conversion for fairseq-poolingformer: raw corpora -> plain text -> BPE -> fairseq-preprocess.

Modules:
  common  -- shared helpers: atomic outputs, JSONL reading, InputError, Report, parallel_map
  arxiv   -- Cohan et al. arXiv/PubMed JSONL -> {split}.source / {split}.target
  bpe     -- text files -> GPT-2 BPE ids or sentencepiece pieces (one line per line)
  nq, tydi -- Natural Questions / TyDi QA records -> QA examples and windows (JSONL)
  qa_units, qa_tokenize, qa_windows -- the shared QA pipeline behind nq and tydi
  qa_binarize -- QA windows -> the long_qa task's binarized split
  unk_rate -- the <unk> share of a binarized split (binarize.sh fails above --max-unk-rate)
  mmap_index -- a fairseq-preprocess split's index (sizes, dtype), read without importing Fairseq

Each module runs as ``python -m fairseq_poolingformer.preprocess.<module>`` from any directory.
No module here imports the models (data flows one way: raw -> preprocess -> binarized); importing
this package still runs ``fairseq_poolingformer/__init__`` (Fairseq registration), as any plugin
import does.
"""
