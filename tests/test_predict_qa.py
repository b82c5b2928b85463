"""predict_qa: official NQ / TyDi QA prediction formats from real samples run through the real QA
preprocessing (GPT-2 BPE), a tiny checkpoint trained by fairseq-train, and an oracle model whose
predictions must map back to exactly the gold tokens / bytes, YES / NO answers included, with
scores that the official NQ scorer's threshold sweep fully credits; blind test splits."""
import dataclasses
import gzip
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import fairseq_poolingformer  # noqa: F401
from fairseq_poolingformer.qa import predict as predict_qa
from fairseq_poolingformer.qa.combine import NULL_SCORE, ExamplePrediction, combine_windows
from fairseq_poolingformer.qa.official import nq_entry, tydi_entry, write_predictions
from fairseq_poolingformer.qa.scores import WindowResult, predict_windows
from fairseq_poolingformer.tasks.long_qa import LongQAConfig, LongQATask
from qa_trained import BPE, DATA, REPO, gold_nq, gold_tydi
from tool_main import exit_status

TYDI_SAMPLE_PREDICTION = os.path.join(DATA, "qa_model", "tydi_sample_prediction.jsonl")
NQ_KEYS = {"example_id", "long_answer", "long_answer_score", "short_answers", "short_answers_score", "yes_no_answer"}
SPAN_KEYS = {"start_token", "end_token", "start_byte", "end_byte"}


@pytest.fixture
def data(qa_data):
    """The binarized splits (qa_trained.qa_data, shared by the session)."""
    return qa_data


@pytest.fixture
def checkpoint(qa_checkpoint):
    """The tiny trained checkpoint (qa_trained.qa_checkpoint, shared by the session)."""
    return qa_checkpoint


def _predict_cli(checkpoint, data_dir, split, fmt, output):
    """recipes/<fmt>/predict.sh (python -m fairseq_poolingformer.qa.predict --format <fmt>)."""
    cmd = [os.path.join(REPO, "recipes", fmt, "predict.sh"), checkpoint, data_dir, str(output), "--split", split,
           "--cpu", "--batch-size", "16", "--verbose"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO,
                          env=dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable))


# ---------------------------------------------------------------------------
# format checks (shared by the CLI run and the oracle)

def check_nq(path, gold_records=None):
    with open(path, encoding="utf-8") as f:
        top = json.load(f)
    assert set(top) == {"predictions"}
    gold = {int(g["example_id"]): g for g in gold_records or gold_nq()}
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
        if p["yes_no_answer"] != "NONE":  # the official reader refuses YES/NO next to a short answer
            assert p["short_answers"] == []
        for sa in p["short_answers"]:
            assert set(sa) == SPAN_KEYS and all(type(v) is int for v in sa.values())
            assert 0 <= sa["start_token"] < sa["end_token"] <= n_tokens
            assert sa["start_byte"] == sa["end_byte"] == -1  # simplified format: no bytes
    return {p["example_id"]: p for p in preds}


def _schema(value):
    if isinstance(value, dict):
        return {k: _schema(v) for k, v in value.items()}
    return type(value).__name__


