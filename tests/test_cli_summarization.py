"""Poolingformer-BART through the stock Fairseq command lines (subprocesses), and the hub.

Synthetic word-level summarization data (the target is a function of the source, so the
model is a real seq2seq model; sizes are deliberately not multiples of 8) is binarized with
fairseq-preprocess, then: fairseq-train a few steps, save, resume (with
--checkpoint-activations), validation and fairseq-generate over every example,
fairseq-interactive, 2-process CPU training with gloo, and hub ``sample`` equal to
fairseq-generate's output.
"""

import json
import os
import random
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fairseq_poolingformer
# one copy of the synthetic summarization pairs (lead words + a sorted set: the target needs the
# source) and of the --log-format json parser, shared with make gpu-check
from benchmarks.gpu_check import _json_records as _json_logs, _synthetic_pair as _example

REPO = Path(__file__).resolve().parents[1]
USER_DIR = str(Path(fairseq_poolingformer.__file__).parent)
BIN = Path(sys.executable).parent
N_TRAIN, N_VALID, N_TEST = 37, 13, 11  # none a multiple of 8 (Fairseq's default batch multiple)
VOCAB = [f"tok{i}" for i in range(40)]


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread

COMMON = [
    "--user-dir", USER_DIR, "--task", "translation", "--source-lang", "source",
    "--target-lang", "target", "--cpu",
]
MODEL = [
    "--arch", "poolingformer_bart_tiny", "--max-source-positions", "256",
    "--max-target-positions", "64", "--truncate-source", "--pf-w1", "8", "--pf-w2", "32",
]
TRAIN = COMMON + MODEL + [
    "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
    "--optimizer", "adam", "--lr", "1e-3", "--lr-scheduler", "polynomial_decay",
    "--warmup-updates", "2", "--total-num-update", "20", "--batch-size", "8",
    "--log-format", "json", "--log-interval", "1", "--no-epoch-checkpoints", "--seed", "1",
    "--num-workers", "0",
]


def _run(cmd, env=None, stdin=None, timeout=300):
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, input=stdin,
                          timeout=timeout, cwd=str(REPO))
    assert proc.returncode == 0, f"{' '.join(cmd[:3])} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def work(built_once):
    """Binarized data and a checkpoint trained 6 updates by fairseq-train (built once per test run,
    shared by the xdist workers: read it, copy it to tmp_path to change it), and fairseq-generate's
    output on its test split."""
    root = built_once("summarization", _train_tiny_summarizer)
    generated, _ = _parse_generate((root / "generate.log").read_text())
    return {"root": root, "text": root / "text", "data": root / "bin", "save": root / "ckpt",
            "train_log": (root / "train.log").read_text(), "generated": generated,
            "generate_log": (root / "generate.log").read_text()}


def _train_tiny_summarizer(root: Path) -> None:
    rng = random.Random(0)
    text = root / "text"
    text.mkdir()
    for split, n in (("train", N_TRAIN), ("valid", N_VALID), ("test", N_TEST)):
        pairs = [_example(rng) for _ in range(n)]
        (text / f"{split}.source").write_text("".join(s + "\n" for s, _ in pairs))
        (text / f"{split}.target").write_text("".join(t + "\n" for _, t in pairs))
    data = root / "bin"
    _run([str(BIN / "fairseq-preprocess"), "--source-lang", "source", "--target-lang", "target",
          "--trainpref", str(text / "train"), "--validpref", str(text / "valid"),
          "--testpref", str(text / "test"), "--joined-dictionary", "--destdir", str(data),
          "--workers", "1"])
    train = _run([str(BIN / "fairseq-train"), str(data), *TRAIN, "--max-update", "6",
                  "--save-dir", str(root / "ckpt")], env=_env())
    (root / "train.log").write_text(train.stdout + train.stderr)
    _, proc = _generate({"data": data, "save": root / "ckpt"})
    (root / "generate.log").write_text(proc.stdout)


def test_train_sees_every_example_and_validates_on_all(work):
    logs = _json_logs(work["train_log"])
    epoch1 = [r for r in logs if r.get("epoch") == 1 and "train_loss" in r]
    assert epoch1, work["train_log"][-3000:]
    # 37 examples in batches of 8: 5 updates per epoch (4 if the last batch were dropped)
    assert int(epoch1[0]["train_num_updates"]) == 5
    valid = [r for r in logs if "valid_loss" in r]
    assert valid
    # 13 examples in batches of at most 8: 2 batches, mean size 6.5 (8 if 5 were dropped)
    assert all(float(r["valid_bsz"]) == 6.5 for r in valid)
    assert (work["save"] / "checkpoint_last.pt").is_file()
    assert (work["save"] / "checkpoint_best.pt").is_file()


