"""The QA reader and pf-answer: on the bundled NQ and TyDi samples, the reader on the
raw document text gives predict_qa's answer on the preprocessed split (same bytes, same score,
same kind), with character offsets into the document as given (Korean, Thai, Arabic); top-k,
"no answer", paragraphs; pf-answer's inputs, outputs and one-line errors."""
import io
import json
import os
import subprocess
import sys

import pytest
import torch

from fairseq_poolingformer.qa import answer as pf_answer
from fairseq_poolingformer.qa import predict as predict_qa
from fairseq_poolingformer.preprocess import qa_binarize
from fairseq_poolingformer.preprocess import tydi as tydi_pre
from fairseq_poolingformer.qa.documents import blank_line_paragraphs, make_document
from fairseq_poolingformer.qa.official import write_predictions
from fairseq_poolingformer.qa.reader import ReaderError, load_reader
from fairseq_poolingformer.qa.scores import predict_windows
from qa_trained import DATA, REPO
from tool_main import exit_status

BPE = os.path.join(DATA, "gpt2_bpe")
WINDOWS = dict(max_length=192, doc_stride=96)   # what qa_trained preprocessed with

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


@pytest.fixture(scope="module")
def model_dir(qa_checkpoint, tmp_path_factory):
    """The trained checkpoint with dict.txt and the GPT-2 BPE files beside it, as convert writes them."""
    d = tmp_path_factory.mktemp("reader_model")
    os.symlink(qa_checkpoint, d / "checkpoint_best.pt")
    for name in ("dict.txt", "encoder.json", "vocab.bpe"):
        os.symlink(os.path.join(BPE, name), d / name)
    return d


@pytest.fixture(scope="module")
def reader(model_dir):
    return load_reader(str(model_dir), cpu=True, batch_size=5, **WINDOWS)


@pytest.fixture(scope="module")
def long_questions(qa_data, model_dir, tmp_path_factory):
    """The blind TyDi split again with room for 128 question subwords (GPT-2 BPE makes the Thai
    and Korean questions longer than the default 64, which the reader refuses and the
    preprocessing would cut), and a reader with the same windows."""
    root = tmp_path_factory.mktemp("long_questions")
    src = root / "tydi_test.jsonl"
    src.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "annotations"}, ensure_ascii=False) + "\n"
                           for r in qa_data["tydi_yn"]), encoding="utf-8")
    assert tydi_pre.main(["--input", str(src), "--output-dir", str(root), "--split", "tydi_test", "--bpe", "gpt2",
                          "--dict", os.path.join(BPE, "dict.txt"), "--encoder-json", os.path.join(BPE, "encoder.json"),
                          "--vocab-bpe", os.path.join(BPE, "vocab.bpe"), "--max-length", "192", "--doc-stride", "96",
                          "--max-question-len", "128", "--no-progress"]) == 0
    qa_binarize.binarize_split(str(root / "tydi_test.windows.jsonl"), str(root / "tydi_test.examples.jsonl"),
                               os.path.join(BPE, "dict.txt"), str(root / "bin"), "tydi_test", progress=False)
    return {"bin": str(root / "bin"),
            "reader": load_reader(str(model_dir), cpu=True, batch_size=5, max_question_len=128, **WINDOWS)}


def _predict_qa(data_dir, qa_checkpoint, split, fmt, out):
    assert exit_status(predict_qa.main, ["--checkpoint", qa_checkpoint, "--data-dir", data_dir, "--split", split,
                                         "--format", fmt, "--output", out, "--cpu", "--batch-size", "16"]) == 0
    if fmt == "nq":
        return json.loads(out.read_text())["predictions"]
    return [json.loads(line) for line in out.read_text().splitlines()]


def _token_starts(tokens):
    starts, pos = [], 0
    for t in tokens:
        starts.append(pos)
        pos += len(t) + 1
    return starts


def _close(a, b):
    """Scores equal up to float32 rounding: the reader batches other windows together than
    predict_qa (measured: most identical, the others within 3e-8)."""
    return a == pytest.approx(b, rel=1e-6, abs=1e-6)


