"""Run a tool's ``main`` in this process as its console script would: the exit status."""
from typing import Callable, Sequence

import pytest


def exit_status(main: Callable[[Sequence[str]], object], argv: Sequence[object]) -> int:
    """``main(argv)`` must exit (``console.run`` or argparse): its status."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    return exit_info.value.code
