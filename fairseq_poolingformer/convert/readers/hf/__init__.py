"""Hugging Face ``save_pretrained`` directories -> what a Fairseq release holds.

``convert bart|roberta|led --hf DIR`` reads ``DIR/config.json``, the weights
(``model.safetensors``, ``pytorch_model.bin`` or their sharded ``*.index.json`` forms) and the
tokenizer files, and translates them into a Fairseq-release state dict, model arguments and
``dict.txt`` (:func:`~fairseq_poolingformer.convert.readers.hf.source.hf_source`); the core
(:mod:`fairseq_poolingformer.convert.core`) then does what it does for Fairseq releases
(positions, level 2, checkpoint). ``transformers`` is never imported: weights are read with
``safetensors`` / ``torch.load(weights_only=True)``, configs and tokenizers as JSON.

Modules: ``directory`` (reading DIR and the config checks), ``bart`` (BART, LED) and ``roberta``
(RoBERTa, XLM-R) (the tensor tables), ``vocab`` (the tokenizer files), ``source`` (all of them
together, for one model family).

Every tensor of the HF checkpoint is accounted for by a
:class:`~fairseq_poolingformer.convert.core.ledger.TensorLedger`: mapped (renamed), folded
(added into another tensor, exactly), or dropped with a reason; a tensor left over (one these
modules do not know) or one that is missing is an error naming it.

Vocabulary (ids must equal the HF tokenizer's ids, and the embedding rows):

- Fairseq's ``Dictionary`` puts ``<s> <pad> </s> <unk>`` at ids 0-3 and reads the other symbols
  from ``dict.txt`` in order; BART, RoBERTa, XLM-R and LED vocabularies already put their
  specials at 0-3 (checked), so ``dict.txt`` lists HF ids 4, 5, ... in order.
- GPT-2 byte-level BPE (BART, RoBERTa, LED): Fairseq's ``gpt2`` BPE turns text into the ids of
  its ``encoder.json`` written as strings, which ``dict.txt`` maps to rows. We write the HF
  vocabulary itself as ``encoder.json`` (token -> HF id) and its merges as ``vocab.bpe``, and
  ``dict.txt`` line ``k - 4`` is the string ``k``: text -> HF id -> the same row.
- sentencepiece (XLM-R): ``dict.txt`` holds the pieces in HF id order, and the sentencepiece model
  (``sentencepiece.bpe.model``, required in DIR) is copied; its pieces are checked against the
  HF vocabulary (XLM-R: HF id = sentencepiece id + 1).
- RoBERTa / XLM-R: the last row (``<mask>``) is left out of ``dict.txt``: the ``long_qa`` task adds
  ``<mask>`` itself, as Fairseq's masked-LM task does. BART / LED: every row is in ``dict.txt``.
"""