def test_reader_gives_predict_qa_answers_on_nq(qa_data, qa_checkpoint, reader, tmp_path):
    """The blind NQ split (4 questions on the real dev document: the gold span question, YES,
    NO, null): reader.answer on document_text with NQ's candidates as paragraphs."""
    preds = _predict_qa(qa_data["bin"], qa_checkpoint, "nq_test", "nq", tmp_path / "nq.json")
    records = qa_data["nq_yn"]
    assert [p["example_id"] for p in preds] == [int(r["example_id"]) for r in records]
    kinds = set()
    for record, pred in zip(records, preds):
        text = record["document_text"]
        tokens = text.split(" ")
        starts = _token_starts(tokens)
        paragraphs = [(starts[c["start_token"]], starts[c["end_token"] - 1] + len(tokens[c["end_token"] - 1]))
                      for c in record["long_answer_candidates"]]
        got = reader.answer(record["question_text"], text, paragraphs=paragraphs)
        assert set(got) == {"answer", "start", "end", "score", "kind", "paragraph"}
        assert _close(got["score"], pred["short_answers_score"]), (got, pred)
        if pred["yes_no_answer"] != "NONE":
            assert got["kind"] == pred["yes_no_answer"].lower() == got["answer"]
            la = pred["long_answer"]
            assert got["paragraph"] == [starts[la["start_token"]], starts[la["end_token"] - 1]
                                        + len(tokens[la["end_token"] - 1])]
        elif pred["short_answers"]:
            [sa] = pred["short_answers"]
            assert got["kind"] == "span"
            assert got["answer"] == " ".join(tokens[sa["start_token"]:sa["end_token"]])
            assert text[got["start"]:got["end"]] == got["answer"]
            assert got["start"] == starts[sa["start_token"]]
            containing = [p for p in paragraphs if p[0] <= got["start"] and got["end"] <= p[1]]
            assert (got["paragraph"] is None) == (not containing)
            assert got["paragraph"] is None or tuple(got["paragraph"]) in containing
        else:
            assert got["kind"] == "none"
        kinds.add(got["kind"])
    assert "span" in kinds


