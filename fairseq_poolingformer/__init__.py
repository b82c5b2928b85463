"""fairseq-poolingformer: Poolingformer (Zhang et al., ICML 2021) as a Fairseq plugin.

Importing this package (directly, or through ``--user-dir``) registers every model,
architecture, task and criterion it defines, and applies the compatibility fixes the
pinned Fairseq needs on this stack (see ``compat``) and makes ``fairseq-train``'s checkpoints
safe against kills (see ``checkpoints``).
"""

__version__ = "0.1.0"

import importlib.util as _importlib_util
import os as _os

# Without Fairseq installed (or with FAIRSEQ_POOLINGFORMER_TORCH_ONLY=1, for a Fairseq that is
# installed but broken), only the torch-only attention (``fairseq_poolingformer.modules``) is
# usable and nothing is registered: e.g. a GPU box checking the kernels (``make gpu-check``),
# or the preprocessing steps of the binarize recipes, which need no registration (6 s a step).
# With Fairseq installed, a failing import below is a real error and is raised.
HAVE_FAIRSEQ = (_importlib_util.find_spec("fairseq") is not None
                and _os.environ.get("FAIRSEQ_POOLINGFORMER_TORCH_ONLY") != "1")

if HAVE_FAIRSEQ:
    # Registration imports: each line below registers Fairseq components on import.
    from . import compat  # noqa: F401  (first: fixes Fairseq on this torch before anything runs)
    from . import checkpoints  # noqa: F401  (atomic checkpoint files, resume after a kill)
    from . import models  # noqa: F401  (poolingformer_bart; see models/__init__.py)
    from . import tasks, criterions  # noqa: F401  (long_qa task and criterion)
