"""Console scripts: the Fairseq command-line tools with this package already imported.

Fairseq has no entry-point discovery, so an installed plugin registers nothing until it is
imported (``--user-dir`` is Fairseq's only way to import it). Each script here imports ``fairseq_poolingformer``
(registering its models, tasks and criteria and applying ``compat``), then runs the stock
Fairseq main. ``pf-train ARGS`` is ``fairseq-train --user-dir <this package> ARGS``.

Also runnable without installation: ``python -m fairseq_poolingformer.cli train ARGS``.
"""

import importlib
import sys
from typing import Callable, Dict, List, Optional

from fairseq_poolingformer import compat  # noqa: F401  (registers the package and its compat fixes; also under FAIRSEQ_POOLINGFORMER_TORCH_ONLY=1:
# Fairseq is then imported with the root logger left alone, so the tool's own logging setup applies)

# script name -> Fairseq module whose ``cli_main`` it runs
TOOLS: Dict[str, str] = {
    "train": "fairseq_cli.train",
    "generate": "fairseq_cli.generate",
    "interactive": "fairseq_cli.interactive",
    "preprocess": "fairseq_cli.preprocess",
    "validate": "fairseq_cli.validate",
}


def _fairseq_main(tool: str) -> Callable[[], None]:
    return importlib.import_module(TOOLS[tool]).cli_main


def train() -> None:
    _fairseq_main("train")()


def generate() -> None:
    _fairseq_main("generate")()


def interactive() -> None:
    _fairseq_main("interactive")()


def preprocess() -> None:
    _fairseq_main("preprocess")()


def validate() -> None:
    _fairseq_main("validate")()


def main(argv: Optional[List[str]] = None) -> None:
    """``python -m fairseq_poolingformer.cli TOOL [fairseq args...]``."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in TOOLS:
        names = ", ".join(TOOLS)
        sys.exit(f"usage: python -m fairseq_poolingformer.cli {{{names}}} [fairseq arguments]")
    tool = argv[0]
    sys.argv = [f"pf-{tool}", *argv[1:]]
    _fairseq_main(tool)()


if __name__ == "__main__":
    main()