class SpansFirst(torch.nn.Module):
    """The trained model with its answer-type head pushed to "short answer": the NQ-trained
    model answers YES / NO on TyDi, this makes both paths decode its spans (Korean, Thai, Arabic)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs):
        logits, extra = self.model(*args, **kwargs)
        answer_type = logits["answer_type"].clone()
        answer_type[:, 1] += 100.0
        return dict(logits, answer_type=answer_type), extra


def _predict_qa_spans_first(data_dir, qa_checkpoint, split, out):
    model, task, _ = predict_qa.load_model(qa_checkpoint, data_dir, cpu=True)
    task.load_dataset(split)
    by_example = predict_windows(SpansFirst(model), task, split, max_sentences=16)
    write_predictions(os.path.join(data_dir, f"{split}.examples.jsonl"), by_example, "tydi", str(out))
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize("spans_first", [False, True], ids=["trained", "spans-first"])
def test_reader_gives_predict_qa_answers_on_tydi_korean_thai_arabic(qa_data, qa_checkpoint, model_dir,
                                                                     long_questions, tmp_path, spans_first):
    if spans_first:
        reader = load_reader(str(model_dir), cpu=True, batch_size=5, max_question_len=128, **WINDOWS)
        reader.model = SpansFirst(reader.model)
        preds = _predict_qa_spans_first(long_questions["bin"], qa_checkpoint, "tydi_test", tmp_path / "tydi.jsonl")
    else:
        reader = long_questions["reader"]
        preds = _predict_qa(long_questions["bin"], qa_checkpoint, "tydi_test", "tydi", tmp_path / "tydi.jsonl")
    records = qa_data["tydi_yn"]
    assert {r["language"] for r in records} == {"korean", "thai", "arabic"}
    spans = 0
    for record, pred in zip(records, preds):
        assert pred["example_id"] == record["example_id"]
        text = record["document_plaintext"]
        raw = text.encode("utf-8")

        def chars(b):
            return len(raw[:b].decode("utf-8"))
        paragraphs = [(chars(c["plaintext_start_byte"]), chars(c["plaintext_end_byte"]))
                      for c in record["passage_answer_candidates"]]
        got = reader.answer(record["question_text"], text, paragraphs=paragraphs)
        assert _close(got["score"], pred["minimal_answer_score"]), (got, pred)
        m = pred["minimal_answer"]
        if pred["yes_no_answer"] != "NONE":
            assert got["kind"] == pred["yes_no_answer"].lower()
            assert got["paragraph"] == list(paragraphs[pred["passage_answer_index"]])
        elif m["start_byte_offset"] >= 0:
            spans += 1
            assert got["kind"] == "span"
            assert got["answer"].encode("utf-8") == raw[m["start_byte_offset"]:m["end_byte_offset"]]
            assert (got["start"], got["end"]) == (chars(m["start_byte_offset"]), chars(m["end_byte_offset"]))
            assert text[got["start"]:got["end"]] == got["answer"]
        else:
            assert got["kind"] == "none"
    assert spans == (5 if spans_first else 0)  # the trained model: YES / NO on every TyDi question


def test_batched_answers_equal_single_answers(qa_data, long_questions):
    reader = long_questions["reader"]
    records = qa_data["tydi_yn"]
    pairs = [(r["question_text"], r["document_plaintext"]) for r in records]
    batched = reader.answer_batch(pairs)
    for (q, d), got in zip(pairs, batched):
        single = reader.answer(q, d)
        assert {k: v for k, v in got.items() if k != "score"} == {k: v for k, v in single.items() if k != "score"}
        assert _close(got["score"], single["score"])


def test_top_k_and_no_answer(qa_data, long_questions):
    reader = long_questions["reader"]
    record = qa_data["tydi_yn"][1]  # Thai
    text, question = record["document_plaintext"], record["question_text"]
    best = reader.answer(question, text)
    top = reader.answer(question, text, top_k=4)
    assert isinstance(top, list) and len(top) == 4
    assert top[0] == best
    assert len({(a["start"], a["end"]) for a in top}) == 4
    for a in top[1:]:
        assert a["kind"] == "span" and text[a["start"]:a["end"]] == a["answer"]
    assert [a["score"] for a in top[1:]] == sorted((a["score"] for a in top[1:]), reverse=True)
    # "no answer" scores 0 and goes before the first answer scoring below 0
    null = {"answer": "", "start": None, "end": None, "score": 0.0, "kind": "none", "paragraph": None}
    at = next((i for i, a in enumerate(top) if a["score"] < 0), len(top))
    assert reader.answer(question, text, top_k=4, handle_impossible_answer=True) == (top[:at] + [null] + top[at:])[:4]
    first = reader.answer(question, text, handle_impossible_answer=True)
    assert first == (null if best["score"] < 0 else best)


def test_plain_text_paragraphs_and_offsets_russian(reader):
    text = ("Москва — столица России.\n\n  Санкт-Петербург основан в 1703 году.  \n \n"
            "Казань стоит на Волге.\n")
    paragraphs = [(text.index(p), text.index(p) + len(p)) for p in (
        "Москва — столица России.", "Санкт-Петербург основан в 1703 году.", "Казань стоит на Волге.")]
    assert blank_line_paragraphs(text) == paragraphs
    assert blank_line_paragraphs("one block\nof text") == []
    answers = reader.answer("Когда основан Санкт-Петербург?", text, top_k=6)
    spans = [a for a in answers if a["kind"] == "span"]
    assert len(spans) >= 5
    for a in spans:
        assert text[a["start"]:a["end"]] == a["answer"] and a["answer"].strip() == a["answer"] != ""
        containing = [list(p) for p in paragraphs if p[0] <= a["start"] and a["end"] <= p[1]]
        assert a["paragraph"] == (containing[0] if containing else None)  # paragraphs do not nest
    doc = make_document("q", "<P> a b </P> <Ul> <Li> c </Li> </Ul>")
    assert doc.example.dataset == "nq" and doc.paragraphs == [(0, 12), (13, 36), (18, 30)]


def test_reader_errors(reader, model_dir):
    with pytest.raises(ReaderError, match="empty question"):
        reader.answer("  ", "some text")
    with pytest.raises(ReaderError, match="empty document"):
        reader.answer("who?", "\n \n")
    with pytest.raises(ReaderError, match="no subword"):
        reader.answer("who?", "<P> </P> <Table> </Table>")
    with pytest.raises(ReaderError, match="the question is 70 subwords, longer than the 64 a window holds"):
        reader.answer(" ".join(["word"] * 70), "some text")
    with pytest.raises(ReaderError, match="--max-length 4096 is longer than the checkpoint's 512 positions"):
        load_reader(str(model_dir), cpu=True, max_length=4096)


def test_reader_needs_its_tokenizer_files(model_dir, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    os.symlink(model_dir / "checkpoint_best.pt", bare / "checkpoint_best.pt")
    with pytest.raises(ReaderError, match=f"dictionary not found: {bare}/dict.txt"):
        load_reader(str(bare), cpu=True)
    os.symlink(model_dir / "dict.txt", bare / "dict.txt")
    with pytest.raises(ReaderError, match=f"no BPE for the reader: none given and none beside the checkpoint in {bare}"):
        load_reader(str(bare), cpu=True)
    with pytest.raises(ReaderError, match=f"{tmp_path}: no checkpoint in this directory"):
        load_reader(str(tmp_path), cpu=True)
    reader = load_reader(str(bare), cpu=True, encoder_json=os.path.join(BPE, "encoder.json"),
                         vocab_bpe=os.path.join(BPE, "vocab.bpe"), **WINDOWS)  # passed instead of found
    assert reader.spec.kind == "gpt2" and reader.windows.max_length == 192


# ---------------------------------------------------------------------------
# pf-answer

def _pf_answer(args, stdin=None):
    return subprocess.run([sys.executable, "-m", "fairseq_poolingformer.qa.answer", *map(str, args)], input=stdin,
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def _pf_answer_here(args, monkeypatch, capsys, stdin: str = ""):
    """pf-answer's main in this process (saves a Fairseq import per call): (exit code, stdout)."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8")), encoding="utf-8"))
    code = exit_status(pf_answer.main, args)
    return code, capsys.readouterr().out


