"""Shared pytest set-up: repo root importable, torch sized for 2-core CI, path fixtures."""
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "tests" / "data"

if str(REPO_ROOT) not in sys.path:  # `benchmarks` (and the `preprocess` alias) importable without installing
    sys.path.insert(0, str(REPO_ROOT))

# CI has 2 cores: more threads only oversubscribe (and subprocesses inherit these).
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")

import torch  # noqa: E402  (after the thread variables)

# session fixtures: the QA samples preprocessed and binarized, and a tiny checkpoint trained on them
from qa_trained import qa_checkpoint, qa_data  # noqa: E402,F401

torch.set_num_threads(min(2, os.cpu_count() or 1))


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
