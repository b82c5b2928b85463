"""How the tools talk to a terminal: quiet by default, one line per error, never a traceback.

``quiet(verbose=False)``
    Call once the arguments are parsed. Logs go to stderr through the progress bar (a line
    never breaks the bar), at WARNING, or at INFO with ``verbose`` (Fairseq's INFO lines:
    dictionaries, model, task). Fairseq's command-line modules (``fairseq_cli.generate``,
    ``train``, ...) call ``logging.basicConfig(level=INFO, stream=sys.stdout)`` when imported,
    which would put INFO lines on stdout among the results: their handler is replaced. Python
    warnings go through the same handler, except ``compat.STACK_WARNINGS`` (Hydra's and torch's
    deprecations of Fairseq's own calls, the ``pin_memory`` warning without a GPU): they name
    nothing the user can change, and are filtered by category and message.

``run(prog, main, errors=())``
    Runs ``main() -> int`` and exits with its status. The exit statuses of every tool:

    ===  =========================================================================
    0    success
    1    an error the user can fix: one line ``<prog>: error: <what>`` on stderr
         (``OutputError``, ``OSError`` naming a file, and the tool's ``errors``)
    2    a usage error (argparse: the usage and one ``error:`` line)
    130  interrupted (Ctrl-C): one line ``<prog>: interrupted; nothing written``
         (or that the streamed output is cut short)
    141  stdout closed by its reader (``pf-answer ... | head``): silent, as a tool
         killed by SIGPIPE
    ===  =========================================================================

    Any other exception is a bug and keeps its traceback.

``progress_bar(total, desc, unit="doc")``
    A ``tqdm`` bar on stderr, shown only when stderr is a terminal.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Callable, NoReturn

from fairseq_poolingformer.inference.output import OutputError, streams_in_use

__all__ = ["EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_INTERRUPTED", "EXIT_BROKEN_PIPE",
           "quiet", "run", "progress_bar"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141

# Loggers quiet below WARNING unless verbose (the root logger too: every other library).
TOOL_LOGGERS = ("fairseq", "fairseq_cli", "fairseq_poolingformer")
LOG_FORMAT = "%(asctime)s | %(levelname)s | %(name)s | %(message)s"  # Fairseq's own


class ProgressBarHandler(logging.Handler):
    """Writes each record to stderr with ``tqdm.write``, above a progress bar when one is shown."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            try:
                from tqdm import tqdm
            except ImportError:
                sys.stderr.write(message + "\n")
            else:
                tqdm.write(message, file=sys.stderr)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def quiet(verbose: bool = False) -> None:
    """Logs at WARNING (INFO with ``verbose``) through the progress bar; machine warnings off."""
    level = logging.INFO if verbose else logging.WARNING
    root = logging.getLogger()
    for handler in list(root.handlers):  # e.g. fairseq_cli's basicConfig: INFO to stdout
        root.removeHandler(handler)
    handler = ProgressBarHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(level)
    for name in TOOL_LOGGERS:
        logging.getLogger(name).setLevel(level)
    logging.captureWarnings(True)  # the warnings that remain go through the handler too
    from fairseq_poolingformer.compat import silence_stack_warnings  # imports torch: here, not for run()

    silence_stack_warnings()  # done on the package's import already; again in case filters were reset


def _one_line(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{error.filename}: {error.strerror}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split("\n"))


def _what_was_written() -> str:
    streams = streams_in_use()
    return f"{', '.join(streams)} cut short" if streams else "nothing written"


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file descriptor (e.g. captured)
        pass
    finally:
        os.close(devnull)


def run(prog: str, main: Callable[[], int | None],
        errors: tuple[type[BaseException], ...] = ()) -> NoReturn:
    """Run a tool's ``main`` and exit with the statuses in the module doc."""
    try:
        status = main() or EXIT_OK
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {_what_was_written()}", file=sys.stderr)
        status = EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        status = EXIT_BROKEN_PIPE
    except (OutputError, OSError, *errors) as e:
        print(f"{prog}: error: {_one_line(e)}; {_what_was_written()}", file=sys.stderr)
        status = EXIT_ERROR
    sys.exit(status)


def progress_bar(total: int | None, desc: str, unit: str = "doc"):
    """A ``tqdm`` progress bar on stderr, shown on a terminal only (``update(n)``, a context manager)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                disable=not sys.stderr.isatty())