def test_pf_answer_files_pairs_and_stdin(qa_data, model_dir, reader, tmp_path, monkeypatch, capsys):
    records = qa_data["tydi_yn"][:3]  # Korean, Thai, Arabic
    files = []
    for i, r in enumerate(records):
        files.append(tmp_path / f"doc{i}.txt")
        files[-1].write_text(r["document_plaintext"], encoding="utf-8")
    question = records[1]["question_text"]
    expected = [reader.answer(question, r["document_plaintext"]) for r in records]
    common = ["--checkpoint", model_dir, "--cpu", "--max-length", 192, "--doc-stride", 96]
    out = tmp_path / "answers.jsonl"
    proc = _pf_answer(common + ["--question", question, *files, "--output", out])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == "" and proc.stderr == ""  # quiet: no Fairseq log line, no warning, no bar off a terminal
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 3
    for got, exp in zip(lines, expected):
        assert {k: v for k, v in got.items() if k != "score"} == {k: v for k, v in exp.items() if k != "score"}
        assert _close(got["score"], exp["score"])
    # pairs, from a file and from stdin, top-k lists
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"question": question, "document": r["document_plaintext"]},
                                        ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    code, out = _pf_answer_here(common + ["--pairs", pairs, "--top-k", 3], monkeypatch, capsys)
    assert code == 0
    top = [json.loads(line) for line in out.splitlines()]
    assert [len(t) for t in top] == [3, 3, 3] and [t[0]["answer"] for t in top] == [e["answer"] for e in expected]
    code, out = _pf_answer_here(common, monkeypatch, capsys, stdin=pairs.read_text(encoding="utf-8"))
    assert code == 0 and [json.loads(line)["answer"] for line in out.splitlines()] == [e["answer"] for e in expected]
    # the document itself piped to the command
    proc = _pf_answer(common + ["--question", question], stdin=records[0]["document_plaintext"])
    assert proc.returncode == 0 and json.loads(proc.stdout)["answer"] == expected[0]["answer"]


