"""The core every source feeds: a :class:`~fairseq_poolingformer.convert.core.source.Source`
in, a Poolingformer checkpoint out.

- ``errors``: :class:`ConversionError`, the one error for bad input;
- ``source``: :class:`Source`, what every reader hands the core;
- ``weights``: positions extended by loop copy, loading by name, level 2 started from level 1;
- ``settings``: the ``--pf-*`` flags, the pretrained hyper-parameters kept, the model built;
- ``output``: the staged save (staging directory, dictionaries, ``model.pt``, moved into place);
- ``ledger``: the account of every source tensor (mapped, folded or dropped);
- ``bart``, ``roberta``: a source of each family -> its converted checkpoint.

The core imports nothing from the readers or the command line.
"""
