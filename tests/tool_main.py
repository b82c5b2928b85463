"""Run a tool's ``main`` in this process as its console script would: the exit status."""
import logging
from typing import Callable, Sequence

import pytest

from fairseq_poolingformer.inference.console import TOOL_LOGGERS


def exit_status(main: Callable[[Sequence[str]], object], argv: Sequence[object]) -> int:
    """``main(argv)`` must exit (``console.run`` or argparse): its status. The logging set up by
    the tool (``console.quiet``) is undone afterwards, so later tests see pytest's."""
    root = logging.getLogger()
    saved = root.level, list(root.handlers), {name: logging.getLogger(name).level for name in TOOL_LOGGERS}
    try:
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in argv])
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)
        logging.captureWarnings(False)
    return exit_info.value.code
