"""predict_qa: official NQ / TyDi QA prediction formats from real samples run through the real QA
preprocessing (GPT-2 BPE), a tiny checkpoint trained by fairseq-train, and an oracle model whose
predictions must map back to exactly the gold tokens / bytes."""
import gzip
import json
import math
import os
import subprocess
import sys

import pytest
import torch

import fairseq_poolingformer  # noqa: F401
from fairseq_poolingformer import predict_qa
from fairseq_poolingformer.predict_qa import ExamplePrediction, WindowResult, combine_windows, nq_entry, tydi_entry
from fairseq_poolingformer.tasks.long_qa import LongQAConfig, LongQATask
from preprocess import nq as nq_pre
from preprocess import qa_binarize
from preprocess import tydi as tydi_pre

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "tests", "data")
BPE = os.path.join(DATA, "gpt2_bpe")
NQ_DEV = os.path.join(DATA, "nq", "dev_sample.jsonl")
TYDI_DEV = os.path.join(DATA, "tydiqa", "small_gold_annotation.jsonl.gz")
TYDI_SAMPLE_PREDICTION = os.path.join(DATA, "qa_model", "tydi_sample_prediction.jsonl")
NQ_KEYS = {"example_id", "long_answer", "long_answer_score", "short_answers", "short_answers_score", "yes_no_answer"}
SPAN_KEYS = {"start_token", "end_token", "start_byte", "end_byte"}