def test_pf_answer_errors_are_one_line_and_write_nothing(model_dir, tmp_path, capsys):
    good = tmp_path / "good.txt"
    good.write_text("Seoul is the capital of Korea.", encoding="utf-8")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 au lait".encode("latin-1"))
    empty = tmp_path / "empty.txt"
    empty.write_text(" \n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    common = ["--checkpoint", str(model_dir), "--cpu", "--max-length", "192", "--doc-stride", "96",
              "--output", str(out)]
    cases = [
        (["--question", "what?", str(good), str(bad)], f"{bad}: not UTF-8 text (byte 3: b'\\xe9')"),
        (["--question", "what?", str(good), str(empty)], f"{empty}: empty document"),
        (["--question", " ".join(["word"] * 80), str(good)], "the question is 80 subwords, longer than the 64"),
        (["--checkpoint", str(tmp_path / "nowhere"), "--question", "q", str(good)], "checkpoint not found"),
    ]
    for args, message in cases:
        assert exit_status(pf_answer.main, common + args) == 1
        err = capsys.readouterr().err
        assert err.startswith("pf-answer: error: ") and message in err and err.count("\n") == 1, err
        assert "Traceback" not in err and not out.exists()



def test_windows_are_streamed_through_the_model(qa_data, reader, monkeypatch):
    """A long document's windows are built as the batches need them: when batch i runs, exactly
    (i + 1) * batch_size windows have been built, never the whole document's."""
    from fairseq_poolingformer.qa import reader as reader_module

    built = []
    real_iter_windows = reader_module.iter_windows

    def counting(*args, **kwargs):
        for window in real_iter_windows(*args, **kwargs):
            built.append(window["window_index"])
            yield window
    monkeypatch.setattr(reader_module, "iter_windows", counting)
    seen_at_batch = []
    model = reader.model
    monkeypatch.setattr(reader, "model", lambda *a, **k: (seen_at_batch.append(len(built)), model(*a, **k))[1])
    record = qa_data["nq_yn"][0]  # the NQ document: 40 windows of 192
    reader.answer(record["question_text"], record["document_text"])
    assert len(built) == 40 and len(seen_at_batch) == 8
    assert seen_at_batch == [5 * (i + 1) for i in range(8)]


def test_reader_windows_fit_the_checkpoint(model_dir):
    """No window flags: the training windows fitted to the checkpoint's 512 positions, the stride
    scaled with them (1568 of 4096 -> 196 of 512, not 1568 cut to no overlap); values that
    cannot work are refused naming the flag."""
    windows = load_reader(str(model_dir), cpu=True).windows
    assert (windows.max_length, windows.doc_stride, windows.max_question_len) == (512, 196, 64)
    with pytest.raises(ReaderError, match=r"^--doc-stride 600 is longer than the checkpoint's 512-token window holds "
                                          r"of a document \(at most 508 subwords\)"):
        load_reader(str(model_dir), cpu=True, doc_stride=600)
    with pytest.raises(ReaderError, match="^--batch-size must be at least 1, got 0$"):
        load_reader(str(model_dir), cpu=True, batch_size=0)
    with pytest.raises(ReaderError, match="^--max-question-len must be at least 1, got 0$"):
        load_reader(str(model_dir), cpu=True, max_question_len=0)