def test_resume_with_checkpoint_activations(work, tmp_path):
    import shutil

    save = tmp_path / "resume"
    shutil.copytree(work["save"], save)
    proc = _run([str(BIN / "fairseq-train"), str(work["data"]), *TRAIN, "--max-update", "8",
                 "--save-dir", str(save), "--checkpoint-activations"], env=_env())
    log = proc.stdout + proc.stderr
    assert re.search(r"[Ll]oaded checkpoint .*checkpoint_last\.pt \(epoch 2 @ 6 updates\)", log), log[-3000:]
    updates = [int(r["num_updates"]) for r in _json_logs(log) if "num_updates" in r and "loss" in r]
    assert updates and updates[0] == 7 and updates[-1] == 8  # continued, not restarted


def _parse_generate(stdout):
    hyps = {}
    for line in stdout.splitlines():
        if line.startswith("H-"):
            idx, _score, text = line.split("\t")
            hyps[int(idx[2:])] = text
    return hyps, stdout


def _generate(work, subset="test", extra=()):
    proc = _run([str(BIN / "fairseq-generate"), str(work["data"]), *COMMON, "--path",
                 str(work["save"] / "checkpoint_last.pt"), "--gen-subset", subset, "--beam", "5",
                 "--lenpen", "2", "--batch-size", "8", "--max-len-b", "20", *extra], env=_env())
    return _parse_generate(proc.stdout)[0], proc


def test_generate_outputs_every_example(work):
    hyps = work["generated"]  # fairseq-generate on the test split, run when the fixture was built
    assert sorted(hyps) == list(range(N_TEST)), work["generate_log"][-2000:]
    assert all(h.strip() for h in hyps.values())
    assert all(set(h.split()) <= set(VOCAB) for h in hyps.values())


def test_interactive(work):
    sources = (work["text"] / "test.source").read_text().splitlines()[:5]
    proc = _run([str(BIN / "fairseq-interactive"), str(work["data"]), *COMMON, "--path",
                 str(work["save"] / "checkpoint_last.pt"), "--beam", "5", "--lenpen", "2",
                 "--buffer-size", "3", "--batch-size", "3", "--max-len-b", "20"],
                env=_env(), stdin="".join(s + "\n" for s in sources))
    hyps = [line.split("\t") for line in proc.stdout.splitlines() if line.startswith("H-")]
    assert [int(h[0][2:]) for h in hyps] == list(range(5))
    generated = work["generated"]
    assert [h[2] for h in hyps] == [generated[i] for i in range(5)]  # same model, same decoding


def test_hub_sample_matches_generate(work):
    from fairseq_poolingformer.summarization import from_pretrained

    generated = work["generated"]
    summarizer = from_pretrained(str(work["save"]), checkpoint_file="checkpoint_last.pt",
                                 data_name_or_path=str(work["data"]), bpe="none", batch_size=3)
    docs = (work["text"] / "test.source").read_text().splitlines()
    # fairseq-generate's own defaults for the options the hub sets otherwise (decoding.DEFAULTS)
    out = summarizer.sample(docs, beam=5, lenpen=2.0, max_len_b=20, min_len=1, no_repeat_ngram_size=0)
    assert out == [generated[i] for i in range(N_TEST)]
    # a document longer than the model's 256 source positions is truncated, not rejected
    long_doc = " ".join(VOCAB * 20)  # 800 words
    assert isinstance(summarizer.sample(long_doc, max_len_b=5, min_len=1), str)
    with pytest.raises(ValueError, match="empty document"):
        summarizer.sample(["   "])


def test_hub_pf_summarize_and_generate_recipe_share_the_decoding_defaults(work, tmp_path, capsys):
    """One table (summarization.decoding): the hub's sample(), pf-summarize and generate.sh,
    none given a decoding option, write the same summaries for the same checkpoint and input."""
    from fairseq_poolingformer.summarization import from_pretrained, summarize
    from fairseq_poolingformer.summarization.decoding import DEFAULTS
    from tool_main import exit_status

    checkpoint = work["save"] / "checkpoint_last.pt"
    docs = (work["text"] / "test.source").read_text().splitlines()
    summarizer = from_pretrained(str(checkpoint), data_name_or_path=str(work["data"]), bpe="none")
    hub = summarizer.sample(docs)
    assert hub == summarizer.sample(docs, **DEFAULTS.as_kwargs())
    assert all(len(h.split()) >= DEFAULTS.min_len for h in hub)  # min_len reached the generator
    paths = []
    for i, doc in enumerate(docs[:4]):
        paths.append(tmp_path / f"doc{i}.txt")
        paths[-1].write_text(doc + "\n")
    assert exit_status(summarize.main, ["--checkpoint", checkpoint, "--dict", work["data"], "--bpe", "none",
                                        "--cpu", *paths]) == 0
    assert capsys.readouterr().out.splitlines() == hub[:4]
    options = summarize.build_parser().parse_args(["--checkpoint", str(checkpoint)])
    assert {name: getattr(options, name) for name in DEFAULTS.as_kwargs()} == DEFAULTS.as_kwargs()
    env = {k: v for k, v in _env(PYTHON=sys.executable).items()
           if k not in ("BEAM", "LENPEN", "MAX_LEN_A", "MAX_LEN_B", "MIN_LEN", "NO_REPEAT")}
    _run(["bash", str(REPO / "recipes/arxiv/generate.sh"), str(work["data"]), str(checkpoint), str(tmp_path / "gen"),
          "--subset", "test", "--batch-size", "8"], env=env)
    assert (tmp_path / "gen" / "test.hypotheses").read_text().splitlines() == hub


