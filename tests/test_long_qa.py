"""long_qa end to end: binarization round trip and bad input, batching (every window, global
masks), the criterion against a hand computation, and fairseq-train on CPU in a subprocess."""
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import fairseq_poolingformer  # noqa: F401  (registers task, criterion, model)
from fairseq_poolingformer.criterions.long_qa import LongQACriterion, best_spans
from fairseq_poolingformer.tasks.long_qa import LABEL_COLUMNS, LongQADataset, LongQATask, restore_dropped
from fairseq_poolingformer.preprocess import qa_binarize
from fairseq_poolingformer.preprocess.common import InputError
from qa_model_fixtures import build_dictionary, nq_docs, tydi_docs, windows_for, write_split

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAIRSEQ_TRAIN = os.path.join(os.path.dirname(sys.executable), "fairseq-train")


@pytest.fixture(scope="module")
def qa_data(tmp_path_factory):
    """Real NQ + TyDi samples as windows (length 128, stride 64), binarized: ``valid`` holds all
    of them, ``train`` the TyDi ones and the first 700 tokens of the NQ one (a fast training set)."""
    root = tmp_path_factory.mktemp("qa")
    docs = nq_docs() + tydi_docs()
    d = build_dictionary(docs)
    d.save(str(root / "dict.txt"))
    paths = {}
    for split, split_docs in (("train", nq_docs(max_tokens=700) + tydi_docs()), ("valid", docs)):
        ex, win = write_split(split_docs, d, str(root / "raw"), split)
        qa_binarize.binarize_split(win, ex, str(root / "dict.txt"), str(root / "bin"), split, progress=False)
        paths[split] = (ex, win)
    return {"root": root, "bin": str(root / "bin"), "raw": paths, "docs": docs, "dict": d}


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ---------------------------------------------------------------------------
# binarization

def test_binarize_round_trip(qa_data):
    ex_path, win_path = qa_data["raw"]["valid"]
    windows, examples = read_jsonl(win_path), read_jsonl(ex_path)
    ds = LongQADataset(os.path.join(qa_data["bin"], "valid"), pad_idx=1)
    assert len(ds) == len(windows) > 8
    rows = {e["example_id"]: r for r, e in enumerate(examples)}
    for i, w in enumerate(windows):
        item = ds[i]
        assert item["input_ids"].tolist() == w["input_ids"]
        assert item["unit_map"].tolist() == w["unit_map"]
        assert item["candidates"].tolist() == w["candidates"]
        expected = [rows[w["example_id"]], w["window_index"], w["question_len"], w["answer_type"],
                    w["start_position"], w["end_position"], w["long_position"]]
        assert item["labels"].tolist() == expected
    assert read_jsonl(os.path.join(qa_data["bin"], "valid.examples.jsonl")) == examples
    with open(os.path.join(qa_data["bin"], "dict.txt")) as a, open(qa_data["root"] / "dict.txt") as b:
        assert a.read() == b.read()
    assert LABEL_COLUMNS == qa_binarize.LABEL_COLUMNS


def test_binarize_cli_reports_counts(qa_data, tmp_path, capsys):
    """The command line (in process: ``python -m fairseq_poolingformer.preprocess.qa_binarize`` itself runs in the
    recipe tests), with 2 worker processes."""
    ex_path, win_path = qa_data["raw"]["valid"]
    rc = qa_binarize.main(["--windows", win_path, "--examples", ex_path, "--dict", str(qa_data["root"] / "dict.txt"),
                           "--split", "dev", "--destdir", str(tmp_path), "--no-progress", "--workers", "2"])
    stderr = capsys.readouterr().err
    assert rc == 0, stderr
    n = len(read_jsonl(win_path))
    assert f"kept {n} windows of 4 examples" in stderr
    assert np.load(tmp_path / "dev.labels.npy").shape == (n, 7)


def _corrupt(window: dict, field: str, value) -> dict:
    w = dict(window)
    w[field] = value
    return w