def test_crlf_offsets_are_the_same_from_python_and_pf_answer(qa_data, model_dir, reader, tmp_path, monkeypatch,
                                                             capsys):
    """The documented Python line reads the file as pf-answer does (bytes decoded, no newline
    translation), so both give the same offsets into a CRLF file."""
    from fairseq_poolingformer.inference.text import read_text

    record = qa_data["tydi_yn"][1]
    text = record["document_plaintext"].replace("\n", "\r\n")
    assert "\r\n" in text
    doc = tmp_path / "crlf.txt"
    doc.write_bytes(text.encode("utf-8"))
    assert read_text(str(doc)) == open(doc, encoding="utf-8", newline="").read() == text
    assert len(open(doc, encoding="utf-8").read()) < len(text)  # what newline translation would change
    expected = reader.answer(record["question_text"], open(doc, encoding="utf-8", newline="").read(), top_k=3)
    code, out = _pf_answer_here(["--checkpoint", model_dir, "--cpu", *sum(([f"--{k.replace('_', '-')}", v]
                                 for k, v in WINDOWS.items()), []), "--batch-size", 5, "--top-k", 3,
                                 "--question", record["question_text"], doc], monkeypatch, capsys)
    got = json.loads(out)
    assert code == 0 and [(a["start"], a["end"], a["answer"]) for a in got] == \
        [(a["start"], a["end"], a["answer"]) for a in expected]
    spans = [a for a in got if a["kind"] == "span"]
    assert spans and all(text[a["start"]:a["end"]] == a["answer"] for a in spans)


def test_pf_answer_names_a_sentencepiece_model_that_does_not_parse(model_dir, tmp_path, capsys):
    corrupt = tmp_path / "x.model"
    corrupt.write_bytes(b"\x00\x01 not a model")
    doc = tmp_path / "doc.txt"
    doc.write_text("Seoul is the capital of Korea.", encoding="utf-8")
    assert exit_status(pf_answer.main, ["--checkpoint", model_dir, "--cpu", "--sentencepiece-model", corrupt,
                                        "--question", "what?", doc]) == 1
    assert capsys.readouterr().err == (f"pf-answer: error: {corrupt}: not a sentencepiece model (the .model file "
                                       "written by sentencepiece's trainer that the training data was encoded "
                                       "with); nothing written\n")


def test_pf_answer_names_a_dictionary_that_does_not_parse(model_dir, tmp_path, capsys):
    bad = tmp_path / "vocab.txt"
    bad.write_text("hello 3\nno-count-here\n", encoding="utf-8")
    doc = tmp_path / "doc.txt"
    doc.write_text("Seoul is the capital of Korea.", encoding="utf-8")
    assert exit_status(pf_answer.main, ["--checkpoint", model_dir, "--cpu", "--dict", bad, "--question", "what?",
                                        doc]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"pf-answer: error: {bad}: not a Fairseq dictionary (") and err.endswith(
        "give the dict.txt the checkpoint was trained with (lines '<symbol> <count>'); nothing written\n"), err


def test_pf_answer_outputs_fifo_symlink_ctrl_c_and_verbose(model_dir, tmp_path, monkeypatch, capsys):
    """--output at a FIFO is streamed and at a symlink writes its target: both nodes stay; Ctrl-C
    is one line, exit 130, nothing written; quiet unless --verbose."""
    import stat
    import threading

    from fairseq_poolingformer.qa.reader import QAReader

    doc = tmp_path / "doc.txt"
    doc.write_text("Seoul is the capital of Korea.\n\nBusan is a port.", encoding="utf-8")
    common = ["--checkpoint", model_dir, "--cpu", *sum(([f"--{k.replace('_', '-')}", v] for k, v in WINDOWS.items()),
                                                        []), "--question", "what is the capital?", doc]
    assert exit_status(pf_answer.main, common) == 0
    expected, err = capsys.readouterr()
    assert len(expected.splitlines()) == 1 and err == ""
    assert exit_status(pf_answer.main, common + ["--verbose"]) == 0
    assert "| INFO | fairseq" in capsys.readouterr().err  # Fairseq's log lines, on request only
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received = []
    reader_thread = threading.Thread(target=lambda: received.append(fifo.read_text(encoding="utf-8")))
    reader_thread.start()
    assert exit_status(pf_answer.main, common + ["--output", fifo]) == 0
    reader_thread.join(timeout=60)
    assert received == [expected] and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    target, link = tmp_path / "answers.jsonl", tmp_path / "link.jsonl"
    target.write_text("old\n")
    link.symlink_to(target)
    assert exit_status(pf_answer.main, common + ["--output", link]) == 0
    assert link.is_symlink() and target.read_text(encoding="utf-8") == expected
    capsys.readouterr()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
        yield
    monkeypatch.setattr(QAReader, "iter_answers", interrupted)
    out = tmp_path / "out.jsonl"
    assert exit_status(pf_answer.main, common + ["--output", out]) == 130
    assert capsys.readouterr() == ("", "pf-answer: interrupted; nothing written\n") and not out.exists()