def test_hub_refuses_to_load_without_a_bpe(work, tmp_path):
    """No BPE given and none beside the checkpoint: sample() would return token ids as text."""
    import shutil

    from fairseq_poolingformer.summarization import SummarizerError, from_pretrained

    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    shutil.copy(work["save"] / "checkpoint_last.pt", ckpt_dir / "checkpoint_last.pt")
    with pytest.raises(SummarizerError) as err:
        from_pretrained(str(ckpt_dir), checkpoint_file="checkpoint_last.pt", data_name_or_path=str(work["data"]))
    assert str(err.value) == (
        f"no BPE for the summarizer: none given and none beside the checkpoint in {ckpt_dir} (looked for "
        "sentencepiece.bpe.model, spm.model, or encoder.json + vocab.bpe); pass sentencepiece_model=PATH, or "
        "gpt2_encoder_json=PATH and gpt2_vocab_bpe=PATH, or bpe='none' if the documents are already BPE tokens")
    # swapped GPT-2 files are named, at load time
    enc, voc = (str(REPO / "tests/data/gpt2_bpe" / f) for f in ("encoder.json", "vocab.bpe"))
    with pytest.raises(SummarizerError) as err:  # the summarizer's one error type, not the floor's
        from_pretrained(str(ckpt_dir), checkpoint_file="checkpoint_last.pt", data_name_or_path=str(work["data"]),
                        gpt2_encoder_json=voc, gpt2_vocab_bpe=enc)
    assert str(err.value) == (
        f"GPT-2 BPE files look swapped: --encoder-json {voc} is not JSON and --vocab-bpe {enc} is: pass "
        "encoder.json as --encoder-json and vocab.bpe as --vocab-bpe")
    # bpe="none" given explicitly still loads (documents are tokens already)
    summarizer = from_pretrained(str(ckpt_dir), checkpoint_file="checkpoint_last.pt",
                                 data_name_or_path=str(work["data"]), bpe="none")
    assert set(summarizer.sample("tok1 tok2 tok3", max_len_b=5, min_len=1).split()) <= set(VOCAB)


def test_hub_bpe_matches_the_preprocessing(tmp_path):
    """The hub encodes documents exactly as fairseq_poolingformer.preprocess.bpe encoded the training data."""
    import shutil

    from fairseq_poolingformer.inference.errors import CheckpointError
    from fairseq_poolingformer.summarization import SummarizerError
    from fairseq_poolingformer.summarization.hub import build_bpe
    from fairseq_poolingformer.preprocess import bpe as prep

    text = "Poolingformer summarizes long documents , with w1 = 128 and a 16k-token input ."
    spm = str(REPO / "tests/data/sentencepiece/test_model.model")
    enc, voc = (str(REPO / "tests/data/gpt2_bpe" / f) for f in ("encoder.json", "vocab.bpe"))
    for hub_bpe, backend in (
        (build_bpe(str(tmp_path), None, None, None, spm), prep.sentencepiece_backend(spm)),
        (build_bpe(str(tmp_path), "gpt2", enc, voc, None), prep.gpt2_backend(enc, voc)),
    ):
        encoded = hub_bpe.encode(text)
        assert encoded == prep.encode_line(backend, text)
        assert hub_bpe.decode(encoded) == prep.decode_line(backend, encoded)
    shutil.copy(spm, tmp_path / "spm.model")  # found beside the checkpoint
    assert type(build_bpe(str(tmp_path), None, None, None, None)).__name__ == "SentencepieceBPE"
    with pytest.raises(CheckpointError, match=f"GPT-2 BPE file gpt2_vocab_bpe not found: none given, and no "
                                              f"vocab.bpe beside the checkpoint in {tmp_path}"):
        build_bpe(str(tmp_path), "gpt2", enc, None, None)
    with pytest.raises(SummarizerError, match="bpe must be"):
        build_bpe(str(tmp_path), "wordpiece", None, None, None)


