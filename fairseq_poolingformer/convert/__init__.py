"""Convert pretrained Fairseq or Hugging Face checkpoints into Poolingformer checkpoints
(``python -m fairseq_poolingformer.convert bart|roberta|led``; see ``cli`` and
docs/convert_hf.md).

What is copied, and how the new weights start:

- Encoder positions are extended to ``--max-source-positions`` (``--max-positions``) N by
  copying the pretrained rows in a loop (``core.weights.extend_positions``): new position ``p``
  (0-based) takes pretrained position ``p mod M`` (M = the pretrained maximum). Fairseq's learned
  positions reserve the first ``padding_idx + 1`` rows (BART: rows 0 and 1), kept as they are.
- Every other pretrained weight is loaded by name (level 1 = the pretrained self-attention).
- Level 2 (``core.weights.init_level2``): q2/k2/v2 copy the level-1 q/k/v projections, the
  level-2 output projection is zero and the LDConv weights W_p are zero (uniform pooling
  weights). So the converted model computes exactly what the pretrained model computes wherever
  the level-1 window covers the input, and fine-tuning grows level 2 from zero.

Three layers, read top-down; imports run only downwards (``tests/test_imports.py`` checks it):

- ``cli`` (and ``__main__``): the command line; picks a reader and a core converter;
- ``readers``: one per kind of source (``release``: a Fairseq release; ``hf``: a Hugging Face
  directory of BART, LED or RoBERTa / XLM-R), each producing a ``core.source.Source``;
- ``core``: what every source feeds (positions, level 2, settings, staged save, the tensor
  ledger, ``ConversionError``) and the converter of each model family.

This package's ``__init__`` imports nothing: import the module that holds a name, e.g.
``from fairseq_poolingformer.convert.core.weights import extend_positions``.
"""
