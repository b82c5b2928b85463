"""pf-answer and pf-summarize check every option when they parse it, and read every --pairs
line before any model work: one line naming the flag (or the line) and the value, exit status 2
(a usage error) or 1, no traceback. No model is loaded here: a test fails if one would be."""
import json

import pytest

from fairseq_poolingformer.qa import answer as pf_answer
from fairseq_poolingformer.summarization import summarize as pf_summarize
from tool_main import exit_status

SUMMARIZE_CASES = [  # (arguments, what stderr's error line says)
    (["--beam", "0"], "argument --beam: must be at least 1, got 0"),
    (["--min-len", "60", "--max-len-b", "50"], "--min-len 60 is larger than --max-len-b 50: a summary cannot be both"),
    (["--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
    (["--max-len-b", "0", "--min-len", "0"], "argument --max-len-b: must be at least 1, got 0"),
    (["--no-repeat-ngram-size", "-1"], "argument --no-repeat-ngram-size: must be at least 0, got -1"),
    (["--max-len-a", "-0.5"], "argument --max-len-a: must be a number >= 0, got -0.5"),
    (["--max-len-a", "0.1", "--max-len-b", "5", "--min-len", "50"],  # Fairseq's assertion on a short document
     "--min-len 50 is larger than --max-len-b 5: a short document's summary cannot be both (its maximum length is "
     "--max-len-a 0.1 x its tokens + --max-len-b 5)"),
    (["--max-len-a", "inf"], "argument --max-len-a: must be a finite number, got inf"),
    (["--lenpen", "nan"], "argument --lenpen: must be a finite number, got nan"),
    (["--lenpen=-inf"], "argument --lenpen: must be a finite number, got -inf"),
    (["--beam", "five"], "argument --beam: expected an integer, got 'five'"),
]
ANSWER_CASES = [
    (["--question", "", "doc.txt"], "argument --question: the question is empty"),
    (["--question", "  ", "doc.txt"], "argument --question: the question is empty"),
    (["--question", "q", "--doc-stride", "0"], "argument --doc-stride: must be at least 1, got 0"),
    (["--question", "q", "--max-length", "0"], "argument --max-length: must be at least 1, got 0"),
    (["--question", "q", "--max-question-len", "0"], "argument --max-question-len: must be at least 1, got 0"),
    (["--question", "q", "--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
    (["--question", "q", "--batch-size", "-3"], "argument --batch-size: must be at least 1, got -3"),
    (["--question", "q", "--top-k", "0"], "argument --top-k: must be at least 1, got 0"),
    (["--question", "q", "--max-length", "192", "--doc-stride", "200"],
     "--doc-stride 200 is longer than a --max-length 192 window holds of a document (at most 188 subwords)"),
    (["--question", "q", "--max-length", "60"],
     "--max-length 60 leaves no room for the document beside a --max-question-len 64 question (needs at least 68)"),
    (["--pairs", "p.jsonl", "--question", "q"], "--pairs holds the questions and documents"),
    (["doc.txt"], "FILE arguments need --question"),
]


@pytest.mark.parametrize("args, message", SUMMARIZE_CASES)
def test_pf_summarize_options_are_checked_when_parsed(args, message, capsys):
    assert exit_status(pf_summarize.main, ["--checkpoint", "nowhere", *args]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"pf-summarize: error: {message}" and "Traceback" not in err, err


@pytest.mark.parametrize("args, message", ANSWER_CASES)
def test_pf_answer_options_are_checked_when_parsed(args, message, capsys):
    assert exit_status(pf_answer.main, ["--checkpoint", "nowhere", *args]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(f"pf-answer: error: {message}") and "Traceback" not in err, err


def test_pairs_are_all_read_before_the_model(tmp_path, monkeypatch, capsys):
    """A bad line 3 is named before the checkpoint is even opened (lines 1 and 2 never run)."""
    monkeypatch.setattr(pf_answer, "load_reader", lambda *a, **k: pytest.fail("the model was loaded"))
    good = json.dumps({"question": "who?", "document": "Ann wrote it."})
    cases = [
        ('{"question": "who?", "document": 3}', "field 'document': expected a string, got 3"),
        ('{"question": "who?"', "not JSON (Expecting ',' delimiter)"),
        ('{"question": "", "document": "text"}', "empty question"),
        ('{"question": "who?", "document": " \\n"}', "empty document"),
        ('["who?", "text"]', 'expected an object with "question" and "document"'),
    ]
    pairs = tmp_path / "pairs.jsonl"
    for line, message in cases:
        pairs.write_text(f"{good}\n{good}\n{line}\n", encoding="utf-8")
        assert exit_status(pf_answer.main, ["--checkpoint", "nowhere", "--pairs", pairs]) == 1
        assert capsys.readouterr().err == f"pf-answer: error: {pairs}:3: {message}; nothing written\n"


def test_an_output_that_is_an_input_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    doc = tmp_path / "doc.txt"
    doc.write_text("Ann wrote it.\n", encoding="utf-8")
    monkeypatch.setattr(pf_answer, "load_reader", lambda *a, **k: pytest.fail("the model was loaded"))
    for main, prog, args in ((pf_answer.main, "pf-answer", ["--question", "who?", doc]),
                             (pf_summarize.main, "pf-summarize", [doc])):
        assert exit_status(main, ["--checkpoint", "nowhere", "--output", doc, *args]) == 1
        err = capsys.readouterr().err
        assert err == (f"{prog}: error: output {doc}: is one of the inputs; writing it would destroy it; "
                       "nothing written\n")
        assert doc.read_text(encoding="utf-8") == "Ann wrote it.\n"
    assert exit_status(pf_summarize.main, ["--checkpoint", "nowhere", "--output", tmp_path / "no" / "out.txt",
                                           doc]) == 1
    assert f"output {tmp_path / 'no' / 'out.txt'}: directory {tmp_path / 'no'} does not exist" in \
        capsys.readouterr().err


def test_predict_qa_checks_its_outputs_before_the_model(tmp_path, capsys):
    """An output that is the examples file, or a FIFO (predictions and report are files): one line,
    exit 1, before the checkpoint (here: none) is opened."""
    import os

    from fairseq_poolingformer.qa import predict

    examples = tmp_path / "valid.examples.jsonl"
    examples.write_text('{"example_id": "1", "dataset": "nq"}\n')
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    for output, problem in ((examples, "is one of the inputs; writing it would destroy it"),
                            (fifo, "a FIFO or device: the predictions and their report are written as files")):
        assert exit_status(predict.main, ["--checkpoint", tmp_path / "none.pt", "--data-dir", tmp_path, "--format",
                                          "nq", "--output", output]) == 1
        assert capsys.readouterr().err == f"predict_qa: error: output {output}: {problem}; nothing written\n"
    assert examples.read_text() == '{"example_id": "1", "dataset": "nq"}\n' and os.path.exists(fifo)


def _model_dir(root):
    """A model folder as convert writes it (the checkpoint: any bytes; no model is loaded here)."""
    model = root / "model"
    model.mkdir()
    for name, text in (("checkpoint_best.pt", "weights"), ("dict.txt", "a 1\n"), ("encoder.json", "{}"),
                       ("vocab.bpe", "#version: 0.2\n")):
        (model / name).write_text(text)
    return model


def test_pf_answer_never_writes_over_the_model(tmp_path, monkeypatch, capsys):
    """--output naming the checkpoint, a file beside it, or a model file given by flag: refused
    before any work, exit 1, the file unchanged byte for byte."""
    monkeypatch.setattr(pf_answer, "load_reader", lambda *a, **k: pytest.fail("the model was loaded"))
    model = _model_dir(tmp_path)
    doc = tmp_path / "doc.txt"
    doc.write_text("Ann wrote it.\n", encoding="utf-8")
    given = {"--dict": tmp_path / "other_dict.txt", "--sentencepiece-model": tmp_path / "x.model"}
    for path in given.values():
        path.write_text("given\n")
    cases = [(model, model / "dict.txt", []), (model, model / "checkpoint_best.pt", []),
             (model / "checkpoint_best.pt", model / "dict.txt", []), (model, model / "vocab.bpe", []),
             *((model, path, [flag, path]) for flag, path in given.items())]
    for checkpoint, output, extra in cases:
        before = output.read_bytes()
        assert exit_status(pf_answer.main, ["--checkpoint", checkpoint, "--question", "who?", "--output", output,
                                            *extra, doc]) == 1
        assert capsys.readouterr().err == (f"pf-answer: error: output {output}: is one of the inputs; writing it "
                                           "would destroy it; nothing written\n")
        assert output.read_bytes() == before


def test_predict_qa_never_writes_over_the_model_or_the_data(tmp_path, monkeypatch, capsys):
    """The checkpoint, the dictionary beside it and the data directory's dictionary are inputs
    too (--output and the report beside it): refused before the model loads."""
    from fairseq_poolingformer.qa import predict

    monkeypatch.setattr(predict, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    model = _model_dir(tmp_path)
    data = tmp_path / "bin"
    data.mkdir()
    (data / "valid.examples.jsonl").write_text('{"example_id": "1", "dataset": "nq"}\n')
    (data / "dict.txt").write_text("b 1\n")
    for output in (model / "checkpoint_best.pt", model / "dict.txt", data / "dict.txt"):
        before = output.read_bytes()
        assert exit_status(predict.main, ["--checkpoint", model / "checkpoint_best.pt", "--data-dir", data,
                                          "--format", "nq", "--output", output]) == 1
        assert capsys.readouterr().err == (f"predict_qa: error: output {output}: is one of the inputs; writing it "
                                           "would destroy it; nothing written\n")
        assert output.read_bytes() == before
    examples = data / "test.examples.jsonl"
    assert exit_status(predict.main, ["--checkpoint", model / "checkpoint_best.pt", "--data-dir", data, "--split",
                                      "test", "--format", "nq", "--output", tmp_path / "p.json"]) == 1
    assert capsys.readouterr().err == (f"predict_qa: error: {examples} not found (run fairseq_poolingformer/"
                                       "preprocess/qa_binarize.py for split 'test'); nothing written\n")


def test_every_file_is_checked_before_the_model(tmp_path, monkeypatch, capsys):
    """A FILE that is not UTF-8, or empty, is refused before the model loads, whatever its
    place among the FILE arguments (nothing is answered, nothing streamed)."""
    import io
    import sys

    monkeypatch.setattr(pf_answer, "load_reader", lambda *a, **k: pytest.fail("the model was loaded"))
    contents = {"good.txt": b"Ann wrote it.\n", "latin1.txt": "caf\xe9 au lait".encode("latin-1"),
                "empty.txt": b" \n\n"}
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
    good, latin1, empty = (tmp_path / name for name in contents)
    for files, message in (([good, latin1], f"{latin1}: not UTF-8 text (byte 3: b'\\xe9')"),
                           ([good, good, empty], f"{empty}: empty document"),
                           ([empty, good], f"{empty}: empty document"),
                           ([good, "-"], "stdin: empty document")):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\n"), encoding="utf-8"))
        assert exit_status(pf_answer.main, ["--checkpoint", "nowhere", "--question", "who?", *files]) == 1
        out, err = capsys.readouterr()
        assert (out, err) == ("", f"pf-answer: error: {message}; nothing written\n")
