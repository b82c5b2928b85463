"""inference/console.py: quiet tools, one line per error or interrupt, the documented exit statuses."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import warnings

import pytest

from fairseq_poolingformer.inference import console, output
from fairseq_poolingformer.inference.console import progress_bar, quiet, run
from fairseq_poolingformer.inference.output import open_output

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def logging_restored(monkeypatch):
    """quiet() changes process-wide logging and warnings state: put it back after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in console.TOOL_LOGGERS}
    monkeypatch.setattr(output, "_STREAMS", [])
    with warnings.catch_warnings():
        yield
    logging.captureWarnings(False)
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


def _exit_status(main, errors=()):
    with pytest.raises(SystemExit) as done:
        run("pf-tool", main, errors)
    return done.value.code


def _raise(error):
    def main():
        raise error
    return main


class ToolError(ValueError):
    pass


def test_success_exits_0_and_a_status_is_kept(capsys):
    assert _exit_status(lambda: None) == 0
    assert _exit_status(lambda: 3) == 3
    assert capsys.readouterr().err == ""


def test_ctrl_c_is_one_line_and_exit_130(capsys):
    assert _exit_status(_raise(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err == "pf-tool: interrupted; nothing written\n"


def test_ctrl_c_while_streaming_says_the_output_is_cut_short(capsys):
    def main():
        with open_output(None) as out:
            out.write("first line\n")
            raise KeyboardInterrupt
    assert _exit_status(main) == 130
    captured = capsys.readouterr()
    assert captured.err == "pf-tool: interrupted; stdout cut short\n" and captured.out == "first line\n"


@pytest.mark.parametrize("error, line", [
    (ToolError("doc.txt:3: field 'question': expected a string"), "doc.txt:3: field 'question': expected a string"),
    (output.OutputError("doc.txt", "is one of the inputs"), "output doc.txt: is one of the inputs"),
    (FileNotFoundError(2, "No such file or directory", "missing.txt"), "missing.txt: No such file or directory"),
    (ToolError("two\nlines"), "two lines"),
])
def test_a_declared_error_is_one_line_and_exit_1(capsys, error, line):
    assert _exit_status(_raise(error), errors=(ToolError,)) == 1
    assert capsys.readouterr().err == f"pf-tool: error: {line}; nothing written\n"


def test_usage_errors_keep_argparse_status_2(capsys):
    import argparse

    parser = argparse.ArgumentParser(prog="pf-tool")
    parser.add_argument("--beam", type=int)
    assert _exit_status(lambda: parser.parse_args(["--beam", "x"])) == 2
    assert "pf-tool: error: argument --beam: invalid int value: 'x'" in capsys.readouterr().err


def test_an_undeclared_error_is_a_bug_and_keeps_its_traceback():
    with pytest.raises(ZeroDivisionError):
        run("pf-tool", lambda: 1 // 0, errors=(ToolError,))


SCRIPT = textwrap.dedent("""
    import sys, time
    from fairseq_poolingformer.inference.console import run
    from fairseq_poolingformer.inference.output import open_output

    def main():
        if sys.argv[1] == "sleep":
            print("ready", file=sys.stderr, flush=True)
            time.sleep(60)
        with open_output(None) as out:
            for i in range(10 ** 6):
                out.write(f"line {i}\\n")
        return 0

    run("pf-tool", main)
""")


def _tool(mode, **kwargs):
    env = dict(os.environ, PYTHONPATH=ROOT, FAIRSEQ_POOLINGFORMER_TORCH_ONLY="1")  # no Fairseq: fast
    return subprocess.Popen([sys.executable, "-c", SCRIPT, mode], env=env, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def test_sigint_in_a_real_process_is_one_line_exit_130_no_traceback():
    proc = _tool("sleep", stdout=subprocess.DEVNULL)
    assert proc.stderr.readline() == "ready\n"
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read()
    assert proc.wait(timeout=30) == 130
    assert err == "pf-tool: interrupted; nothing written\n"


def test_a_closed_stdout_is_a_quiet_exit():
    proc = _tool("write", stdout=subprocess.PIPE)
    assert proc.stdout.readline() == "line 0\n"
    proc.stdout.close()  # like `pf-tool | head -1`
    err = proc.stderr.read()
    assert proc.wait(timeout=30) == console.EXIT_BROKEN_PIPE
    assert err == ""


# ------------------------------------------------------------------------------------- quiet

def test_fairseq_info_is_hidden_by_default_and_shown_with_verbose(capsys):
    log = logging.getLogger("fairseq.tasks.translation")
    quiet()
    log.info("dictionary: 42 types")
    log.warning("a real problem")
    err = capsys.readouterr().err
    assert "dictionary: 42 types" not in err and "| WARNING | fairseq.tasks.translation | a real problem" in err
    quiet(verbose=True)
    log.info("dictionary: 42 types")
    assert "| INFO | fairseq.tasks.translation | dictionary: 42 types" in capsys.readouterr().err


def test_fairseq_cli_logging_on_stdout_is_moved_to_stderr(capsys):
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, force=True)  # as fairseq_cli.generate does
    quiet(verbose=True)
    logging.getLogger("fairseq_cli.generate").info("loading model(s)")
    captured = capsys.readouterr()
    assert captured.out == "" and "loading model(s)" in captured.err


def test_the_pin_memory_warning_is_silenced_and_other_warnings_shown(capsys):
    import torch

    quiet()
    loader = torch.utils.data.DataLoader([1, 2], pin_memory=True)
    assert [int(x) for x in loader] == [1, 2]
    warnings.warn("your document has no paragraphs", UserWarning)
    err = capsys.readouterr().err
    assert "pin_memory" not in err
    assert "UserWarning: your document has no paragraphs" in err and "| WARNING | py.warnings |" in err


def test_a_warning_does_not_break_the_progress_bar_line(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    quiet()
    with progress_bar(3, "pf-tool") as bar:
        bar.update(1)
        logging.getLogger("fairseq_poolingformer.qa.reader").warning("50% <unk>")
        bar.update(1)
    lines = capsys.readouterr().err.split("\n")
    line = next(line for line in lines if "50% <unk>" in line)
    assert "%|" not in line.split("\r")[-1]  # the bar was cleared before the message
    assert any("pf-tool:" in line and "2/3" in line for line in lines)  # and drawn again


def test_the_progress_bar_is_off_when_stderr_is_not_a_terminal(capsys):
    with progress_bar(2, "pf-tool") as bar:
        bar.update(2)
    assert capsys.readouterr().err == ""


def test_importing_the_package_leaves_the_root_logger_alone():
    """Fairseq's import calls ``logging.basicConfig(level=DEBUG)`` (a plot then logs 2,000 matplotlib
    lines); ``compat`` undoes it. The suite's conftest imports Fairseq first through the package,
    so a handler of ``basicConfig``'s in this process is the one Fairseq's import left."""
    import fairseq_poolingformer  # noqa: F401

    basic = [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]
    assert basic == []
    assert logging.getLogger().level != logging.DEBUG


def test_hydra_deprecations_of_fairseqs_config_code_are_silenced():
    """The real call fairseq-train and fairseq-generate make to build their config."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    args = options.parse_args_and_arch(options.get_training_parser(), ["data", "--arch", "transformer"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning shown, but for the filters put in front below
        from fairseq_poolingformer.compat import silence_stack_warnings

        silence_stack_warnings()
        convert_namespace_to_omegaconf(args)
        warnings.warn("a warning of the user's", UserWarning)
    assert [str(w.message) for w in caught] == ["a warning of the user's"]
