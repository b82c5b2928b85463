"""The readers: each turns one kind of source into the core's
:class:`~fairseq_poolingformer.convert.core.source.Source` (a state dict, model args and
dict.txt as a Fairseq release holds them).

- ``release``: a Fairseq release (``--checkpoint model.pt --dict dict.txt``);
- ``hf``: a Hugging Face ``save_pretrained`` directory of BART, LED or RoBERTa / XLM-R (``--hf DIR``).

Readers import the core and each other's helpers, never the command line.
"""