def check_tydi(path, gold_records=None):
    sample = [json.loads(line) for line in open(TYDI_SAMPLE_PREDICTION, encoding="utf-8")]
    schema = _schema(sample[0])
    assert all(_schema(s) == schema for s in sample)
    lines = [json.loads(line) for line in open(path, encoding="utf-8")]
    gold = {g["example_id"]: g for g in gold_records or gold_tydi()}
    assert sorted(p["example_id"] for p in lines) == sorted(gold)
    for p in lines:
        assert _schema(p) == schema, p
        g = gold[p["example_id"]]
        assert p["language"] == g["language"]
        assert -1 <= p["passage_answer_index"] < len(g["passage_answer_candidates"])
        assert p["yes_no_answer"] in ("NONE", "YES", "NO")
        m = p["minimal_answer"]
        if p["yes_no_answer"] != "NONE":  # the official reader refuses YES/NO next to a minimal span
            assert m == {"start_byte_offset": -1, "end_byte_offset": -1}
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
    assert "wrote 1 predictions (40 windows, 0 examples without windows)" in proc.stderr
    check_nq(tmp_path / "nq.json")
    report = json.loads((tmp_path / "nq.report.json").read_text())
    assert report["examples"] == 1 and report["windows"] == 40 and report["max_answer_len"] == 30
    assert sum(report["short_answers"].values()) == sum(report["long_answers"].values()) == 1
    assert 0 <= report["spans_at_max_answer_len"] <= report["short_answers"]["span"]
    proc = _predict_cli(checkpoint, data["bin"], "tydi", "tydi", tmp_path / "tydi.jsonl")
    assert proc.returncode == 0, proc.stderr[-3000:]
    preds = check_tydi(tmp_path / "tydi.jsonl")
    assert len(preds) == 3


def test_predict_cli_rejects_wrong_format(data, checkpoint, tmp_path, capsys):
    """Checked before the model loads (in process: the command itself runs in the test above)."""
    assert exit_status(predict_qa.main, ["--checkpoint", checkpoint, "--data-dir", data["bin"], "--split", "tydi",
                                         "--format", "nq", "--output", tmp_path / "x.json", "--cpu"]) == 1
    assert capsys.readouterr().err == (f"predict_qa: error: {os.path.join(data['bin'], 'tydi.examples.jsonl')} holds "
                                       "'tydi' examples; use --format tydi; nothing written\n")
    assert not (tmp_path / "x.json").exists()


def test_predict_cli_checkpoint_of_another_dictionary(data, checkpoint, tmp_path, capsys):
    """Data binarized with another dictionary than the checkpoint's: one line with both sizes and the
    data the checkpoint was trained on, exit 1, nothing written (in process, before any window)."""
    foreign = tmp_path / "bin"
    shutil.copytree(data["bin"], foreign)
    with open(foreign / "dict.txt", "a") as f:
        f.write("".join(f"extra{i} 1\n" for i in range(3)))
    size = len(open(os.path.join(data["bin"], "dict.txt")).readlines()) + 5  # + 4 specials + <mask>
    code = exit_status(predict_qa.main, ["--checkpoint", checkpoint, "--data-dir", foreign, "--split", "nq",
                                         "--format", "nq", "--output", tmp_path / "x.json", "--cpu"])
    err = capsys.readouterr().err
    assert code == 1 and not (tmp_path / "x.json").exists()
    assert err == (f"predict_qa: error: checkpoint {checkpoint} was trained with a dictionary of {size} symbols "
                   f"(trained on {data['bin']}), but {foreign / 'dict.txt'} gives {size + 3}: not the same dictionary. Binarize the "
                   "data with the checkpoint's dictionary (binarize.sh --dict <the dict.txt it was trained with>), or "
                   "use a checkpoint trained with this one; nothing written\n")


def test_predict_cli_is_quiet_unless_verbose_and_ctrl_c_is_one_line(data, checkpoint, tmp_path, monkeypatch, capsys):
    """As docs/fairseq.md promises for every tool: nothing on stderr by default, Fairseq's and its
    own log lines with --verbose, Ctrl-C one line and exit 130 with nothing written."""
    out = tmp_path / "nq.json"
    args = ["--checkpoint", checkpoint, "--data-dir", data["bin"], "--split", "nq", "--format", "nq", "--output", out,
            "--cpu", "--batch-size", "16"]
    assert exit_status(predict_qa.main, args) == 0
    assert capsys.readouterr() == ("", "")
    expected = check_nq(out)
    out.unlink()
    assert exit_status(predict_qa.main, args + ["--verbose"]) == 0
    err = capsys.readouterr().err
    assert "| INFO | fairseq" in err and "wrote 1 predictions (40 windows, 0 examples without windows)" in err
    assert check_nq(out) == expected
    out.unlink()
    (tmp_path / "nq.report.json").unlink()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(predict_qa, "predict_windows", interrupted)
    assert exit_status(predict_qa.main, args) == 130
    assert capsys.readouterr() == ("", "predict_qa: interrupted; nothing written\n")
    assert sorted(os.listdir(tmp_path)) == []


