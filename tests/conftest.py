"""Shared pytest set-up: repo root importable, torch sized for the cores this process may use,
path fixtures, and fixtures built once per run for every xdist worker (:func:`built_once`)."""
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

import pytest
from filelock import FileLock

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "tests" / "data"

if str(REPO_ROOT) not in sys.path:  # `benchmarks` (and the `preprocess` alias) importable without installing
    sys.path.insert(0, str(REPO_ROOT))

# `make test` runs one xdist worker per core: each worker (and the subprocesses it starts, which
# inherit these) gets its share of the cores (CI has 2: more threads only oversubscribe).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, min(2, (os.cpu_count() or 1) // _WORKERS))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("MKL_NUM_THREADS", str(THREADS))

import torch  # noqa: E402  (after the thread variables)

# session fixtures: the QA samples preprocessed and binarized, and a tiny checkpoint trained on them
from qa_trained import qa_checkpoint, qa_data  # noqa: E402,F401

torch.set_num_threads(THREADS)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (the directory holding setup.py)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``tests/data``: the small real samples the tests use."""
    return DATA_DIR


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: tiny models on a busy 2-core machine run fastest
    single-threaded (a second OpenMP thread waits for a descheduled core; measured 100x slower
    beam search). Files opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def built_once(tmp_path_factory) -> Callable[[str, Callable[[Path], None]], Path]:
    """``built_once(name, build)``: the directory ``build(dir)`` filled, built once per test run
    and shared by every xdist worker (the first to ask builds it under a file lock, the others
    wait and reuse it). A build that fails leaves nothing behind, so the next asker retries and
    fails with the same error. Use it for the expensive fixtures several test files need (a
    trained checkpoint); what a test writes goes to its own ``tmp_path``, never in here."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's base directory, shared by the workers

    def get(name: str, build: Callable[[Path], None]) -> Path:
        target = root / "built_once" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        done = target / ".built"
        with FileLock(str(target) + ".lock"):
            if not done.exists():  # built in place: what it writes may record its own paths
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir()
                try:
                    build(target)
                except BaseException:
                    shutil.rmtree(target, ignore_errors=True)
                    raise
                done.touch()
        return target

    return get