def _bpe_args(split: str, out: str, extra=()) -> list:
    return ["--output-dir", out, "--split", split, "--bpe", "gpt2", "--dict", os.path.join(BPE, "dict.txt"),
            "--encoder-json", os.path.join(BPE, "encoder.json"), "--vocab-bpe", os.path.join(BPE, "vocab.bpe"),
            "--max-length", "192", "--doc-stride", "96", "--no-progress", *extra]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Windows of the real NQ dev sample and TyDi dev samples (GPT-2 BPE, 192 / 96), binarized
    in one data dir: splits nq, tydi, and train (= nq) for a short training run."""
    root = tmp_path_factory.mktemp("predict")
    jsonl, bin_dir = str(root / "jsonl"), str(root / "bin")
    assert nq_pre.main(["--input", NQ_DEV, *_bpe_args("nq", jsonl)]) == 0
    # split: every gold minimal answer maps to whole subwords (exact round trip for the oracle)
    assert tydi_pre.main(["--input", TYDI_DEV, *_bpe_args("tydi", jsonl, ["--answer-boundaries", "split"])]) == 0
    for split, src in (("nq", "nq"), ("tydi", "tydi"), ("train", "nq")):
        qa_binarize.binarize_split(f"{jsonl}/{src}.windows.jsonl", f"{jsonl}/{src}.examples.jsonl",
                                   os.path.join(BPE, "dict.txt"), bin_dir, split, progress=False)
    return {"root": root, "bin": bin_dir}


@pytest.fixture(scope="module")
def checkpoint(data):
    """A tiny model trained for a few updates through recipes/nq/train.sh (CPU overrides)."""
    save_dir = data["root"] / "ckpt"
    env = dict(os.environ, OMP_NUM_THREADS="1", CPU="1", FP16="0", CHECKPOINT_ACTIVATIONS="0",
               ARCH="poolingformer_roberta_tiny", MAX_POSITIONS="512", BATCH="8", MAX_SENTENCES="8", EPOCHS="1",
               VALID_SUBSET="nq", NUM_WORKERS="0", PYTHON=sys.executable)
    proc = subprocess.run([os.path.join(REPO, "recipes", "nq", "train.sh"), data["bin"], "none", str(save_dir)],
                          capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "40 training windows, batch 8 = 8 x 1 GPU(s) x update-freq 1, 5 updates (1 warm-up)" in out, out[-2000:]
    assert "valid on 'nq' subset" in out and "short_f1" in out
    return str(save_dir / "checkpoint_best.pt")


def _predict_cli(checkpoint, data_dir, split, fmt, output):
    """recipes/<fmt>/predict.sh (python -m fairseq_poolingformer.predict_qa --format <fmt>)."""
    cmd = [os.path.join(REPO, "recipes", fmt, "predict.sh"), checkpoint, data_dir, str(output), "--split", split,
           "--cpu", "--batch-size", "16"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO,
                          env=dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable))


def _gold_nq():
    return [json.loads(line) for line in open(NQ_DEV, encoding="utf-8")]


def _gold_tydi():
    with gzip.open(TYDI_DEV, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# ---------------------------------------------------------------------------
# format checks (shared by the CLI run and the oracle)

def check_nq(path):
    with open(path, encoding="utf-8") as f:
        top = json.load(f)
    assert set(top) == {"predictions"}
    gold = {int(g["example_id"]): g for g in _gold_nq()}
    preds = top["predictions"]
    assert sorted(p["example_id"] for p in preds) == sorted(gold)
    for p in preds:
        assert set(p) == NQ_KEYS
        assert type(p["example_id"]) is int
        assert type(p["long_answer_score"]) is float and math.isfinite(p["long_answer_score"])
        assert type(p["short_answers_score"]) is float and math.isfinite(p["short_answers_score"])
        assert p["yes_no_answer"] in ("NONE", "YES", "NO")
        g = gold[p["example_id"]]
        n_tokens = len(g["document_text"].split(" "))
        la = p["long_answer"]
        assert set(la) == SPAN_KEYS and all(type(v) is int for v in la.values())
        if la["start_token"] != -1:
            assert {"start_token": la["start_token"], "end_token": la["end_token"]} in [
                {"start_token": c["start_token"], "end_token": c["end_token"]} for c in g["long_answer_candidates"]]
        assert isinstance(p["short_answers"], list)
        for sa in p["short_answers"]:
            assert set(sa) == SPAN_KEYS and all(type(v) is int for v in sa.values())
            assert 0 <= sa["start_token"] < sa["end_token"] <= n_tokens
            assert sa["start_byte"] == sa["end_byte"] == -1  # simplified format: no bytes
    return {p["example_id"]: p for p in preds}


def _schema(value):
    if isinstance(value, dict):
        return {k: _schema(v) for k, v in value.items()}
    return type(value).__name__


def check_tydi(path):
    sample = [json.loads(line) for line in open(TYDI_SAMPLE_PREDICTION, encoding="utf-8")]
    schema = _schema(sample[0])
    assert all(_schema(s) == schema for s in sample)
    lines = [json.loads(line) for line in open(path, encoding="utf-8")]
    gold = {g["example_id"]: g for g in _gold_tydi()}
    assert sorted(p["example_id"] for p in lines) == sorted(gold)
    for p in lines:
        assert _schema(p) == schema, p
        g = gold[p["example_id"]]
        assert p["language"] == g["language"]
        assert -1 <= p["passage_answer_index"] < len(g["passage_answer_candidates"])
        assert p["yes_no_answer"] in ("NONE", "YES", "NO")
        m = p["minimal_answer"]
        text = g["document_plaintext"].encode("utf-8")
        if m["start_byte_offset"] != -1:
            assert 0 <= m["start_byte_offset"] < m["end_byte_offset"] <= len(text)
            text[m["start_byte_offset"]:m["end_byte_offset"]].decode("utf-8")  # whole characters
        else:
            assert m["end_byte_offset"] == -1
        assert math.isfinite(p["passage_answer_score"]) and math.isfinite(p["minimal_answer_score"])
    return {p["example_id"]: p for p in lines}


# ---------------------------------------------------------------------------
# the CLI on a trained checkpoint

def test_predict_cli_nq_and_tydi_formats(data, checkpoint, tmp_path):
    proc = _predict_cli(checkpoint, data["bin"], "nq", "nq", tmp_path / "nq.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrote 1 predictions (40 windows)" in proc.stderr
    check_nq(tmp_path / "nq.json")
    proc = _predict_cli(checkpoint, data["bin"], "tydi", "tydi", tmp_path / "tydi.jsonl")
    assert proc.returncode == 0, proc.stderr[-3000:]
    preds = check_tydi(tmp_path / "tydi.jsonl")
    assert len(preds) == 3


def test_predict_cli_rejects_wrong_format(data, checkpoint, tmp_path, capsys):
    """Checked before the model loads (in process: the command itself runs in the test above)."""
    with pytest.raises(SystemExit) as exit_info:
        predict_qa.main(["--checkpoint", checkpoint, "--data-dir", data["bin"], "--split", "tydi", "--format", "nq",
                         "--output", str(tmp_path / "x.json"), "--cpu"])
    assert exit_info.value.code != 0
    assert "holds 'tydi' examples; use --format tydi" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


# ---------------------------------------------------------------------------
# an oracle model: predictions must map back to exactly the gold offsets

class Oracle(torch.nn.Module):
    """Returns logits that put the gold labels of each window first (looked up by its tokens)."""

    def __init__(self, dataset, pad):
        super().__init__()
        self.pad = pad
        self.labels = {tuple(dataset[i]["input_ids"].tolist()): dataset[i]["labels"] for i in range(len(dataset))}

    def forward(self, src_tokens, global_mask=None, candidate_spans=None, candidate_mask=None, qa_head=None):
        B, T = src_tokens.shape
        K = candidate_spans.shape[1]
        start = torch.full((B, T), -10.0)
        end = torch.full((B, T), -10.0)
        start[:, 0] = end[:, 0] = 0.0
        long = torch.full((B, K + 1), -10.0)
        long[:, 0] = 0.0
        answer_type = torch.zeros(B, 5)
        for b in range(B):
            row = src_tokens[b]
            labels = self.labels[tuple(row[row != self.pad].tolist())]
            _, _, _, a_type, s, e, lp = labels.tolist()
            if a_type == 1:
                start[b, s] = end[b, e] = 10.0
            if lp >= 0:
                long[b, lp + 1] = 10.0
            answer_type[b, a_type] = 10.0
        return {"start": start, "end": end, "long": long, "answer_type": answer_type}, {}


def _oracle_predictions(data, split, fmt, out, max_answer_len=30):
    task = LongQATask.setup_task(LongQAConfig(data=data["bin"], seed=1))
    ds = task.load_dataset(split)
    by_example = predict_qa.predict_windows(Oracle(ds, task.dictionary.pad()), task, split,
                                            max_answer_len=max_answer_len, max_sentences=5)
    assert sum(len(v) for v in by_example.values()) == len(ds)  # every window, none dropped
    predict_qa.write_predictions(os.path.join(data["bin"], f"{split}.examples.jsonl"), by_example, fmt, str(out))
    return by_example


def test_oracle_nq_prediction_is_the_gold_answer(data, tmp_path):
    _oracle_predictions(data, "nq", "nq", tmp_path / "nq.json")
    preds = check_nq(tmp_path / "nq.json")
    gold = _gold_nq()[0]
    p = preds[int(gold["example_id"])]
    ann = gold["annotations"][0]
    assert p["long_answer"]["start_token"] == ann["long_answer"]["start_token"] == 212
    assert p["long_answer"]["end_token"] == ann["long_answer"]["end_token"]
    assert [(s["start_token"], s["end_token"]) for s in p["short_answers"]] == [
        (s["start_token"], s["end_token"]) for s in ann["short_answers"]]
    assert p["short_answers_score"] > 0 and p["long_answer_score"] > 0


def test_oracle_nq_compact_and_explicit_units_give_identical_offsets(data, tmp_path):
    """The preprocessing writes NQ units compactly; the same examples with the explicit
    [[i, i + 1], ...] list must give byte-identical predictions (the gold short answer)."""
    by_example = _oracle_predictions(data, "nq", "nq", tmp_path / "compact.json")
    [example] = [json.loads(line) for line in open(os.path.join(data["bin"], "nq.examples.jsonl"), encoding="utf-8")]
    n_tokens = len(_gold_nq()[0]["document_text"].split(" "))
    assert example["units"] is None and example["num_units"] == n_tokens
    explicit = dict(example, units=[[i, i + 1] for i in range(n_tokens)])
    del explicit["num_units"]
    explicit_path = tmp_path / "explicit.examples.jsonl"
    explicit_path.write_text(json.dumps(explicit) + "\n", encoding="utf-8")
    predict_qa.write_predictions(str(explicit_path), by_example, "nq", str(tmp_path / "explicit.json"))
    compact = (tmp_path / "compact.json").read_bytes()
    assert compact == (tmp_path / "explicit.json").read_bytes()
    [p] = json.loads(compact)["predictions"]
    ann = _gold_nq()[0]["annotations"][0]
    assert [(s["start_token"], s["end_token"]) for s in p["short_answers"]] == [
        (s["start_token"], s["end_token"]) for s in ann["short_answers"]] == [(213, 215)]


def test_oracle_tydi_prediction_is_the_gold_answer(data, tmp_path):
    # the Arabic gold minimal answer is longer than 30 GPT-2 subwords: allow long spans here
    _oracle_predictions(data, "tydi", "tydi", tmp_path / "tydi.jsonl", max_answer_len=512)
    preds = check_tydi(tmp_path / "tydi.jsonl")
    for g in _gold_tydi():
        p = preds[g["example_id"]]
        ann = next((a for a in g["annotations"] if a["minimal_answer"]["plaintext_start_byte"] >= 0), None)
        if ann is None:  # the Korean example: no answer -> every score negative
            assert p["passage_answer_score"] < 0 and p["minimal_answer_score"] < 0
            continue
        assert p["passage_answer_index"] == ann["passage_answer"]["candidate_index"]
        assert (p["minimal_answer"]["start_byte_offset"], p["minimal_answer"]["end_byte_offset"]) == (
            ann["minimal_answer"]["plaintext_start_byte"], ann["minimal_answer"]["plaintext_end_byte"])
        assert p["minimal_answer_score"] > 0


def test_oracle_tydi_spans_respect_max_answer_len(data, tmp_path):
    _oracle_predictions(data, "tydi", "tydi", tmp_path / "tydi.jsonl", max_answer_len=30)
    preds = check_tydi(tmp_path / "tydi.jsonl")
    thai = preds[2460336140331547872]  # gold 814-852: a few subwords, found exactly
    assert (thai["minimal_answer"]["start_byte_offset"], thai["minimal_answer"]["end_byte_offset"]) == (814, 852)
    arabic = preds[2731616829613113346]  # gold 154-267: longer than 30 subwords, so not predicted whole
    span = (arabic["minimal_answer"]["start_byte_offset"], arabic["minimal_answer"]["end_byte_offset"])
    assert span != (154, 267)


# ---------------------------------------------------------------------------
# combining windows and writing entries

def _w(score, us, ue, types=(0, 5, 0, 0, 0), cands=None):
    return WindowResult(score, us, ue, list(map(float, types)), dict(cands or {}))


def test_combine_windows_takes_the_best_span_and_candidate():
    pred = combine_windows([_w(1.0, 3, 4, cands={0: 2.0, 1: -1.0}), _w(2.5, 10, 12, cands={1: 3.0}),
                            _w(-math.inf, -1, -1, cands={2: 0.5})])
    assert (pred.unit_start, pred.unit_end, pred.short_score) == (10, 12, 2.5)
    assert (pred.long_index, pred.long_score, pred.yes_no) == (1, 3.0, "NONE")
    yes = combine_windows([_w(1.0, 3, 4, types=(0, 0, 0, 9, 0)), _w(0.5, 5, 5)])
    assert yes.yes_no == "YES" and yes.unit_start == -1 and yes.short_score == 1.0
    empty = combine_windows([])
    assert (empty.long_index, empty.unit_start, empty.yes_no) == (-1, -1, "NONE")


@pytest.mark.parametrize("units", [{"units": [[i, i + 1] for i in range(6)]}, {"units": None, "num_units": 6}],
                         ids=["explicit", "compact"])
def test_entries_map_units_to_official_offsets(units):
    nq_example = {"example_id": "-8062182676792486818", **units,
                  "candidates": [{"index": 0, "start_token": 1, "end_token": 5, "start_byte": 10, "end_byte": 50}],
                  "token_bytes": [[0, 3], [4, 9], [10, 14], [15, 20], [21, 30], [31, 40]]}
    e = nq_entry(nq_example, ExamplePrediction(0, 1.5, 2, 3, 0.5, "NONE"))
    assert e["example_id"] == -8062182676792486818
    assert e["long_answer"] == {"start_token": 1, "end_token": 5, "start_byte": 10, "end_byte": 50}
    assert e["short_answers"] == [{"start_token": 2, "end_token": 4, "start_byte": 10, "end_byte": 20}]
    last = nq_entry(nq_example, ExamplePrediction(0, 1.5, 5, 5, 0.5, "NONE"))  # the last token
    assert last["short_answers"] == [{"start_token": 5, "end_token": 6, "start_byte": 31, "end_byte": 40}]
    with pytest.raises(IndexError):  # a unit the example does not have
        nq_entry(nq_example, ExamplePrediction(0, 1.5, 5, 6, 0.5, "NONE"))
    null = nq_entry(nq_example, ExamplePrediction())
    assert null["long_answer"] == {k: -1 for k in SPAN_KEYS} and null["short_answers"] == []
    tydi_example = {"example_id": "7", "language": "thai", "units": [[1, 4], [4, 10], [11, 20]],
                    "candidates": [{"index": 0, "start_byte": 1, "end_byte": 10}, {"index": 1, "start_byte": 11,
                                                                                    "end_byte": 20}]}
    t = tydi_entry(tydi_example, ExamplePrediction(1, 2.0, 1, 2, 1.0, "NONE"))
    assert t == {"example_id": 7, "language": "thai", "passage_answer_index": 1, "passage_answer_score": 2.0,
                 "minimal_answer": {"start_byte_offset": 4, "end_byte_offset": 20}, "minimal_answer_score": 1.0,
                 "yes_no_answer": "NONE"}
