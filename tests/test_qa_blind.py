"""Blind test sets: NQ / TyDi QA records without ``annotations`` (the leaderboard test splits)
are preprocessed and binarized whole, with no label invented, and refused for training.
Real samples (NQ simplified, TyDi Korean / Thai / Arabic) with their annotations removed."""
import copy
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fairseq_poolingformer.criterions.long_qa import LongQACriterion
from fairseq_poolingformer.tasks.long_qa import LongQAConfig, LongQATask
from fairseq_poolingformer.preprocess import nq as nq_pre
from fairseq_poolingformer.preprocess import qa_binarize
from fairseq_poolingformer.preprocess import tydi as tydi_pre
from fairseq_poolingformer.preprocess.common import InputError

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
BPE = DATA / "gpt2_bpe"
NQ_DEV = DATA / "nq" / "dev_sample.jsonl"
TYDI_DEV = DATA / "tydiqa" / "small_gold_annotation.jsonl.gz"
LABEL_KEYS = {"answer_type", "start_position", "end_position", "long_position"}


def _args(src: Path, out: Path, split: str, extra=()) -> list[str]:
    return ["--input", str(src), "--output-dir", str(out), "--split", split, "--bpe", "gpt2",
            "--dict", str(BPE / "dict.txt"), "--encoder-json", str(BPE / "encoder.json"),
            "--vocab-bpe", str(BPE / "vocab.bpe"), "--max-length", "160", "--doc-stride", "80", "--no-progress",
            *extra]