def test_summarization_hub_refuses_a_qa_checkpoint(checkpoint):
    from fairseq_poolingformer.summarization import SummarizerError, from_pretrained

    with pytest.raises(SummarizerError, match=r"is a question answering \(long_qa\) checkpoint, not a summarization"):
        from_pretrained(checkpoint, data_name_or_path=os.path.join(BPE, "dict.txt"), bpe="none")


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


def _oracle_predictions(data, split, fmt, out, max_answer_len=30, max_sentences=5):
    task = LongQATask.setup_task(LongQAConfig(data=data["bin"], seed=1))
    ds = task.load_dataset(split)
    by_example = predict_windows(Oracle(ds, task.dictionary.pad()), task, split,
                                            max_answer_len=max_answer_len, max_sentences=max_sentences or len(ds))
    assert sum(len(v) for v in by_example.values()) == len(ds)  # every window, none dropped
    write_predictions(os.path.join(data["bin"], f"{split}.examples.jsonl"), by_example, fmt, str(out),
                                 max_answer_len)
    return by_example


def _answer_windows(data, split, answer_type):
    """window_index of the windows labelled ``answer_type`` (3 yes, 4 no), per example row."""
    labels = np.load(os.path.join(data["bin"], f"{split}.labels.npy"))
    rows = labels[labels[:, 3] == answer_type]
    return {int(r): sorted(int(w) for w in rows[rows[:, 0] == r, 1]) for r in np.unique(rows[:, 0])}