@pytest.mark.parametrize("field,value,message", [
    ("example_id", "nope", "not in"),
    ("unit_map", [-1], "length"),
    ("input_ids", "PAD", "padding index"),
    ("long_position", 99, "number of window candidates"),
    ("answer_type", 7, "not in [0, 5)"),
    ("start_position", 10_000, "start <= end"),
    ("candidates", [[0, 5, 2]], "start_pos <= end_pos"),
    ("question_len", None, "missing required field"),
])
def test_binarize_bad_window_names_file_line_field_and_writes_nothing(qa_data, tmp_path, field, value, message):
    ex_path, win_path = qa_data["raw"]["valid"]
    windows = read_jsonl(win_path)
    if value == "PAD":
        value = [windows[2]["input_ids"][0], 1] + windows[2]["input_ids"][2:]
    windows[2] = _corrupt(windows[2], field, value)
    bad = tmp_path / "bad.windows.jsonl"
    bad.write_text("".join(json.dumps(w) + "\n" for w in windows))
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        qa_binarize.binarize_split(str(bad), ex_path, str(qa_data["root"] / "dict.txt"), str(out), "dev",
                                   progress=False)
    assert str(err.value).startswith(f"{bad}:3: field '")
    assert field.split("_")[0] in err.value.field
    assert message in str(err.value)
    assert not out.exists() or os.listdir(out) == []


