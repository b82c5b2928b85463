"""Generation does not depend on the reference; training says what it skips.

Real arXiv papers through the recipes: binarize (sentencepiece) -> train.sh a tiny model with 64
target positions -> binarize the held-out papers alone against its dictionary -> generate.sh
them (their abstracts are 10x longer than 64 pieces) -> score.py against the whole abstracts. Before, generate.sh failed on them ("Size of sample #0 is
invalid ... since max_positions=(256, 64)"), and train.sh skipped such papers with a WARNING only.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fairseq_poolingformer.preprocess.mmap_index import read_index

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "arxiv"
RECIPES = REPO / "recipes" / "arxiv"
MAX_TARGET = 64


def _env(**extra):
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.update(extra)
    return env


def _run(cmd, env=None, ok=True):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env or _env(), cwd=REPO,
                          timeout=600)
    if ok:
        assert proc.returncode == 0, f"{cmd[:2]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def _abstracts(name):
    with open(DATA / name, encoding="utf-8") as f:
        return [" ".join(w for s in json.loads(line)["abstract_text"] for w in s.split() if w not in ("<S>", "</S>"))
                for line in f]


TRAIN = dict(ARCH="poolingformer_bart_tiny", MAX_SOURCE="256", MAX_TARGET=str(MAX_TARGET), NGPUS="0",
             PRECISION="fp32", TOTAL_BATCH="1", BATCH_SIZE="1", EPOCHS="1", CHECKPOINT_ACTIVATIONS="0")


def _build_chain(root: Path) -> None:
    raw = root / "raw"
    raw.mkdir()
    for name in ("train.txt", "val.txt"):
        (raw / name).write_bytes((DATA / name).read_bytes())
    out = root / "data"
    binarize = _run(["bash", RECIPES / "binarize.sh", raw, out, "--bpe", "sentencepiece", "--vocab-size", "400",
                     "--max-source-words", "300", "--truncate-target", str(MAX_TARGET)])
    train = _run(["bash", RECIPES / "train.sh", out / "bin", root / "ckpt", "--max-update", "2",
                  "--num-workers", "0", "--no-epoch-checkpoints", "--log-interval", "1"], env=_env(**TRAIN))
    # the held-out papers alone (a test split, no train), against the trained model's dictionary
    held_raw = root / "held_raw"
    held_raw.mkdir()
    (held_raw / "test.txt").write_bytes((DATA / "val.txt").read_bytes())
    held_binarize = _run(["bash", RECIPES / "binarize.sh", held_raw, root / "held", "--bpe", "sentencepiece",
                          "--sentencepiece-model", out / "bpe" / "spm.model", "--dict", out / "bpe" / "dict.txt",
                          "--max-source-words", "300"])
    for name, text in (("binarize", binarize.stderr), ("train", train.stdout + train.stderr),
                       ("held_binarize", held_binarize.stderr)):
        (root / f"{name}.log").write_text(text, encoding="utf-8")


@pytest.fixture
def chain(built_once):
    """Binarized papers, a tiny model trained by train.sh, the held-out papers binarized against
    its dictionary: built once per run for every xdist worker (read it, never write into it)."""
    root = built_once("long_references_chain", _build_chain)
    logs = {name: (root / f"{name}.log").read_text(encoding="utf-8")
            for name in ("binarize", "train", "held_binarize")}
    return {"root": root, "data": root / "data", "held": root / "held", **logs,
            "checkpoint": root / "ckpt" / "checkpoint_last.pt"}


def test_generate_summarizes_documents_whose_reference_is_too_long(chain, tmp_path):
    data, held = chain["data"], chain["held"]
    assert "no train split" in chain["held_binarize"] and "<unk> rate: test.source 0.00%, test.target 0.00%" \
        in chain["held_binarize"]
    assert (held / "bin" / "dict.source.txt").read_text() == (data / "bpe" / "dict.txt").read_text()
    test_targets = read_index(held / "bin" / "test.source-target.target").sizes
    assert len(test_targets) == 2 and min(test_targets) > 5 * MAX_TARGET  # what Fairseq used to reject
    env = _env(MAX_SOURCE="256", MIN_LEN="5", MAX_LEN_B="10", NO_REPEAT="0", BEAM="2")
    _run(["bash", RECIPES / "generate.sh", held / "bin", chain["checkpoint"], tmp_path, "--subset", "test",
          "--bpe", "sentencepiece", "--sentencepiece-model", data / "bpe" / "spm.model", "--batch-size", "2"], env=env)
    hyps = (tmp_path / "test.hypotheses").read_text(encoding="utf-8").splitlines()
    assert len(hyps) == 2 and all(h.strip() for h in hyps)
    # pf-summarize on the same papers as text files (the binarized sources' text): the same summaries
    papers = []
    for i, source in enumerate((held / "text" / "test.source").read_text(encoding="utf-8").splitlines()):
        papers.append(tmp_path / "papers" / f"paper{i}.txt")
        papers[-1].parent.mkdir(exist_ok=True)
        papers[-1].write_text(source + "\n", encoding="utf-8")
    summaries = tmp_path / "papers" / "summaries.txt"
    _run([sys.executable, "-m", "fairseq_poolingformer.summarization.summarize", "--checkpoint", chain["checkpoint"],
          "--dict", data / "bpe" / "dict.txt", "--sentencepiece-model", data / "bpe" / "spm.model", "--cpu",
          "--beam", "2", "--min-len", "5", "--max-len-b", "10", "--no-repeat-ngram-size", "0", "--batch-size", "2",
          *papers, "--output", summaries])
    assert summaries.read_text(encoding="utf-8").splitlines() == hyps
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # the source-only view is removed
    # ROUGE against the whole abstracts: text/test.target is never cut
    refs = (held / "text" / "test.target").read_text(encoding="utf-8").splitlines()
    assert refs == _abstracts("val.txt")
    rouge = tmp_path / "rouge.json"
    _run([sys.executable, RECIPES / "score.py", "--hypotheses", tmp_path / "test.hypotheses",
          "--references", held / "text" / "test.target", "--json", rouge])
    assert json.loads(rouge.read_text())["n_documents"] == 2


def test_truncate_target_cuts_train_and_valid_only(chain):
    data = chain["data"]
    for split in ("train", "valid"):
        assert (f"truncated 2 of 2 lines of {data / 'bpe' / split}.target to {MAX_TARGET - 1} tokens "
                f"(+ </s> = {MAX_TARGET} positions)") in chain["binarize"]
        assert list(read_index(data / "bin" / f"{split}.source-target.target").sizes) == [MAX_TARGET] * 2
    assert (data / "text" / "train.target").read_text(encoding="utf-8").splitlines() == _abstracts("train.txt")
    # trained on both papers: the summary line says none was skipped
    assert (f"poolingformer_bart_tiny, 256 source positions, 2 documents (0 of 2 train and 0 of 2 valid "
            f"documents skipped: target longer than MAX_TARGET={MAX_TARGET} tokens)") in chain["train"]
    assert "have invalid sizes and will be skipped" not in chain["train"]


def test_train_summary_counts_documents_skipped_as_too_long(chain, tmp_path):
    """Uncut targets (the test split's, used as a train split): the summary line counts the
    papers Fairseq will skip, and a run that would skip all of them is refused."""
    bin_dir = chain["held"] / "bin"
    view = tmp_path / "bin"
    view.mkdir()
    for name in os.listdir(bin_dir):
        if name.startswith("dict."):
            os.symlink(bin_dir / name, view / name)
        elif name.startswith("test."):
            for split in ("train", "valid"):
                os.symlink(bin_dir / name, view / name.replace("test.", f"{split}.", 1))
    sizes = sorted(read_index(view / "train.source-target.target").sizes)
    between = int(sizes[0])  # the shorter abstract fits, the longer one does not
    proc = _run(["bash", RECIPES / "train.sh", view, tmp_path / "save"],
                env=_env(**dict(TRAIN, MAX_TARGET=str(between), DRY_RUN="1")))
    assert (f"train.sh: poolingformer_bart_tiny, 256 source positions, 1 documents (1 of 2 train and 1 of 2 valid "
            f"documents skipped: target longer than MAX_TARGET={between} tokens; binarize.sh --truncate-target "
            f"{between} cuts them instead)") in proc.stderr
    proc = _run(["bash", RECIPES / "train.sh", view, tmp_path / "save"], env=_env(**dict(TRAIN, DRY_RUN="1")), ok=False)
    assert proc.returncode == 1
    assert (f"train.sh: all 2 train documents of {view} have a target longer than MAX_TARGET={MAX_TARGET} tokens: "
            f"Fairseq would skip every one (binarize with recipes/arxiv/binarize.sh --truncate-target {MAX_TARGET} "
            "to cut them instead, or raise MAX_TARGET)") in proc.stderr


def test_pf_summarize_and_pf_answer_refuse_each_others_checkpoints(chain, qa_checkpoint, tmp_path, capsys):
    """One error line, exit 1, nothing written: a QA checkpoint given to pf-summarize, a
    summarization checkpoint given to pf-answer; and pf-summarize's input errors. The first
    runs as a command (nothing else on stderr, not even logging); the rest call each tool's
    main in this process."""
    from fairseq_poolingformer.qa import answer
    from fairseq_poolingformer.summarization import summarize
    from tool_main import exit_status

    paper = tmp_path / "paper.txt"
    paper.write_text("a paper about long documents\n", encoding="utf-8")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("r\xe9sum\xe9".encode("latin-1"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n", encoding="utf-8")
    out = tmp_path / "out.txt"
    options = ["--output", out, "--cpu"]
    proc = _run([sys.executable, "-m", "fairseq_poolingformer.summarization.summarize", *options, "--checkpoint", qa_checkpoint,
                 paper], ok=False)
    assert (proc.returncode, proc.stderr, proc.stdout) == (1, (
        f"pf-summarize: error: checkpoint {qa_checkpoint} is a question answering (long_qa) checkpoint, not a "
        "summarization (Poolingformer-BART) one: use pf-answer or predict_qa; nothing written\n"), "")
    assert not out.exists()
    cases = [
        (summarize, options + ["--checkpoint", chain["checkpoint"], paper, empty],
         f"pf-summarize: error: {empty}: empty document; nothing written\n"),
        (summarize, options + ["--checkpoint", chain["checkpoint"], paper, latin1],
         f"pf-summarize: error: {latin1}: not UTF-8 text (byte 1: b'\\xe9'); nothing written\n"),
        (answer, ["--checkpoint", chain["checkpoint"], "--question", "what?", paper, "--output", out],
         f"pf-answer: error: checkpoint {chain['checkpoint']} is a summarization (Poolingformer-BART) checkpoint, "
         "not a question answering (long_qa) one: use pf-summarize or generate.sh; nothing written\n"),
    ]
    for tool, args, message in cases:
        assert exit_status(tool.main, args) == 1
        assert capsys.readouterr() == ("", message)
        assert not out.exists()