def _write(path: Path, records) -> Path:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _tydi_gold() -> list[dict]:
    with gzip.open(TYDI_DEV, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _blind(records, how="drop"):
    """The records as a blind test set: ``annotations`` removed (``drop``), ``null`` or ``[]``."""
    out = []
    for r in copy.deepcopy(records):
        if how == "drop":
            del r["annotations"]
        else:
            r["annotations"] = None if how == "null" else []
        out.append(r)
    return out


@pytest.mark.parametrize("dataset", ["nq", "tydi"])
def test_blind_records_keep_every_window_without_labels(tmp_path, dataset):
    """Even as --split train (negatives sub-sampled at 0.5), an unlabelled example keeps every
    window: as many as the labelled records give with --negative-rate 1, with the same inputs."""
    pre = nq_pre if dataset == "nq" else tydi_pre
    gold = [json.loads(line) for line in NQ_DEV.open()] if dataset == "nq" else _tydi_gold()
    labelled = _write(tmp_path / "gold.jsonl.gz", gold)
    blind = _write(tmp_path / "blind.jsonl.gz", _blind(gold))
    snap = ["--answer-boundaries", "snap"] if dataset == "tydi" else []  # same input ids for both runs
    assert pre.main(_args(labelled, tmp_path / "gold", "dev", ["--negative-rate", "1", *snap])) == 0
    assert pre.main(_args(blind, tmp_path / "blind", "train", snap)) == 0

    gold_windows = _read_jsonl(tmp_path / "gold" / "dev.windows.jsonl")
    windows = _read_jsonl(tmp_path / "blind" / "train.windows.jsonl")
    assert len(windows) == len(gold_windows) > len(gold)
    for w, g in zip(windows, gold_windows):
        assert not LABEL_KEYS & set(w)  # nothing about answers
        assert {k: v for k, v in g.items() if k not in LABEL_KEYS} == w
    examples = _read_jsonl(tmp_path / "blind" / "train.examples.jsonl")
    assert [e["annotations"] for e in examples] == [None] * len(gold)
    report = json.loads((tmp_path / "blind" / "train.report.json").read_text())
    assert report["kept"] == len(gold) and not report["skipped"]
    assert report["windows"]["unlabelled"] == report["windows"]["kept"] == len(windows)
    assert report["windows"]["negatives_dropped"] == 0
    assert sum(report["windows"]["answer_types"].values()) == 0


@pytest.mark.parametrize("how", ["drop", "null", "empty"])
def test_absent_null_or_empty_annotations_are_unlabelled(tmp_path, how):
    src = _write(tmp_path / "in.jsonl", _blind([json.loads(NQ_DEV.read_text())], how))
    assert nq_pre.main(_args(src, tmp_path / "out", "test")) == 0
    [example] = _read_jsonl(tmp_path / "out" / "test.examples.jsonl")
    assert example["annotations"] is None


def test_mixed_labelled_and_blind_records_binarize_with_unlabelled_rows(tmp_path):
    """One file with a labelled and a blind record (multi-byte scripts): the binarized labels of
    the blind example's windows are -1, the labelled ones are untouched."""
    gold = _tydi_gold()
    thai, arabic = gold[1], gold[2]
    blind_arabic = dict(_blind([arabic])[0], example_id=arabic["example_id"] + 1)
    src = _write(tmp_path / "mixed.jsonl.gz", [thai, blind_arabic])
    jsonl, bin_dir = tmp_path / "jsonl", tmp_path / "bin"
    assert tydi_pre.main(_args(src, jsonl, "test")) == 0
    summary = qa_binarize.binarize_split(str(jsonl / "test.windows.jsonl"), str(jsonl / "test.examples.jsonl"),
                                         str(BPE / "dict.txt"), str(bin_dir), "test", progress=False)
    labels = np.load(bin_dir / "test.labels.npy")
    blind_rows = labels[:, 0] == 1
    assert blind_rows.any() and (~blind_rows).any()
    assert (labels[blind_rows, 3:] == -1).all()
    assert (labels[~blind_rows, 3] >= 0).all() and (labels[~blind_rows, 3] == 1).any()  # Thai's short answer
    assert summary["unlabelled_windows"] == int(blind_rows.sum())
    assert sum(summary["answer_types"].values()) == int((~blind_rows).sum())


def _binarize_blind_nq(tmp_path) -> Path:
    src = _write(tmp_path / "blind.jsonl", _blind([json.loads(NQ_DEV.read_text())]))
    jsonl = tmp_path / "jsonl"
    assert nq_pre.main(_args(src, jsonl, "test")) == 0
    return jsonl


@pytest.mark.parametrize("case", ["labels_for_unlabelled_example", "no_labels_for_labelled_example"])
def test_binarize_refuses_labels_that_disagree_with_the_example(tmp_path, case):
    jsonl = _binarize_blind_nq(tmp_path)
    windows_path, examples_path = jsonl / "test.windows.jsonl", jsonl / "test.examples.jsonl"
    windows = _read_jsonl(windows_path)
    if case == "labels_for_unlabelled_example":
        windows[1].update(answer_type=0, start_position=0, end_position=0, long_position=-1)
    else:
        examples = _read_jsonl(examples_path)
        examples[0]["annotations"] = []
        _write(examples_path, examples)
    _write(windows_path, windows)
    with pytest.raises(InputError) as err:
        qa_binarize.binarize_split(str(windows_path), str(examples_path), str(BPE / "dict.txt"),
                                   str(tmp_path / "bin"), "test", progress=False)
    e = err.value
    assert (e.path, e.field) == (str(windows_path), "answer_type")
    assert e.line == (2 if case == "labels_for_unlabelled_example" else 1), str(e)
    assert not (tmp_path / "bin" / "test.labels.npy").exists()


def test_training_on_a_blind_split_is_a_clear_error(tmp_path):
    jsonl = _binarize_blind_nq(tmp_path)
    bin_dir = tmp_path / "bin"
    qa_binarize.binarize_split(str(jsonl / "test.windows.jsonl"), str(jsonl / "test.examples.jsonl"),
                               str(BPE / "dict.txt"), str(bin_dir), "test", progress=False)
    task = LongQATask.setup_task(LongQAConfig(data=str(bin_dir), seed=1))
    ds = task.load_dataset("test")
    batch = ds.collater([ds[i] for i in range(len(ds))])
    assert (batch["target"]["answer_type"] == -1).all()

    class NoModel(torch.nn.Module):
        def forward(self, **kwargs):
            raise AssertionError("the model must not run on unlabelled windows")

    with pytest.raises(ValueError, match=f"{len(ds)} of {len(ds)} windows in this batch have no labels"):
        LongQACriterion(task)(NoModel(), batch)
