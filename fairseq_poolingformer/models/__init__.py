"""Registered Fairseq models: importing this package registers them and their architectures."""

from . import poolingformer_bart  # noqa: F401  (poolingformer_bart, poolingformer_bart_{tiny,base,large})
from . import poolingformer_roberta  # noqa: F401  (poolingformer_roberta, _{tiny,base,large}, poolingformer_xlmr_large)