def test_window_flags_are_checked_against_the_checkpoint_before_the_model_loads(model_dir, tmp_path, monkeypatch,
                                                                              capsys):
    """Without --max-length the window is the checkpoint's (512 positions): --doc-stride and
    --max-question-len are checked against it once the checkpoint is read, before the weights
    load, and the message names that window, not a --max-length the user never gave."""
    from fairseq_poolingformer.qa import reader as reader_module

    monkeypatch.setattr(reader_module, "load_for_inference", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(ReaderError, match=r"^--doc-stride 600 is longer than the checkpoint's 512-token window"):
        load_reader(str(model_dir), cpu=True, doc_stride=600)
    with pytest.raises(ReaderError, match=r"^the checkpoint's 512-token window leaves no room for the document beside "
                                          r"a --max-question-len 510 question \(needs at least 514\)$"):
        load_reader(str(model_dir), cpu=True, max_question_len=510)
    with pytest.raises(ReaderError, match="^--max-length 4096 is longer than the checkpoint's 512 positions$"):
        load_reader(str(model_dir), cpu=True, max_length=4096)
    doc = tmp_path / "doc.txt"
    doc.write_text("Seoul is the capital of Korea.", encoding="utf-8")
    assert exit_status(pf_answer.main, ["--checkpoint", model_dir, "--cpu", "--doc-stride", 509, "--question", "what?",
                                        doc]) == 1
    assert capsys.readouterr() == ("", "pf-answer: error: --doc-stride 509 is longer than the checkpoint's 512-token "
                                       "window holds of a document (at most 508 subwords): give at most that; nothing "
                                       "written\n")


def _attention_impls(model) -> list[str]:
    return [m.impl for m in model.modules() if hasattr(m, "impl")]


def test_a_checkpoint_trained_with_flex_attention_runs_with_auto(qa_data, qa_checkpoint, model_dir, tmp_path):
    """--attention-impl flex (a GPU's training choice) would run torch's unfused FlexAttention on
    the CPU: the reader and predict_qa load every layer as auto instead."""
    from fairseq_poolingformer.inference.checkpoint import load_for_inference

    state = torch.load(qa_checkpoint, map_location="cpu", weights_only=False)
    model_cfg = state["cfg"]["model"]
    if isinstance(model_cfg, dict):
        model_cfg["attention_impl"] = "flex"
    else:  # an argparse Namespace (a model registered with add_args)
        model_cfg.attention_impl = "flex"
    flex_dir = tmp_path / "flex"
    flex_dir.mkdir()
    torch.save(state, flex_dir / "checkpoint_best.pt")
    for name in ("dict.txt", "encoder.json", "vocab.bpe"):
        os.symlink(model_dir / name, flex_dir / name)
    checkpoint = str(flex_dir / "checkpoint_best.pt")
    models, _cfg, _task = load_for_inference(checkpoint, {"data": qa_data["bin"]}, "long_qa")
    saved = _attention_impls(models[0])
    assert len(saved) >= 2 and set(saved) == {"flex"}  # as saved: flex in every layer
    reader = load_reader(str(flex_dir), cpu=True, **WINDOWS)
    assert _attention_impls(reader.model) == ["auto"] * len(saved)
    model, _task, _ = predict_qa.load_model(checkpoint, qa_data["bin"], cpu=True)
    assert _attention_impls(model) == ["auto"] * len(saved)