def test_binarize_bad_example_and_malformed_json(qa_data, tmp_path):
    ex_path, win_path = qa_data["raw"]["valid"]
    examples = read_jsonl(ex_path)
    examples[1]["units"][0] = [0]
    bad = tmp_path / "bad.examples.jsonl"
    bad.write_text("".join(json.dumps(e) + "\n" for e in examples))
    with pytest.raises(InputError, match=r"bad.examples.jsonl:2: field 'units\[0\]'"):
        qa_binarize.binarize_split(win_path, str(bad), str(qa_data["root"] / "dict.txt"), str(tmp_path / "o"), "x",
                                   progress=False)
    lines = open(win_path).read().splitlines()
    lines[4] = lines[4][:-3]
    (tmp_path / "w.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"w.jsonl:5: field '<line>': malformed JSON"):
        qa_binarize.binarize_split(str(tmp_path / "w.jsonl"), ex_path, str(qa_data["root"] / "dict.txt"),
                                   str(tmp_path / "o"), "x", progress=False)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("change,field,message", [
    ({"num_units": None}, "num_units", "non-negative integer"),
    ({"num_units": -3}, "num_units", "non-negative integer"),
    ({"units": "all"}, "units", "expected a list or null"),
    ({"num_units": 10}, "unit_map", ">= number of units 10 of the example"),  # windows point further
])
def test_binarize_compact_nq_units_checked(qa_data, tmp_path, change, field, message):
    """The NQ example is written with compact units (``"units": null, "num_units": N``)."""
    ex_path, win_path = qa_data["raw"]["valid"]
    examples = read_jsonl(ex_path)
    assert examples[0]["dataset"] == "nq" and examples[0]["units"] is None and examples[0]["num_units"] > 3000
    examples[0].update(change)
    bad = tmp_path / "bad.examples.jsonl"
    bad.write_text("".join(json.dumps(e) + "\n" for e in examples))
    with pytest.raises(InputError) as err:
        qa_binarize.binarize_split(win_path, str(bad), str(qa_data["root"] / "dict.txt"), str(tmp_path / "o"), "x",
                                   progress=False)
    assert err.value.field == field and message in str(err.value)
    assert str(err.value).startswith(f"{win_path if field == 'unit_map' else bad}:")
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------
# batching

def _task(data: str, **overrides) -> LongQATask:
    from fairseq_poolingformer.tasks.long_qa import LongQAConfig

    cfg = LongQAConfig(data=data, seed=1, **overrides)
    return LongQATask.setup_task(cfg)


@pytest.mark.parametrize("multiple,max_sentences", [(8, 8), (8, 5), (3, 16)])
def test_every_window_is_batched_once(qa_data, multiple, max_sentences):
    task = _task(qa_data["bin"])
    ds = task.load_dataset("valid")
    assert len(ds) % multiple != 0
    itr = task.get_batch_iterator(ds, max_sentences=max_sentences, required_batch_size_multiple=multiple,
                                  disable_iterator_cache=True).next_epoch_itr(shuffle=False)
    seen = [i for batch in itr for i in batch["id"].tolist()]
    assert sorted(seen) == list(range(len(ds)))


def test_restore_dropped_keeps_order_and_everything():
    indices = np.array([5, 3, 9, 1, 7])
    assert [b.tolist() for b in restore_dropped(indices, [np.array([5, 3])])] == [[5, 3], [9, 1, 7]]
    full = [np.array([5, 3]), np.array([9, 1, 7])]
    assert restore_dropped(indices, full) is full


def test_collater_global_mask_candidates_targets(qa_data):
    task = _task(qa_data["bin"])
    ds = task.load_dataset("valid")
    ids = [0, 3, len(ds) - 1]
    batch = ds.collater([ds[i] for i in ids])
    net = batch["net_input"]
    T = max(len(ds[i]["input_ids"]) for i in ids)
    assert net["src_tokens"].shape == (3, T)
    for b, i in enumerate(ids):
        item, n = ds[i], len(ds[i]["input_ids"])
        q = int(item["labels"][2])
        assert net["src_tokens"][b, :n].tolist() == item["input_ids"].tolist()
        assert (net["src_tokens"][b, n:] == task.dictionary.pad()).all()
        assert net["global_mask"][b].tolist() == [True] * q + [False] * (T - q)
        k = len(item["candidates"])
        assert net["candidate_mask"][b].sum() == k
        assert net["candidate_spans"][b, :k].tolist() == item["candidates"][:, 1:].tolist()
        assert batch["candidate_index"][b, :k].tolist() == item["candidates"][:, 0].tolist()
        assert batch["target"]["long"][b] == item["labels"][6] + 1
        assert batch["target"]["start"][b] == item["labels"][4]
        assert batch["doc_mask"][b, :n].tolist() == (item["unit_map"] >= 0).tolist()
    first = _task(qa_data["bin"], global_tokens="first").load_dataset("valid")
    assert first.collater([first[0]])["net_input"]["global_mask"][0].nonzero().flatten().tolist() == [0]


def test_task_load_dictionary_adds_mask(qa_data):
    task = _task(qa_data["bin"])
    assert len(task.dictionary) == len(qa_data["dict"]) + 1
    assert task.dictionary.index("<mask>") == len(qa_data["dict"])


# ---------------------------------------------------------------------------
# criterion vs a hand computation

class FixedLogits(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.calls = []

    def forward(self, **kwargs):
        self.calls.append(kwargs)
        return self.logits, {}


def _ce(row, target):
    """-log softmax(row)[target], by hand in float64."""
    m = max(row)
    return -(row[target] - m - math.log(sum(math.exp(v - m) for v in row)))


def test_criterion_matches_hand_computation():
    g = torch.Generator().manual_seed(0)
    B, T, K = 3, 7, 2
    logits = {"start": torch.randn(B, T, generator=g), "end": torch.randn(B, T, generator=g),
              "long": torch.randn(B, K + 1, generator=g), "answer_type": torch.randn(B, 5, generator=g)}
    target = {"start": torch.tensor([0, 3, 4]), "end": torch.tensor([0, 5, 4]),
              "long": torch.tensor([0, 2, 1]), "answer_type": torch.tensor([0, 1, 1])}
    # make window 1's argmax right for start, end and type; window 2's long right
    logits["start"][1, 3] = logits["end"][1, 5] = logits["answer_type"][1, 1] = 10.0
    logits["long"][2, 1] = 10.0
    doc_mask = torch.zeros(B, T, dtype=torch.bool)
    doc_mask[:, 2:6] = True
    sample = {"net_input": {"src_tokens": torch.ones(B, T, dtype=torch.long)}, "target": target,
              "ntokens": B * T, "doc_mask": doc_mask}
    model = FixedLogits(logits)
    model.eval()
    crit = LongQACriterion(task=None, max_answer_len=3, report_f1=True)
    loss, sample_size, log = crit(model, sample)
    assert model.calls[0]["qa_head"] == "long_qa"
    expected = sum(_ce(logits[k][b].double().tolist(), int(target[k][b]))
                   for k in ("start", "end", "long", "answer_type") for b in range(B))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert sample_size == 3
    assert log["start_loss"].item() == pytest.approx(sum(_ce(logits["start"][b].tolist(), int(target["start"][b]))
                                                         for b in range(B)), rel=1e-5)
    hand_span = sum(int(logits["start"][b].argmax() == target["start"][b] and logits["end"][b].argmax() == target["end"][b])
                    for b in range(B))
    assert log["span_correct"] == hand_span >= 1
    assert log["type_correct"] == sum(int(logits["answer_type"][b].argmax() == target["answer_type"][b]) for b in range(B))
    assert log["long_correct"] == sum(int(logits["long"][b].argmax() == target["long"][b]) for b in range(B))
    # F1 counts: short gold in windows 1, 2; long gold in windows 1, 2
    assert log["short_gold"] == 2 and log["long_gold"] == 2
    assert log["short_tp"] >= 1  # window 1: type short, best doc span (3, 5) within 3 subwords


def test_criterion_f1_only_at_validation():
    logits = {"start": torch.zeros(1, 4), "end": torch.zeros(1, 4), "long": torch.zeros(1, 1),
              "answer_type": torch.zeros(1, 5)}
    sample = {"net_input": {}, "target": {k: torch.zeros(1, dtype=torch.long) for k in ("start", "end", "long", "answer_type")},
              "ntokens": 4, "doc_mask": torch.ones(1, 4, dtype=torch.bool)}
    model = FixedLogits(logits)
    model.train()
    _, _, log = LongQACriterion(task=None)(model, sample)
    assert "short_tp" not in log
    # uniform logits: each CE is log(#classes)
    assert log["loss"].item() == pytest.approx(2 * math.log(4) + math.log(1) + math.log(5), rel=1e-6)


def test_reduce_metrics_corpus_f1():
    from fairseq import metrics

    logs = [{"loss": torch.tensor(2.0), "sample_size": 2, "nsentences": 2, "ntokens": 10,
             "short_tp": 1, "short_pred": 2, "short_gold": 1, "long_tp": 0, "long_pred": 1, "long_gold": 0,
             "span_correct": 1, "long_correct": 2, "type_correct": 0},
            {"loss": torch.tensor(1.0), "sample_size": 1, "nsentences": 1, "ntokens": 5,
             "short_tp": 1, "short_pred": 1, "short_gold": 2, "long_tp": 1, "long_pred": 1, "long_gold": 1,
             "span_correct": 0, "long_correct": 1, "type_correct": 1}]
    with metrics.aggregate() as agg:
        LongQACriterion.reduce_metrics(logs)
    values = agg.get_smoothed_values()
    assert values["short_f1"] == pytest.approx(200 * 2 / (3 + 3), abs=0.01)
    assert values["long_f1"] == pytest.approx(200 * 1 / (2 + 1), abs=0.01)
    assert values["loss"] == pytest.approx(3.0 / 3 / math.log(2), abs=1e-3)
    assert values["span_acc"] == pytest.approx(100 / 3, abs=0.1)


def test_best_spans_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    B, T, L = 6, 23, 4
    s, e = torch.randn(B, T, generator=g), torch.randn(B, T, generator=g)
    allowed = torch.rand(B, T, generator=g) > 0.3
    allowed[-1] = False
    score, start, end = best_spans(s, e, allowed, L)
    for b in range(B):
        cands = [(s[b, i] + e[b, j], i, j) for i in range(T) for j in range(i, min(i + L, T))
                 if allowed[b, i] and allowed[b, j]]
        if not cands:
            assert math.isinf(score[b]) and start[b] == 0 and end[b] == 0
            continue
        best = max(cands, key=lambda c: c[0])
        assert (start[b].item(), end[b].item()) == best[1:]
        assert score[b].item() == pytest.approx(best[0].item(), rel=1e-6)


# ---------------------------------------------------------------------------
# fairseq-train in a subprocess

def _train(data, save_dir, extra=()):
    cmd = [FAIRSEQ_TRAIN, data, "--user-dir", os.path.join(REPO, "fairseq_poolingformer"),
           "--task", "long_qa", "--criterion", "long_qa", "--arch", "poolingformer_roberta_tiny",
           "--optimizer", "adam", "--lr", "3e-3", "--batch-size", "8", "--max-update", "20",
           "--valid-subset", "train", "--validate-interval", "1000",
           "--save-dir", str(save_dir), "--no-epoch-checkpoints", "--log-format", "simple", "--log-interval", "2",
           "--cpu", "--dropout", "0", "--attention-dropout", "0", "--num-workers", "0", "--seed", "3",
           "--required-batch-size-multiple", "8", "--no-save-optimizer-state", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)


def test_fairseq_train_tiny_model_loss_decreases(qa_data, tmp_path):
    proc = _train(qa_data["bin"], tmp_path / "ckpt")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    losses = [float(x) for x in re.findall(r"train_inner \| .*? loss=([\d.]+)", out)]
    assert len(losses) >= 5
    assert losses[-1] < 0.5 * losses[0], losses
    valid = re.findall(r"valid on 'train' subset \| loss ([\d.]+) .*?short_f1 ([\d.]+) \| long_f1 ([\d.]+)", out)
    assert valid, out[-2000:]
    assert (tmp_path / "ckpt" / "checkpoint_best.pt").exists()
    assert (tmp_path / "ckpt" / "checkpoint_last.pt").exists()


@pytest.mark.parametrize("dataset,env,expected", [
    ("nq", {"NUM_GPUS": "8"},
     ["--arch poolingformer_roberta_large", "--batch-size 1 --update-freq 8", "--lr 2e-5", "--fp16",
      "--max-epoch 2", "--lr-scheduler polynomial_decay", "--end-learning-rate 0", "--distributed-world-size 8",
      "--checkpoint-activations", "--required-batch-size-multiple 1"]),
    ("tydi", {"NUM_GPUS": "4", "NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "10.0.0.1", "MAX_SENTENCES": "2"},
     ["--arch poolingformer_xlmr_large", "--batch-size 2 --update-freq 4", "--distributed-world-size 8",
      "--distributed-init-method tcp://10.0.0.1:29500 --distributed-rank 4"]),
])
def test_train_recipe_paper_settings(qa_data, tmp_path, dataset, env, expected):
    """DRY_RUN: the recipe's fairseq-train command (batch 64, 2 epochs, lr 2e-5, 10% warm-up)."""
    proc = subprocess.run([os.path.join(REPO, "recipes", dataset, "train.sh"), qa_data["bin"], "none",
                           str(tmp_path / "ckpt"), "--patience", "3"],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, DRY_RUN="1", PYTHON=sys.executable, **env))
    assert proc.returncode == 0, proc.stderr
    cmd = proc.stdout
    n_train = len(np.load(os.path.join(qa_data["bin"], "train.labels.npy")))
    total = math.ceil(n_train / 64) * 2
    for flag in expected + [f"--total-num-update {total}", f"--warmup-updates {max(1, round(0.1 * total))}",
                            "--patience 3"]:
        assert flag in cmd, (flag, cmd)
    assert f"{n_train} training windows, batch 64" in proc.stderr


def test_train_recipe_rejects_a_batch_it_cannot_split(qa_data, tmp_path):
    proc = subprocess.run([os.path.join(REPO, "recipes", "nq", "train.sh"), qa_data["bin"], "none", str(tmp_path)],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, DRY_RUN="1", NUM_GPUS="3", PYTHON=sys.executable))
    assert proc.returncode != 0
    assert "BATCH=64 is not a multiple of MAX_SENTENCES x GPUs = 3" in proc.stderr


def test_fairseq_train_two_gloo_ranks(qa_data, tmp_path):
    """Distributed data parallel on CPU (the gloo backend's flags): both ranks train and validate,
    and the F1 counts survive the distributed reduction."""
    port = str(29500 + os.getpid() % 1000)
    flags = ["--distributed-world-size", "2", "--distributed-init-method", f"tcp://127.0.0.1:{port}",
             "--distributed-backend", "gloo", "--distributed-no-spawn", "--ddp-backend", "legacy_ddp",
             "--validate-interval", "1000"]
    procs = [subprocess.Popen(
        [FAIRSEQ_TRAIN, qa_data["bin"], "--user-dir", os.path.join(REPO, "fairseq_poolingformer"),
         "--task", "long_qa", "--criterion", "long_qa", "--arch", "poolingformer_roberta_tiny",
         "--optimizer", "adam", "--lr", "3e-3", "--batch-size", "4", "--max-update", "4",
         "--save-dir", str(tmp_path / "ckpt"), "--no-epoch-checkpoints", "--log-format", "simple", "--cpu",
         "--num-workers", "0", "--no-save-optimizer-state", "--distributed-rank", str(rank), *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)) for rank in (0, 1)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    assert re.search(r"valid on 'valid' subset \| .*short_f1 [\d.]+ \| long_f1 [\d.]+", outs[0]), outs[0][-2000:]
    assert (tmp_path / "ckpt" / "checkpoint_last.pt").exists()