def test_bf16_training_on_cpu(work, tmp_path):
    """--bf16 (Fairseq's option parsing turns it into --tpu) trains, in bf16."""
    import torch

    # through the installed package's console script (no --user-dir) when it is installed
    if (BIN / "pf-train").exists():
        cmd = [str(BIN / "pf-train"), str(work["data"]), *TRAIN[2:]]
        assert TRAIN[:2] == ["--user-dir", USER_DIR]
    else:
        cmd = [str(BIN / "fairseq-train"), str(work["data"]), *TRAIN]
    proc = _run(cmd + ["--max-update", "2", "--save-dir", str(tmp_path), "--bf16",
                       "--no-epoch-checkpoints"], env=_env())
    assert "xla" not in (proc.stdout + proc.stderr).lower()
    state = torch.load(tmp_path / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    assert state["cfg"]["common"]["bf16"] and not state["cfg"]["common"]["tpu"]
    # Fairseq saves fp32 copies; weights that lived in bf16 are exactly bf16-representable
    weight = state["model"]["encoder.layers.1.self_attn.q2_proj.weight"]
    assert torch.equal(weight.to(torch.bfloat16).float(), weight.float())
    assert state["optimizer_history"][-1]["num_updates"] == 2


def test_generate_recipe_and_rouge(work, tmp_path):
    """recipes/arxiv/generate.sh writes every summary in order; score.py scores them."""
    generated = work["generated"]
    env = _env(PYTHON=sys.executable, MIN_LEN="1", NO_REPEAT="0", MAX_LEN_B="20", MAX_SOURCE="256")
    _run(["bash", str(REPO / "recipes/arxiv/generate.sh"), str(work["data"]),
          str(work["save"] / "checkpoint_last.pt"), str(tmp_path), "--subset", "test",
          "--batch-size", "8"], env=env)
    hyps = (tmp_path / "test.hypotheses").read_text().splitlines()
    assert hyps == [generated[i] for i in range(N_TEST)]
    refs = tmp_path / "refs.txt"
    refs.write_text("the cat sat on the mat .\nno overlap here .\n")
    pred = tmp_path / "pred.txt"
    pred.write_text("the cat sat .\nsomething else entirely .\n")
    proc = _run([sys.executable, str(REPO / "recipes/arxiv/score.py"), "--hypotheses", str(pred),
                 "--references", str(refs), "--json", str(tmp_path / "rouge.json")])
    scores = json.loads((tmp_path / "rouge.json").read_text())
    # document 1: hyp unigrams {the, cat, sat} all in the reference (6 tokens; "." is dropped):
    # P = 3/3, R = 3/6, F = 2/3; document 2: nothing in common. Mean F1 = 1/3.
    assert scores["rouge1"]["precision"] == pytest.approx(50.0)
    assert scores["rouge1"]["recall"] == pytest.approx(25.0)
    assert scores["rouge1"]["f1"] == pytest.approx(100 / 3, abs=1e-3)
    assert "| ROUGE-Lsum |" in proc.stdout and scores["n_documents"] == 2
    pred.write_text("only one line\n")
    bad = subprocess.run([sys.executable, str(REPO / "recipes/arxiv/score.py"), "--hypotheses",
                          str(pred), "--references", str(refs)], capture_output=True, text=True)
    assert bad.returncode != 0 and "has 1 lines but" in bad.stderr


def test_score_blank_hypotheses(tmp_path):
    """All hypotheses blank: an error, not ROUGE 0; some blank: a warning with their count."""
    refs = tmp_path / "refs.txt"
    refs.write_text("the cat sat on the mat .\nno overlap here .\nthe end .\n")
    pred = tmp_path / "pred.txt"
    pred.write_text("\n  \n\n")
    cmd = [sys.executable, str(REPO / "recipes/arxiv/score.py"), "--hypotheses", str(pred), "--references", str(refs),
           "--json", str(tmp_path / "rouge.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 1 and not (tmp_path / "rouge.json").exists()
    assert proc.stderr == (f"score.py: every hypothesis in {pred} is blank (3 of 3 lines): nothing was generated "
                           "to score (see generate.sh's generate-S.log)\n")
    pred.write_text("the cat sat .\n\nthe end .\n")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stderr == f"score.py: warning: 1 of 3 hypotheses in {pred} are blank (lines 2): they score 0\n"
    assert json.loads((tmp_path / "rouge.json").read_text())["blank_hypotheses"] == 1


def test_generate_recipe_unreadable_checkpoint(work, tmp_path):
    """A checkpoint cut short (an interrupted copy): one line naming the file, no traceback."""
    cut = tmp_path / "checkpoint_cut.pt"
    data = (work["save"] / "checkpoint_last.pt").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    proc = subprocess.run(["bash", str(REPO / "recipes/arxiv/generate.sh"), str(work["data"]), str(cut),
                           str(tmp_path / "out")], capture_output=True, text=True, env=_env(PYTHON=sys.executable))
    assert proc.returncode == 1
    assert proc.stderr == (f"generate.sh: cannot read checkpoint {cut}: not a PyTorch checkpoint (no complete zip "
                           "archive: cut short, or another kind of file)\n")
    assert not (tmp_path / "out").exists()


def test_score_empty_or_unreadable_files(tmp_path):
    """Empty hypothesis and reference files, or a directory given as a file: one line, exit 1."""
    pred, refs = tmp_path / "pred.txt", tmp_path / "refs.txt"
    pred.write_text("")
    refs.write_text("")
    score = [sys.executable, str(REPO / "recipes/arxiv/score.py")]
    proc = subprocess.run(score + ["--hypotheses", str(pred), "--references", str(refs)],
                          capture_output=True, text=True)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == f"score.py: {pred} and {refs} are empty: no documents to score\n"
    proc = subprocess.run(score + ["--hypotheses", str(tmp_path), "--references", str(refs)],
                          capture_output=True, text=True)
    assert (proc.returncode, proc.stderr) == (1, f"score.py: cannot read {tmp_path}: Is a directory\n")


@pytest.fixture
def foreign_data(work, tmp_path):
    """work's binarized data with a dictionary of 5 more symbols (another BPE's, say)."""
    data = tmp_path / "foreign-bin"
    data.mkdir()
    for f in work["data"].iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    for side in ("source", "target"):
        with open(data / f"dict.{side}.txt", "a") as f:
            f.write("".join(f"extra{i} 1\n" for i in range(5)))
    size = len(open(work["data"] / "dict.source.txt").readlines()) + 4  # + <s> <pad> </s> <unk>
    return data, size


def test_generate_recipe_checkpoint_of_another_dictionary(work, foreign_data, tmp_path):
    """A checkpoint trained with another dictionary than DATA_BIN's: one line with both sizes, the
    data the checkpoint was trained on and what to do; nothing written."""
    data, size = foreign_data
    checkpoint = work["save"] / "checkpoint_last.pt"
    proc = subprocess.run(["bash", str(REPO / "recipes/arxiv/generate.sh"), str(data), str(checkpoint),
                           str(tmp_path / "out")], capture_output=True, text=True, env=_env(PYTHON=sys.executable))
    assert proc.returncode == 1 and not (tmp_path / "out").exists()
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(
        f"generate.sh: checkpoint {checkpoint} was trained with a dictionary of {size} symbols "
        f"(trained on {work['data']}), but {data / 'dict.source.txt'}, {data / 'dict.target.txt'} "
        f"gives {size + 5}: not the same dictionary. Binarize the data with the checkpoint's dictionary")


def test_hub_checkpoint_of_another_dictionary(work, foreign_data):
    from fairseq_poolingformer.summarization import SummarizerError, from_pretrained

    data, size = foreign_data
    with pytest.raises(SummarizerError, match=rf"dictionary of {size} symbols .* gives {size + 5}: not the same"):
        from_pretrained(str(work["save"]), checkpoint_file="checkpoint_last.pt", data_name_or_path=str(data),
                        bpe="none")


def test_predict_qa_refuses_a_summarization_checkpoint(work, tmp_path, capsys):
    from fairseq_poolingformer.qa import predict as predict_qa

    (tmp_path / "valid.examples.jsonl").write_text('{"example_id": "1", "dataset": "nq"}\n')
    checkpoint = work["save"] / "checkpoint_last.pt"
    from tool_main import exit_status

    code = exit_status(predict_qa.main, ["--checkpoint", checkpoint, "--data-dir", tmp_path, "--format", "nq",
                                         "--output", tmp_path / "p.json", "--cpu"])
    assert code == 1 and not (tmp_path / "p.json").exists()
    assert capsys.readouterr().err == (f"predict_qa: error: checkpoint {checkpoint} is a summarization "
                                       "(Poolingformer-BART) checkpoint, not a question answering (long_qa) one: use "
                                       "pf-summarize or generate.sh; nothing written\n")


def test_train_recipe_command(tmp_path):
    """recipes/arxiv/train.sh: paper hyper-parameters, batch 128 through --update-freq, torchrun."""
    (tmp_path / "dict.source.txt").write_text("a 1\n")
    env = _env(DRY_RUN="1", TRAIN_EXAMPLES="1000", NGPUS="8", NNODES="2", NODE_RANK="1",
               MASTER_ADDR="10.0.0.1", INIT="/ckpt/model.pt", MAX_SOURCE="4096")
    proc = _run(["bash", str(REPO / "recipes/arxiv/train.sh"), str(tmp_path), str(tmp_path / "save"),
                 "--pf-pooling", "mean"], env=env)
    cmd = proc.stdout.split()
    def value(flag):
        return cmd[cmd.index(flag) + 1]
    assert "torch.distributed.run" in cmd and value("--nnodes") == "2" and value("--node_rank") == "1"
    assert value("--nproc_per_node") == "8" and value("--distributed-world-size") == "16"
    assert value("--batch-size") == "1" and value("--update-freq") == "8"  # 1 x 16 x 8 = 128
    assert value("--lr") == "2e-4" and value("--warmup-updates") == "1000"
    assert value("--lr-scheduler") == "polynomial_decay" and value("--power") == "1"
    assert value("--total-num-update") == "80" and value("--max-epoch") == "10"  # ceil(1000/128) x 10
    assert "--fp16" in cmd and "--checkpoint-activations" in cmd
    assert value("--max-source-positions") == "4096" and value("--arch") == "poolingformer_bart_large"
    assert value("--finetune-from-model") == "/ckpt/model.pt" and value("--pf-pooling") == "mean"
    env.update(NGPUS="3", NNODES="1")
    bad = subprocess.run(["bash", str(REPO / "recipes/arxiv/train.sh"), str(tmp_path), str(tmp_path / "s")],
                         capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "TOTAL_BATCH=128 is not a multiple" in bad.stderr


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_two_processes_gloo(work, tmp_path):
    port = _free_port()
    save = tmp_path / "dist"
    procs = []
    for rank in (0, 1):
        cmd = [str(BIN / "fairseq-train"), str(work["data"]), *TRAIN, "--max-update", "3",
               "--batch-size", "4", "--save-dir", str(save), "--distributed-world-size", "2",
               "--distributed-rank", str(rank), "--distributed-backend", "gloo",
               "--distributed-init-method", f"tcp://127.0.0.1:{port}", "--distributed-no-spawn",
               "--ddp-backend", "legacy_ddp", "--device-id", "0"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, env=_env(), cwd=str(REPO)))
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=300)
        outs.append(out)
        assert p.returncode == 0, out[-4000:]
    for rank, out in enumerate(outs):
        assert f"initialized host {socket.gethostname()} as rank {rank}" in out, out[-3000:]
    assert "training on 2 devices" in outs[0]
    updates = [int(r["num_updates"]) for r in _json_logs(outs[0]) if "num_updates" in r and "loss" in r]
    assert updates[-1] == 3  # gradients all-reduced with rank 1 at every update
    assert (save / "checkpoint_last.pt").is_file()


# ------------------------------------------------------------------ pf-summarize: inputs and outputs

def _summarize(args, capsys):
    """pf-summarize's main in this process on the tiny checkpoint: (exit status, stdout, stderr)."""
    from fairseq_poolingformer.summarization import summarize
    from tool_main import exit_status

    code = exit_status(summarize.main, ["--bpe", "none", "--cpu", "--min-len", "1", "--max-len-b", "8", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def paper(work, tmp_path):
    doc = tmp_path / "paper.txt"
    doc.write_text((work["text"] / "test.source").read_text().splitlines()[0] + "\n")
    return doc


def test_pf_summarize_output_to_a_fifo_and_through_a_symlink_leaves_the_node(work, paper, tmp_path, capsys):
    import stat
    import threading

    checkpoint = ["--checkpoint", work["save"] / "checkpoint_last.pt", "--dict", work["data"]]
    code, expected, _ = _summarize(checkpoint + [paper], capsys)
    assert code == 0 and len(expected.splitlines()) == 1
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    code, out, err = _summarize(checkpoint + ["--output", fifo, paper], capsys)
    reader.join(timeout=60)
    assert (code, out, err) == (0, "", "") and received == [expected]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still the FIFO, not a regular file
    target = tmp_path / "summaries.txt"
    target.write_text("old\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    code, out, err = _summarize(checkpoint + ["--output", link, paper], capsys)
    assert (code, out, err) == (0, "", "")
    assert link.is_symlink() and os.readlink(link) == str(target) and target.read_text() == expected


def test_pf_summarize_bpe_and_dictionary_files_that_do_not_parse(work, paper, tmp_path, capsys):
    import shutil

    checkpoint = ["--checkpoint", work["save"] / "checkpoint_last.pt"]
    corrupt = tmp_path / "spm.model"
    corrupt.write_bytes(b"\x00not a model\xff" * 10)
    code, out, err = _summarize(checkpoint + ["--dict", work["data"], "--bpe", "sentencepiece",
                                              "--sentencepiece-model", corrupt, paper], capsys)
    assert (code, out) == (1, "")
    assert err == (f"pf-summarize: error: {corrupt}: not a sentencepiece model (the .model file written by "
                   "sentencepiece's trainer that the training data was encoded with); nothing written\n")
    bad_dict = tmp_path / "dict.txt"
    bad_dict.write_text("tok1 12\nthis line has no count\n")
    code, out, err = _summarize(checkpoint + ["--dict", bad_dict, paper], capsys)
    assert (code, out) == (1, "") and err.count("\n") == 1
    assert err.startswith(f"pf-summarize: error: {bad_dict}: not a Fairseq dictionary (") and \
        err.endswith("give the dict.txt the checkpoint was trained with (lines '<symbol> <count>'); nothing written\n")
    data = tmp_path / "bin"  # a binarized data directory: the dictionary that does not parse is named, alone
    shutil.copytree(work["data"], data)
    for side in ("target", "source"):
        (data / f"dict.{side}.txt").write_text("tok1 12\nthis line has no count\n")
        code, out, err = _summarize(checkpoint + ["--dict", data, paper], capsys)
        assert (code, out) == (1, "") and err.count("\n") == 1 and err.startswith(
            f"pf-summarize: error: {data / f'dict.{side}.txt'}: not a Fairseq dictionary (")


def test_pf_summarize_dict_relative_to_the_working_directory_and_dict_txt_beside(work, paper, tmp_path,
                                                                                 monkeypatch, capsys):
    import shutil

    monkeypatch.chdir(tmp_path)
    code, _, err = _summarize(["--checkpoint", work["save"] / "checkpoint_last.pt", "--dict", "x/dict.txt", paper],
                              capsys)
    assert code == 1 and err == (f"pf-summarize: error: dictionary not found: {tmp_path / 'x' / 'dict.txt'} (the "
                                 "binarized data directory or a dict.txt); nothing written\n")
    shutil.copytree(work["data"], tmp_path / "bin")
    code, expected, _ = _summarize(["--checkpoint", work["save"] / "checkpoint_last.pt", "--dict", "bin", paper],
                                   capsys)
    assert code == 0 and expected
    model = tmp_path / "model"  # as convert writes it: model.pt with one joined dict.txt beside it
    model.mkdir()
    shutil.copy(work["save"] / "checkpoint_last.pt", model / "model.pt")
    shutil.copy(work["data"] / "dict.source.txt", model / "dict.txt")
    code, out, err = _summarize(["--checkpoint", model, paper], capsys)
    assert (code, out, err) == (0, expected, "")


def test_pf_summarize_limits_of_the_checkpoint_and_ctrl_c(work, paper, tmp_path, monkeypatch, capsys):
    from fairseq_poolingformer.summarization import SummarizerError, from_pretrained
    from fairseq_poolingformer.summarization.hub import PoolingformerSummarizer

    checkpoint = ["--checkpoint", work["save"] / "checkpoint_last.pt", "--dict", work["data"]]
    code, out, err = _summarize(checkpoint + ["--min-len", "70", "--max-len-b", "100", paper], capsys)
    assert (code, out) == (1, "") and err == ("pf-summarize: error: --min-len 70 is larger than the 63 tokens the "
                                              "checkpoint's decoder can write; nothing written\n")
    summarizer = from_pretrained(str(work["save"] / "checkpoint_last.pt"), data_name_or_path=str(work["data"]),
                                 bpe="none")
    with pytest.raises(SummarizerError, match="min_len 30 is larger than max_len_b 20: a summary cannot be both"):
        summarizer.sample("tok1 tok2", min_len=30, max_len_b=20)
    with pytest.raises(SummarizerError, match="beam must be at least 1, got 0"):
        summarizer.sample("tok1 tok2", beam=0)
    # Fairseq's generator asserts min_len <= int(max_len_a * source tokens + max_len_b): max_len_b for a short one
    with pytest.raises(SummarizerError, match=r"^min_len 50 is larger than max_len_b 5: a short document's summary "
                                              r"cannot be both \(its maximum length is max_len_a 0.1 x its tokens "
                                              r"\+ max_len_b 5\)$"):
        summarizer.sample("tok1 tok2", min_len=50, max_len_a=0.1, max_len_b=5)
    for option, value in (("lenpen", float("nan")), ("lenpen", float("inf")), ("max_len_a", float("inf"))):
        with pytest.raises(SummarizerError, match=f"^{option} must be a finite number, got {value}$"):
            summarizer.sample("tok1 tok2", **{option: value})
    code, out, err = _summarize(checkpoint + ["--max-len-a", "1e308", paper], capsys)  # x 256 source positions: inf
    assert (code, out) == (1, "") and err == ("pf-summarize: error: --max-len-a 1e+308 x the checkpoint's 256 source "
                                              "positions + --max-len-b 8 is not a finite length; nothing written\n")
    assert summarizer.sample("tok1 tok2", max_len_a=1e300, max_len_b=5, min_len=1)  # finite: capped by the decoder

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(PoolingformerSummarizer, "sample", interrupted)
    out_file = tmp_path / "out.txt"
    code, out, err = _summarize(checkpoint + ["--output", out_file, paper], capsys)
    assert (code, out, err) == (130, "", "pf-summarize: interrupted; nothing written\n")
    assert not out_file.exists() and os.listdir(tmp_path) == ["paper.txt"]  # no temporary left


def test_pf_summarize_never_writes_over_the_checkpoint_or_its_files(work, paper, tmp_path, capsys):
    """--output naming the checkpoint, a dictionary beside it or given, or a BPE file given: refused
    before any work, exit 1, the file unchanged byte for byte."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(work["save"], model)
    shutil.copy(work["data"] / "dict.source.txt", model / "dict.source.txt")
    shutil.copy(work["data"] / "dict.target.txt", model / "dict.target.txt")
    spm = tmp_path / "spm.model"
    shutil.copy(REPO / "tests/data/sentencepiece/test_model.model", spm)
    cases = [(["--checkpoint", model], model / "dict.source.txt"),
             (["--checkpoint", model], model / "checkpoint_last.pt"),
             (["--checkpoint", model / "checkpoint_last.pt"], model / "checkpoint_best.pt"),
             (["--checkpoint", model, "--dict", work["data"]], work["data"] / "dict.target.txt"),
             (["--checkpoint", model, "--sentencepiece-model", spm], spm)]
    for args, output in cases:
        before = output.read_bytes()
        code, out, err = _summarize([*args, "--output", output, paper], capsys)
        assert (code, out) == (1, "") and output.read_bytes() == before
        assert err == (f"pf-summarize: error: output {output}: is one of the inputs; writing it would destroy it; "
                       "nothing written\n")


def test_hub_finds_the_checkpoint_as_every_tool_does_and_raises_one_error_type(work, tmp_path):
    """A directory holding only checkpoint_best.pt loads (the order of inference.files), through
    both hub entry points; a checkpoint_file given is the one in the directory; what is missing
    is a SummarizerError."""
    import shutil

    from fairseq_poolingformer.models.poolingformer_bart import PoolingformerBARTModel
    from fairseq_poolingformer.summarization import SummarizerError, from_pretrained

    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(work["save"] / "checkpoint_last.pt", model / "checkpoint_best.pt")
    data, doc, decoding = str(work["data"]), "tok1 tok5 tok9 tok2 tok7", {"min_len": 1, "max_len_b": 8}
    expected = from_pretrained(str(work["save"] / "checkpoint_last.pt"), data_name_or_path=data,
                               bpe="none").sample(doc, **decoding)
    for load in (from_pretrained, PoolingformerBARTModel.from_pretrained):
        assert load(str(model), data_name_or_path=data, bpe="none").sample(doc, **decoding) == expected
    with pytest.raises(SummarizerError, match=f"^checkpoint not found: {model / 'model.pt'}$"):
        from_pretrained(str(model), checkpoint_file="model.pt", data_name_or_path=data, bpe="none")
    with pytest.raises(SummarizerError, match=f"^{tmp_path}: no checkpoint in this directory"):
        from_pretrained(str(tmp_path), data_name_or_path=data, bpe="none")


def test_hub_runs_a_flex_trained_checkpoint_with_the_attention_that_fits(work, tmp_path):
    """A checkpoint trained with --attention-impl flex loads with auto in every encoder layer
    (eager on a CPU), and summarizes as the checkpoint saved with auto does."""
    from fairseq_poolingformer.summarization import from_pretrained

    state = torch.load(work["save"] / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    assert getattr(state["cfg"]["model"], "attention_impl", None) is None  # trained without the flag
    state["cfg"]["model"].attention_impl = "flex"
    flex = tmp_path / "checkpoint_flex.pt"
    torch.save(state, flex)
    summarizer = from_pretrained(str(flex), data_name_or_path=str(work["data"]), bpe="none")
    layers = summarizer.models[0].encoder.layers
    assert [layer.self_attn.impl for layer in layers] == ["auto"] * len(layers)
    reference = from_pretrained(str(work["save"] / "checkpoint_last.pt"), data_name_or_path=str(work["data"]),
                                bpe="none")
    doc = "tok1 tok5 tok9 tok2 tok7"
    assert summarizer.sample(doc, min_len=1, max_len_b=8) == reference.sample(doc, min_len=1, max_len_b=8)


def test_pf_summarize_errors_name_its_flags(work, paper, tmp_path, capsys):
    """What the hub names by its parameters, pf-summarize names by its flags."""
    import shutil

    from fairseq_poolingformer.summarization import summarize
    from tool_main import exit_status

    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(work["save"] / "checkpoint_last.pt", model / "model.pt")
    assert exit_status(summarize.main, ["--checkpoint", model, "--dict", work["data"], "--cpu", paper]) == 1
    assert capsys.readouterr().err == (
        f"pf-summarize: error: no BPE for the summarizer: none given and none beside the checkpoint in {model} "
        "(looked for sentencepiece.bpe.model, spm.model, or encoder.json + vocab.bpe); pass --sentencepiece-model "
        "PATH, or --gpt2-encoder-json PATH and --gpt2-vocab-bpe PATH, or --bpe none if the documents are already "
        "BPE tokens; nothing written\n")
    enc = str(REPO / "tests/data/gpt2_bpe/encoder.json")
    assert exit_status(summarize.main, ["--checkpoint", model, "--dict", work["data"], "--cpu", "--bpe", "gpt2",
                                        "--gpt2-encoder-json", enc, paper]) == 1
    assert capsys.readouterr().err == (
        f"pf-summarize: error: GPT-2 BPE file --gpt2-vocab-bpe not found: none given, and no vocab.bpe beside the "
        f"checkpoint in {model}; nothing written\n")
