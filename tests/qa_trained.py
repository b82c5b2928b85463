"""The real NQ / TyDi QA samples run through the real QA preprocessing (GPT-2 BPE, windows 192 /
96), binarized, and a tiny checkpoint trained on them by recipes/nq/train.sh: session fixtures
shared by test_predict_qa.py and test_reader.py (registered in conftest.py)."""
import gzip
import json
import os
import subprocess
import sys

import pytest

from fairseq_poolingformer.preprocess import nq as nq_pre
from fairseq_poolingformer.preprocess import qa_binarize
from fairseq_poolingformer.preprocess import tydi as tydi_pre

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "tests", "data")
BPE = os.path.join(DATA, "gpt2_bpe")
NQ_DEV = os.path.join(DATA, "nq", "dev_sample.jsonl")
TYDI_DEV = os.path.join(DATA, "tydiqa", "small_gold_annotation.jsonl.gz")


def _bpe_args(split: str, out: str, extra=()) -> list:
    return ["--output-dir", out, "--split", split, "--bpe", "gpt2", "--dict", os.path.join(BPE, "dict.txt"),
            "--encoder-json", os.path.join(BPE, "encoder.json"), "--vocab-bpe", os.path.join(BPE, "vocab.bpe"),
            "--max-length", "192", "--doc-stride", "96", "--no-progress", *extra]


def _question(record: dict, prefix: str) -> dict:
    """The same document asked another question (so the oracle tells its windows apart)."""
    return dict(record, question_text=f"{prefix} {record['question_text']}")


def nq_yes_no_records() -> list[dict]:
    """The real NQ dev example (long + short answer, tokens 212-310 / 213-215) and the same
    document with a YES on candidate 22 (tokens 941-1107), a NO on candidate 30 (1933-2067),
    both far from the first window, and a null answer."""
    base = gold_nq()[0]
    ann = base["annotations"][0]
    records = [base]
    for k, (prefix, yes_no, cand) in enumerate((("is it true that", "YES", 22), ("is it false that", "NO", 30),
                                                ("who else knows", "NONE", -1)), start=1):
        c = base["long_answer_candidates"][cand] if cand >= 0 else {"start_token": -1, "end_token": -1}
        a = dict(ann, short_answers=[], yes_no_answer=yes_no,
                 long_answer={"start_token": c["start_token"], "end_token": c["end_token"], "candidate_index": cand})
        records.append(dict(_question(base, prefix), example_id=base["example_id"] + k, annotations=[a]))
    return records


def tydi_yes_no_records() -> list[dict]:
    """The three real TyDi dev examples (Korean null, Thai and Arabic minimal answers) and two
    more questions on the Korean and Thai documents: NO on Korean passage 12, YES on Thai
    passage 5 (both far from the first window)."""
    korean, thai, arabic = gold_tydi()
    null_minimal = {"plaintext_start_byte": -1, "plaintext_end_byte": -1}
    records = [korean, thai, arabic]
    for k, (rec, passage, yes_no) in enumerate(((korean, 12, "NO"), (thai, 5, "YES")), start=1):
        ann = {"passage_answer": {"candidate_index": passage}, "minimal_answer": null_minimal, "yes_no_answer": yes_no}
        records.append(dict(_question(rec, "yes or no:"), example_id=rec["example_id"] + k, annotations=[ann] * 3))
    return records


def _write_jsonl(path, records) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return str(path)


def _without_annotations(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "annotations"} for r in records]


@pytest.fixture(scope="session")
def qa_data(built_once):
    """Windows of the real NQ dev sample and TyDi dev samples (GPT-2 BPE, 192 / 96), binarized
    in one data dir: splits nq, tydi, train (= nq) for a short training run, nq_yn / tydi_yn
    (the samples plus YES / NO / null questions on the same documents) and nq_test / tydi_test
    (those, without annotations: blind test sets). Built once per test run, for every xdist
    worker (conftest.built_once): read it, never write into it."""
    root = built_once("qa_data", _binarize_samples)
    return {"root": root, "bin": str(root / "bin"), "nq_yn": nq_yes_no_records(), "tydi_yn": tydi_yes_no_records()}


def _binarize_samples(root) -> None:
    jsonl, bin_dir = str(root / "jsonl"), str(root / "bin")
    assert nq_pre.main(["--input", NQ_DEV, *_bpe_args("nq", jsonl)]) == 0
    # split: every gold minimal answer maps to whole subwords (exact round trip for the oracle)
    assert tydi_pre.main(["--input", TYDI_DEV, *_bpe_args("tydi", jsonl, ["--answer-boundaries", "split"])]) == 0
    nq_yn, tydi_yn = nq_yes_no_records(), tydi_yes_no_records()
    for pre, split, records, extra in (
            (nq_pre, "nq_yn", nq_yn, []), (tydi_pre, "tydi_yn", tydi_yn, ["--answer-boundaries", "split"]),
            (nq_pre, "nq_test", _without_annotations(nq_yn), []),
            (tydi_pre, "tydi_test", _without_annotations(tydi_yn), [])):
        src = _write_jsonl(root / f"{split}.jsonl", records)
        assert pre.main(["--input", src, *_bpe_args(split, jsonl, extra)]) == 0
    for split, src in (("nq", "nq"), ("tydi", "tydi"), ("train", "nq"), ("nq_yn", "nq_yn"),
                       ("tydi_yn", "tydi_yn"), ("nq_test", "nq_test"), ("tydi_test", "tydi_test")):
        qa_binarize.binarize_split(f"{jsonl}/{src}.windows.jsonl", f"{jsonl}/{src}.examples.jsonl",
                                   os.path.join(BPE, "dict.txt"), bin_dir, split, progress=False)


@pytest.fixture(scope="session")
def qa_checkpoint(qa_data, built_once):
    """A tiny model trained for a few updates through recipes/nq/train.sh (CPU overrides), once per
    test run (read only)."""
    return str(built_once("qa_checkpoint", lambda save_dir: _train(qa_data["bin"], save_dir))
               / "checkpoint_best.pt")


def _train(bin_dir: str, save_dir) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", CPU="1", FP16="0", CHECKPOINT_ACTIVATIONS="0",
               ARCH="poolingformer_roberta_tiny", MAX_POSITIONS="512", BATCH="8", MAX_SENTENCES="8", EPOCHS="1",
               VALID_SUBSET="nq", NUM_WORKERS="0", PYTHON=sys.executable)
    proc = subprocess.run([os.path.join(REPO, "recipes", "nq", "train.sh"), bin_dir, "none", str(save_dir)],
                          capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "40 training windows, batch 8 = 8 x 1 GPU(s) x update-freq 1, 5 updates (1 warm-up)" in out, out[-2000:]
    assert "valid on 'nq' subset" in out and "short_f1" in out


def gold_nq():
    return [json.loads(line) for line in open(NQ_DEV, encoding="utf-8")]


def gold_tydi():
    with gzip.open(TYDI_DEV, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]
