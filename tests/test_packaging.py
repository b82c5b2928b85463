"""The installed package stands alone: built from setup.py into a bare directory, it imports and
runs its entry points from outside the repository, even with PyPI's unrelated ``preprocess``
package (here: a stand-in of that name) first on the path."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

ENTRY_POINTS = [  # run as `python -m <module>` by the recipes and docs
    "fairseq_poolingformer.preprocess.arxiv",
    "fairseq_poolingformer.preprocess.bpe",
    "fairseq_poolingformer.preprocess.nq",
    "fairseq_poolingformer.preprocess.tydi",
    "fairseq_poolingformer.preprocess.qa_binarize",
    "fairseq_poolingformer.preprocess.unk_rate",
    "fairseq_poolingformer.predict_qa",  # the old name, kept for users' scripts
    "fairseq_poolingformer.qa.predict",
    "fairseq_poolingformer.convert",
    "fairseq_poolingformer.qa.answer",
    "fairseq_poolingformer.summarization.summarize",
]
CONSOLE_SCRIPTS = {  # setup.py's console_scripts
    "pf-train": "fairseq_poolingformer.cli:train",
    "pf-generate": "fairseq_poolingformer.cli:generate",
    "pf-interactive": "fairseq_poolingformer.cli:interactive",
    "pf-preprocess": "fairseq_poolingformer.cli:preprocess",
    "pf-validate": "fairseq_poolingformer.cli:validate",
    "pf-answer": "fairseq_poolingformer.qa.answer:cli_main",
    "pf-summarize": "fairseq_poolingformer.summarization.summarize:cli_main",
}

# One interpreter runs every module exactly as `python -m <module> --help` would (runpy, as
# __main__), so the Fairseq import is paid once.
RUN_HELP = """
import contextlib, io, runpy, sys
for module in sys.argv[1:]:
    sys.argv = [module, "--help"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as e:
            assert e.code in (0, None), (module, e.code)
    assert "usage:" in out.getvalue(), module
    print("ok", module)
"""
@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """``pip install --target``: a plain (non-editable) install of this checkout, no repo on the path."""
    # Build from a copy of what setup.py reads, so the build leaves nothing in the checkout.
    source = tmp_path_factory.mktemp("source")
    for name in ("setup.py", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "fairseq_poolingformer", source / "fairseq_poolingformer",
                    ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), str(source)],
        check=True, cwd=target, capture_output=True)
    # A stand-in for PyPI's `preprocess` (a different project): it must not be imported by ours.
    clash = target.parent / "clash" / "preprocess"
    clash.mkdir(parents=True)
    (clash / "__init__.py").write_text("raise ImportError('the unrelated PyPI preprocess was imported')\n")
    return target


def _env(installed: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(installed.parent / "clash"), str(installed)])
    return env


def test_installed_package_is_the_built_copy_with_every_module(installed, tmp_path):
    code = ("import fairseq_poolingformer as p, fairseq_poolingformer.preprocess.qa_windows as q, "
            "fairseq_poolingformer.predict_qa; print(p.__file__); print(q.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(installed),
                         check=True, capture_output=True, text=True).stdout.split()
    assert all(Path(f).is_relative_to(installed) for f in out), out
    assert not (installed / "preprocess").exists(), "setup.py must not install a top-level `preprocess`"


def test_entry_points_run_outside_the_repository(installed, tmp_path):
    run = subprocess.run([sys.executable, "-c", RUN_HELP, *ENTRY_POINTS], cwd=tmp_path, env=_env(installed),
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == [w for m in ENTRY_POINTS for w in ("ok", m)]


def test_console_scripts_are_installed_and_run(installed, tmp_path):
    """The installed distribution declares every console script, and pf-answer / pf-summarize
    (the package's own commands) run from the scripts pip wrote."""
    [dist_info] = installed.glob("fairseq_poolingformer-*.dist-info")
    lines = (dist_info / "entry_points.txt").read_text().split("[console_scripts]")[1].strip().splitlines()
    declared = dict(tuple(part.strip() for part in line.split("=")) for line in lines if "=" in line)
    assert declared == CONSOLE_SCRIPTS
    for name in ("pf-answer", "pf-summarize"):
        run = subprocess.run([sys.executable, str(installed / "bin" / name), "--help"], cwd=tmp_path,
                             env=_env(installed), capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout.startswith(f"usage: {name} ")


def test_user_dir_plugin_loads_outside_the_repository(installed, tmp_path):
    """Fairseq's ``--user-dir <installed package>`` import registers the archs, task and criterion."""
    code = ("import argparse; from fairseq import utils; "
            "from fairseq.models import ARCH_MODEL_REGISTRY as A; from fairseq.tasks import TASK_REGISTRY as T; "
            "from fairseq.criterions import CRITERION_REGISTRY as C; "
            f"utils.import_user_module(argparse.Namespace(user_dir={str(installed / 'fairseq_poolingformer')!r})); "
            "print(sorted(a for a in A if a.startswith('poolingformer')), 'long_qa' in T, 'long_qa' in C)")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(installed),
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "'poolingformer_bart_large'" in run.stdout and "'poolingformer_xlmr_large'" in run.stdout
    assert run.stdout.strip().endswith("True True")


def test_old_command_names_still_run_from_the_repository_root(tmp_path):
    """``python -m preprocess.arxiv`` (the documented name before the move) still works in a checkout."""
    run = subprocess.run([sys.executable, "-m", "preprocess.arxiv", "--help"], cwd=REPO,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "usage:" in run.stdout
