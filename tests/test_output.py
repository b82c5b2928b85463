"""inference/output.py: an output is complete or untouched, and no node is ever replaced."""
from __future__ import annotations

import os
import re
import stat
import threading

import pytest

from fairseq_poolingformer.inference import output
from fairseq_poolingformer.inference.output import OutputError, check_output, open_output
from fairseq_poolingformer.preprocess.common import atomic_outputs

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # permission bits do not stop root


@pytest.fixture(autouse=True)
def no_streams_left(monkeypatch):
    monkeypatch.setattr(output, "_STREAMS", [])  # what a test leaves unfinished stays here


def _write(path, lines, inputs=()):
    with open_output(str(path), [str(i) for i in inputs]) as f:
        f.writelines(line + "\n" for line in lines)


def test_new_file_is_written_whole_with_lf_and_utf8(tmp_path):
    out = tmp_path / "answers.jsonl"
    _write(out, ["é 1", "二 2"])
    assert out.read_bytes() == "é 1\n二 2\n".encode("utf-8")
    assert os.listdir(tmp_path) == ["answers.jsonl"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_an_exception_in_the_block_leaves_the_old_file_and_no_temporary(tmp_path, error):
    out = tmp_path / "out.txt"
    out.write_text("old\n")
    with pytest.raises(error):
        with open_output(str(out)) as f:
            f.write("half")
            f.flush()
            raise error()
    assert out.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_a_replaced_file_keeps_its_mode(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("old\n")
    os.chmod(out, 0o640)
    _write(out, ["new"])
    assert out.read_text() == "new\n" and stat.S_IMODE(os.stat(out).st_mode) == 0o640


def test_a_symlink_stays_and_its_target_is_replaced(tmp_path):
    target = tmp_path / "data" / "real.txt"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    _write(link, ["new"])
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new\n"
    assert os.listdir(tmp_path / "data") == ["real.txt"] and sorted(os.listdir(tmp_path)) == ["data", "link.txt"]


def test_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.txt"
    link.symlink_to(tmp_path / "new.txt")
    _write(link, ["x"])
    assert link.is_symlink() and (tmp_path / "new.txt").read_text() == "x\n"


def test_a_fifo_stays_a_fifo_and_its_reader_gets_the_lines(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    _write(fifo, ["one", "two"])
    reader.join(timeout=10)
    assert received == ["one\ntwo\n"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and os.listdir(tmp_path) == ["pipe"]


def test_a_symlink_to_a_fifo_streams_into_the_fifo(tmp_path):
    fifo, link = tmp_path / "pipe", tmp_path / "link"
    os.mkfifo(fifo)
    link.symlink_to(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    _write(link, ["x"])
    reader.join(timeout=10)
    assert received == ["x\n"] and link.is_symlink() and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_the_null_device_is_written_in_place_not_replaced(tmp_path):
    before = os.stat(os.devnull)
    assert stat.S_ISCHR(before.st_mode)
    link = tmp_path / "null"
    link.symlink_to(os.devnull)
    for path in (os.devnull, str(link)):
        check_output(path)
        _write(path, ["discarded"])
    after = os.stat(os.devnull)
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_ino, after.st_rdev, after.st_mode) == (before.st_ino, before.st_rdev, before.st_mode)
    assert link.is_symlink()


def test_stdout_is_utf8_with_lf_and_stays_open(capfd):
    for path in (None, "-"):
        with open_output(path) as f:
            f.write("é\n")
    print("after", flush=True)
    assert capfd.readouterr().out == "é\né\nafter\n"
    assert output.streams_in_use() == []


def test_an_interrupted_stream_is_reported_unfinished(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with open_output(os.devnull):
            raise KeyboardInterrupt
    assert output.streams_in_use() == [os.devnull]


@pytest.mark.parametrize("how", ["same path", "relative path", "symlink", "hard link"])
def test_an_output_that_is_an_input_is_refused(tmp_path, monkeypatch, how):
    source = tmp_path / "doc.txt"
    source.write_text("the document\n")
    out = {"same path": source, "relative path": "doc.txt", "symlink": tmp_path / "link.txt",
           "hard link": tmp_path / "hard.txt"}[how]
    if how == "symlink":
        os.symlink(source, out)
    elif how == "hard link":
        os.link(source, out)
    monkeypatch.chdir(tmp_path)
    entered = []
    with pytest.raises(OutputError, match=rf"^output {re.escape(str(out))}: is one of the inputs"):
        with open_output(str(out), ["q.jsonl", "-", None, str(source)]):
            entered.append(True)
    assert not entered and source.read_text() == "the document\n"


def test_a_different_file_is_not_an_input(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("a")
    b.write_text("b")
    check_output(str(b), [str(a)])  # no error
    check_output(str(tmp_path / "new.txt"), [str(a)])


@pytest.mark.parametrize("case, message", [
    ("directory", "is a directory, not a file to write"),
    ("missing directory", "directory {tmp}/missing does not exist"),
    ("file as directory", "directory {tmp}/file is not a directory"),
    ("empty", "an empty path"),
])
def test_a_place_that_cannot_take_a_file_is_refused_before_any_work(tmp_path, case, message):
    (tmp_path / "file").write_text("x")
    path = {"directory": str(tmp_path), "missing directory": f"{tmp_path}/missing/out.txt",
            "file as directory": f"{tmp_path}/file/out.txt", "empty": ""}[case]
    with pytest.raises(OutputError, match=message.format(tmp=tmp_path)):
        check_output(path)
    entered = []
    with pytest.raises(OutputError):
        with open_output(path):
            entered.append(True)
    assert not entered and os.listdir(tmp_path) == ["file"]


@pytest.mark.skipif(AS_ROOT, reason="root writes into read-only directories")
def test_a_read_only_directory_or_file_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "old.txt").write_text("old")
    os.chmod(ro / "old.txt", 0o444)
    os.chmod(ro, 0o555)
    try:
        with pytest.raises(OutputError, match=f"directory {ro} is not writable"):
            check_output(str(ro / "new.txt"))
        with pytest.raises(OutputError, match="is not writable"):
            check_output(str(ro / "old.txt"))
    finally:
        os.chmod(ro, 0o755)


def test_a_stream_no_one_may_open_for_writing_is_refused(tmp_path):
    """Refused at parse time, not when it is opened after the work."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo, 0o444)
    if os.access(fifo, os.W_OK):
        pytest.skip("root may open any FIFO for writing")
    with pytest.raises(OutputError, match="cannot be opened for writing"):
        check_output(str(fifo))


def test_atomic_outputs_refuses_to_replace_a_node_that_is_not_a_file(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match=f"cannot write {fifo}: it is not a regular file"):
        with atomic_outputs([tmp_path / "a.txt", fifo]):
            raise AssertionError("entered")  # never: and then nothing would be renamed
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and os.listdir(tmp_path) == ["pipe"]
