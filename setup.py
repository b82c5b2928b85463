"""Install fairseq-poolingformer: ``pip install -e .`` (``make install`` does it in ``.venv/``).

The CPU stack is pinned in ``requirements.txt``; the ranges below only keep a GPU user's own
CUDA torch (install it first, see docs/GPU.md) instead of pulling another build. ``make install``
installs this package and ``fairseq-fixed`` with ``--no-deps``: Fairseq's metadata names a
torchaudio that does not load beside a CPU torch (requirements-fairseq.txt).
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def _version() -> str:
    for line in (ROOT / "fairseq_poolingformer" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise RuntimeError("fairseq_poolingformer/__init__.py: no __version__ line")


setup(
    name="fairseq-poolingformer",
    version=_version(),
    description="Poolingformer (two-level sliding-window + pooling attention) as a Fairseq plugin",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",  # the pinned numpy and scipy need it
    packages=find_packages(include=["fairseq_poolingformer", "fairseq_poolingformer.*"]),
    install_requires=[
        "torch>=2.1",
        "fairseq-fixed==0.12.3.1",  # imports as `fairseq`; upstream fairseq 0.12.2 fails on Python 3.11
        "numpy",
        "sentencepiece>=0.1.99",
        "rouge-score>=0.1.2",
        "tensorboardX>=2.6",
    ],
    extras_require={
        "dev": ["pytest", "matplotlib"],
        "bench": ["transformers>=4.40", "matplotlib"],
    },
    entry_points={
        "console_scripts": [
            "pf-train = fairseq_poolingformer.cli:train",
            "pf-generate = fairseq_poolingformer.cli:generate",
            "pf-interactive = fairseq_poolingformer.cli:interactive",
            "pf-preprocess = fairseq_poolingformer.cli:preprocess",
            "pf-validate = fairseq_poolingformer.cli:validate",
            "pf-answer = fairseq_poolingformer.qa.answer:cli_main",
            "pf-summarize = fairseq_poolingformer.summarization.summarize:cli_main",
        ]
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
