"""The shared floor of the tools (fairseq_poolingformer.inference): the files beside a
checkpoint found in one order by both tools, the temporary dictionary folder, reading text."""
import os
import shutil
from pathlib import Path

import pytest

from fairseq_poolingformer.inference.dictionary import dictionary_dir
from fairseq_poolingformer.inference.errors import CheckpointError, InferenceError
from fairseq_poolingformer.inference.files import SPM_NAMES, find_bpe, resolve_checkpoint
from fairseq_poolingformer.inference.text import read_text

DATA = Path(__file__).resolve().parent / "data"
SPM = DATA / "sentencepiece" / "test_model.model"
GPT2 = DATA / "gpt2_bpe"


def test_both_tools_pick_the_same_sentencepiece_model(tmp_path):
    """With both names beside the checkpoint, the reader and the summarization hub take the
    first of SPM_NAMES; the other one here is not a model, so a tool taking it would fail."""
    from fairseq_poolingformer.qa.reader import tokenizer_spec
    from fairseq_poolingformer.summarization.hub import build_bpe

    first, second = (tmp_path / name for name in SPM_NAMES)
    shutil.copy(SPM, first)
    second.write_bytes(b"not a sentencepiece model")
    shutil.copy(GPT2 / "dict.txt", tmp_path / "dict.txt")
    assert find_bpe(str(tmp_path)).sentencepiece_model == str(first)
    assert tokenizer_spec(str(tmp_path)).sentencepiece_model == str(first)
    assert type(build_bpe(str(tmp_path), None, None, None, None)).__name__ == "SentencepieceBPE"
    first.unlink()  # only the second name: found, and named when it does not parse
    with pytest.raises(CheckpointError, match=f"^{second}: not a sentencepiece model"):
        build_bpe(str(tmp_path), None, None, None, None)


def test_gpt2_files_beside_and_given(tmp_path):
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copy(GPT2 / name, tmp_path / name)
    files = find_bpe(str(tmp_path))
    assert (files.kind, files.encoder_json, files.vocab_bpe) == ("gpt2", str(tmp_path / "encoder.json"),
                                                                 str(tmp_path / "vocab.bpe"))
    shutil.copy(SPM, tmp_path / "spm.model")  # a sentencepiece model beside wins over GPT-2 files beside ...
    assert find_bpe(str(tmp_path)).kind == "sentencepiece"
    assert find_bpe(str(tmp_path), vocab_bpe=str(GPT2 / "vocab.bpe")).kind == "gpt2"  # ... not over given ones
    assert find_bpe(str(tmp_path / "empty")) is None
    swapped = find_bpe(str(tmp_path), "gpt2", encoder_json=str(GPT2 / "vocab.bpe"),
                       vocab_bpe=str(GPT2 / "encoder.json"))
    with pytest.raises(CheckpointError, match="GPT-2 BPE files look swapped"):
        swapped.check(str(tmp_path), {"encoder_json": "--encoder-json", "vocab_bpe": "--vocab-bpe"})


def test_resolve_checkpoint_order(tmp_path):
    with pytest.raises(CheckpointError, match=f"^{tmp_path}: no checkpoint in this directory"):
        resolve_checkpoint(str(tmp_path))
    for name in ("checkpoint_last.pt", "checkpoint_best.pt"):
        (tmp_path / name).write_bytes(b"")
        assert resolve_checkpoint(str(tmp_path)) == str(tmp_path / name)
    with pytest.raises(CheckpointError, match="^checkpoint not found: "):
        resolve_checkpoint(str(tmp_path / "model.pt"))
    # a checkpoint_file names the one in the directory; beside a file it changes nothing
    assert resolve_checkpoint(str(tmp_path), "checkpoint_last.pt") == str(tmp_path / "checkpoint_last.pt")
    assert resolve_checkpoint(str(tmp_path / "checkpoint_last.pt"), "x.pt") == str(tmp_path / "checkpoint_last.pt")
    with pytest.raises(CheckpointError, match=f"^checkpoint not found: {tmp_path / 'model.pt'}$"):
        resolve_checkpoint(str(tmp_path), "model.pt")


def test_dictionary_dir_copies_only_when_it_must_and_cleans_up(tmp_path):
    own = tmp_path / "dict.txt"
    own.write_text("a 1\n")
    with dictionary_dir(str(own), ["dict.txt"]) as directory:
        assert directory == str(tmp_path)
    other = tmp_path / "vocab.txt"
    other.write_text("b 2\n")
    with dictionary_dir(str(other), ["dict.source.txt", "dict.target.txt"]) as directory:
        assert sorted(os.listdir(directory)) == ["dict.source.txt", "dict.target.txt"]
        assert (Path(directory) / "dict.target.txt").read_text() == "b 2\n"
    assert not os.path.exists(directory)
    with pytest.raises(RuntimeError), dictionary_dir(str(other), ["dict.txt"]) as directory:
        raise RuntimeError  # removed on an error too
    assert not os.path.exists(directory)


def test_read_text_keeps_the_file_as_it_is(tmp_path):
    crlf = tmp_path / "doc.txt"
    crlf.write_bytes("caf\u00e9\r\nline two\r\n".encode("utf-8"))
    assert read_text(str(crlf)) == "caf\u00e9\r\nline two\r\n" == open(crlf, encoding="utf-8", newline="").read()
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(InferenceError, match=rf"^{latin1}: not UTF-8 text \(byte 3: b'\\xe9'\)$"):
        read_text(str(latin1))


def test_model_files_are_inputs_an_output_must_not_be(tmp_path):
    """The checkpoint and every dictionary, BPE file and checkpoint beside it, plus the files
    given, count as inputs: check_output refuses each, and accepts a new file beside them."""
    from fairseq_poolingformer.inference.files import model_files
    from fairseq_poolingformer.inference.output import OutputError, check_output

    model = tmp_path / "model"
    model.mkdir()
    for name in ("checkpoint_best.pt", "checkpoint3.pt", "dict.txt", "dict.source.txt", "spm.model",
                 "encoder.json", "vocab.bpe", "notes.txt"):
        (model / name).write_text(name)
    data = tmp_path / "data"
    data.mkdir()
    (data / "dict.target.txt").write_text("a 1\n")
    given_dict = tmp_path / "my_dict.txt"
    given_dict.write_text("a 1\n")
    for checkpoint in (str(model), str(model / "checkpoint_best.pt")):
        inputs = model_files(checkpoint, str(given_dict), str(data), None)
        for protected in ("checkpoint_best.pt", "checkpoint3.pt", "dict.txt", "dict.source.txt", "spm.model",
                          "encoder.json", "vocab.bpe"):
            with pytest.raises(OutputError, match="is one of the inputs"):
                check_output(str(model / protected), inputs)
        for protected in (given_dict, data / "dict.target.txt"):
            with pytest.raises(OutputError, match="is one of the inputs"):
                check_output(str(protected), inputs)
        check_output(str(model / "notes.txt"), inputs)  # not a model file
        check_output(str(model / "answers.jsonl"), inputs)