def nq_official_scores(gold_records, predictions_path, tmp_path) -> dict:
    """The official NQ scorer (PyPI natural-questions: natural_questions.nq_eval) on our file.
    Gold: the records with their annotations in the original-format span layout (bytes -1, so
    spans compare by token); one annotation each, so one non-null vote makes a gold answer."""
    def span(d):
        return {"start_token": d["start_token"], "end_token": d["end_token"], "start_byte": -1, "end_byte": -1}

    gold_path = tmp_path / "nq-gold.jsonl.gz"
    with gzip.open(gold_path, "wt", encoding="utf-8") as f:
        for g in gold_records:
            anns = [{"long_answer": span(a["long_answer"]), "short_answers": [span(x) for x in a["short_answers"]],
                     "yes_no_answer": a["yes_no_answer"]} for a in g["annotations"]]
            f.write(json.dumps({"example_id": g["example_id"], "annotations": anns}) + "\n")
    proc = subprocess.run([sys.executable, "-m", "natural_questions.nq_eval", f"--gold_path={gold_path}",
                           f"--predictions_path={predictions_path}", "--long_non_null_threshold=1",
                           "--short_non_null_threshold=1", "--num_threads=1"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_oracle_nq_prediction_is_the_gold_answer(data, tmp_path):
    _oracle_predictions(data, "nq", "nq", tmp_path / "nq.json")
    preds = check_nq(tmp_path / "nq.json")
    gold = gold_nq()[0]
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
    n_tokens = len(gold_nq()[0]["document_text"].split(" "))
    assert example["units"] is None and example["num_units"] == n_tokens
    explicit = dict(example, units=[[i, i + 1] for i in range(n_tokens)])
    del explicit["num_units"]
    explicit_path = tmp_path / "explicit.examples.jsonl"
    explicit_path.write_text(json.dumps(explicit) + "\n", encoding="utf-8")
    write_predictions(str(explicit_path), by_example, "nq", str(tmp_path / "explicit.json"))
    compact = (tmp_path / "compact.json").read_bytes()
    assert compact == (tmp_path / "explicit.json").read_bytes()
    [p] = json.loads(compact)["predictions"]
    ann = gold_nq()[0]["annotations"][0]
    assert [(s["start_token"], s["end_token"]) for s in p["short_answers"]] == [
        (s["start_token"], s["end_token"]) for s in ann["short_answers"]] == [(213, 215)]


def test_oracle_tydi_prediction_is_the_gold_answer(data, tmp_path):
    # the Arabic gold minimal answer is longer than 30 GPT-2 subwords: allow long spans here
    _oracle_predictions(data, "tydi", "tydi", tmp_path / "tydi.jsonl", max_answer_len=512)
    preds = check_tydi(tmp_path / "tydi.jsonl")
    for g in gold_tydi():
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
# YES / NO answers and scores the official threshold sweep can use

def test_oracle_nq_yes_no_null_and_span_score_full_marks_with_the_official_scorer(data, tmp_path):
    """One batch holds every window of a span, a YES, a NO and a null example (same document):
    the answer type is decided per document, and the official scorer's best-threshold F1 is 1."""
    yes_no_windows = {**_answer_windows(data, "nq_yn", 3), **_answer_windows(data, "nq_yn", 4)}
    assert sorted(yes_no_windows) == [1, 2] and all(min(w) > 0 for w in yes_no_windows.values())  # not first
    out = tmp_path / "nq.json"
    _oracle_predictions(data, "nq_yn", "nq", out, max_sentences=None)
    gold = data["nq_yn"]
    preds = check_nq(out, gold)
    span, yes, no, null = (preds[int(g["example_id"])] for g in gold)
    assert [p["yes_no_answer"] for p in (span, yes, no, null)] == ["NONE", "YES", "NO", "NONE"]
    assert [(s["start_token"], s["end_token"]) for s in span["short_answers"]] == [(213, 215)]
    assert (yes["long_answer"]["start_token"], no["long_answer"]["start_token"]) == (941, 1933)
    assert null["long_answer"]["start_token"] == -1 or null["long_answer_score"] < 0
    # one scale: every real answer above every null one
    assert min(p["short_answers_score"] for p in (span, yes, no)) > 0 > null["short_answers_score"]
    assert min(p["long_answer_score"] for p in (span, yes, no)) > 0 > null["long_answer_score"]
    scores = nq_official_scores(gold, out, tmp_path)
    assert scores["long-best-threshold-f1"] == 1.0 and scores["short-best-threshold-f1"] == 1.0, scores


def test_oracle_tydi_yes_no_in_late_windows_of_multibyte_documents(data, tmp_path):
    yes_no_windows = {**_answer_windows(data, "tydi_yn", 3), **_answer_windows(data, "tydi_yn", 4)}
    assert sorted(yes_no_windows) == [3, 4] and all(min(w) > 0 for w in yes_no_windows.values())
    out = tmp_path / "tydi.jsonl"
    _oracle_predictions(data, "tydi_yn", "tydi", out, max_answer_len=512, max_sentences=None)
    gold = data["tydi_yn"]
    preds = check_tydi(out, gold)
    korean, thai, arabic, korean_no, thai_yes = (preds[g["example_id"]] for g in gold)
    assert (korean_no["yes_no_answer"], korean_no["passage_answer_index"]) == ("NO", 12)
    assert (thai_yes["yes_no_answer"], thai_yes["passage_answer_index"]) == ("YES", 5)
    assert (thai["minimal_answer"]["start_byte_offset"], thai["minimal_answer"]["end_byte_offset"]) == (814, 852)
    assert [p["yes_no_answer"] for p in (korean, thai, arabic)] == ["NONE"] * 3
    real = (thai, arabic, korean_no, thai_yes)
    assert min(p["minimal_answer_score"] for p in real) > 0 > korean["minimal_answer_score"]
    assert min(p["passage_answer_score"] for p in real) > 0 > korean["passage_answer_score"]


# ---------------------------------------------------------------------------
# blind test sets

@pytest.mark.parametrize("fmt", ["nq", "tydi"])
def test_predict_cli_on_a_blind_test_split(data, checkpoint, tmp_path, fmt):
    """Records without annotations: binarized whole, predicted, one entry per example."""
    output = tmp_path / ("test.json" if fmt == "nq" else "test.jsonl")
    proc = _predict_cli(checkpoint, data["bin"], f"{fmt}_test", fmt, output)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "without labels (predict only)" in proc.stderr
    gold = data[f"{fmt}_yn"]
    preds = check_nq(output, gold) if fmt == "nq" else check_tydi(output, gold)
    assert len(preds) == len(gold)
    labels = np.load(os.path.join(data["bin"], f"{fmt}_test.labels.npy"))
    report = json.loads((tmp_path / "test.report.json").read_text())
    assert report["examples"] == len(gold) and report["windows"] == len(labels)
    assert (labels[:, 3:] == -1).all()


# ---------------------------------------------------------------------------
# combining windows and writing entries

def _w(score, us, ue, types=(0, 5, 0, 0, 0), cands=None, span_len=1):
    return WindowResult(score, us, ue, list(map(float, types)), dict(cands or {}), span_len)


def test_combine_windows_takes_the_best_span_and_candidate():
    pred = combine_windows([_w(1.0, 3, 4, cands={0: 2.0, 1: -1.0}), _w(2.5, 10, 12, cands={1: 3.0}),
                            _w(-math.inf, -1, -1, cands={2: 0.5})])
    assert (pred.unit_start, pred.unit_end, pred.short_score) == (10, 12, 2.5)
    assert (pred.long_index, pred.long_score, pred.yes_no) == (1, 3.0, "NONE")
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


NULL_WINDOW = (10, 0, 0, 0, 0)   # type logits of a window the model calls null


def test_yes_no_is_decided_per_document_not_by_the_best_span_window():
    """A null window first, the yes evidence in window 3, every span tied at the null score
    (yes/no windows point their span at <s>): YES, scored by its margin over null."""
    windows = [_w(-20.0, 0, 0, NULL_WINDOW), _w(-20.0, 5, 5, NULL_WINDOW), _w(-20.0, 9, 9, NULL_WINDOW),
               _w(-20.0, 14, 14, (1, 0, 2, 7.5, 0)), _w(-20.0, 20, 20, NULL_WINDOW)]
    yes = combine_windows(windows)
    assert (yes.yes_no, yes.unit_start, yes.unit_end, yes.span_len) == ("YES", -1, -1, 0)
    assert yes.short_score == 6.5  # 7.5 - 1: its log-odds against null in that window
    no = combine_windows(windows[:3] + [_w(-20.0, 14, 14, (1, 0, 2, 0, 4))])
    assert (no.yes_no, no.short_score) == ("NO", 3.0)
    null = combine_windows(windows[:3])
    assert (null.yes_no, null.unit_start, null.short_score) == ("NONE", 0, -20.0)  # best span, below 0
    assert null.short_score < 0 < no.short_score < yes.short_score


def test_short_evidence_against_yes_no_evidence_across_windows():
    span_window = _w(12.0, 3, 4, (0, 6, 0, 1, 0), span_len=2)
    weak_yes = _w(-3.0, 9, 9, (0, 0, 0, 4, 0))
    pred = combine_windows([weak_yes, span_window])
    assert (pred.yes_no, pred.unit_start, pred.unit_end, pred.short_score, pred.span_len) == ("NONE", 3, 4, 12.0, 2)
    strong_yes = _w(-3.0, 9, 9, (0, 0, 0, 8, 0))
    pred = combine_windows([strong_yes, span_window])
    assert (pred.yes_no, pred.unit_start, pred.short_score) == ("YES", -1, 8.0)
    tie = combine_windows([_w(2.0, 1, 1, (0, 5, 0, 5, 5))])  # a tie goes to the span
    assert (tie.yes_no, tie.unit_start) == ("NONE", 1)


def test_yes_no_entries_in_both_official_formats():
    pred = ExamplePrediction(long_index=0, long_score=4.0, short_score=6.5, yes_no="YES")
    nq_example = {"example_id": "5", "units": None, "num_units": 6,
                  "candidates": [{"index": 0, "start_token": 1, "end_token": 5, "start_byte": -1, "end_byte": -1}]}
    e = nq_entry(nq_example, pred)
    assert (e["short_answers"], e["yes_no_answer"], e["short_answers_score"]) == ([], "YES", 6.5)
    tydi_example = {"example_id": "7", "language": "russian", "units": [[0, 4]],
                    "candidates": [{"index": 0, "start_byte": 0, "end_byte": 4}]}
    t = tydi_entry(tydi_example, dataclasses.replace(pred, yes_no="NO"))
    assert t["minimal_answer"] == {"start_byte_offset": -1, "end_byte_offset": -1}
    assert (t["yes_no_answer"], t["minimal_answer_score"], t["passage_answer_index"]) == ("NO", 6.5, 0)


def test_report_counts_answer_kinds_and_spans_cut_at_max_answer_len(tmp_path):
    examples = tmp_path / "x.examples.jsonl"
    records = [{"example_id": str(i), "dataset": "tydi", "language": "thai", "units": [[j, j + 1] for j in range(40)],
                "candidates": [{"index": 0, "start_byte": 0, "end_byte": 40}]} for i in range(4)]
    examples.write_text("".join(json.dumps(r) + "\n" for r in records))
    by_example = {
        0: [(0, _w(9.0, 2, 31, cands={0: 1.0}, span_len=30))],           # a span at the limit
        1: [(0, _w(9.0, 2, 5, span_len=4))],                              # a short span
        2: [(1, _w(-5.0, 2, 2, (0, 0, 0, 3, 0))), (0, _w(-5.0, 1, 1, NULL_WINDOW))],  # YES
    }                                                                     # 3: no window at all
    report = write_predictions(str(examples), by_example, "tydi", str(tmp_path / "p.jsonl"), 30)
    saved = json.loads((tmp_path / "p.report.json").read_text())
    assert saved == {"predictions": str(tmp_path / "p.jsonl"), "format": "tydi", **report.to_dict()}
    assert saved["short_answers"] == {"span": 2, "YES": 1, "NO": 0, "null": 1}
    assert saved["long_answers"] == {"answer": 1, "null": 3}
    assert (saved["examples"], saved["windows"], saved["examples_without_windows"]) == (4, 4, 1)
    assert saved["spans_at_max_answer_len"] == 1
    assert "1 predicted spans are --max-answer-len 30 subwords long" in report.summary()
    lines = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [p["example_id"] for p in lines] == [0, 1, 2, 3]
    assert lines[3]["minimal_answer_score"] == lines[3]["passage_answer_score"] == NULL_SCORE
    with pytest.raises(ValueError, match="example rows \\[7\\]"):
        write_predictions(str(examples), {7: by_example[0]}, "tydi", str(tmp_path / "q.jsonl"))
    assert not (tmp_path / "q.jsonl").exists()


@pytest.mark.parametrize("logits", [(0, 0, 0, math.inf, 0), (math.nan, 0, 0, 0, 0)], ids=["inf", "nan"])
def test_non_finite_logits_are_an_error_not_a_score(tmp_path, logits):
    """e.g. an fp16 overflow: the file would hold Infinity / NaN, which no scorer can rank."""
    examples = tmp_path / "x.examples.jsonl"
    examples.write_text(json.dumps({"example_id": "3", "dataset": "tydi", "language": "thai", "units": [[0, 1]],
                                    "candidates": []}) + "\n")
    with pytest.raises(ValueError, match="x.examples.jsonl:1: example 3: the model's logits are not finite"):
        write_predictions(str(examples), {0: [(0, _w(1.0, 0, 0, logits))]}, "tydi", str(tmp_path / "p.jsonl"))
    assert not (tmp_path / "p.jsonl").exists() and not (tmp_path / "p.report.json").exists()
