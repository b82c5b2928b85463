"""Tests for fairseq_poolingformer.preprocess.common: atomic outputs, JSONL reading, errors, Report, parallel_map."""
import gzip
import itertools
import json
import os
import pickle

import pytest

from fairseq_poolingformer.preprocess.common import (
    InputError,
    Report,
    atomic_outputs,
    iter_jsonl,
    iter_lines,
    normalize_whitespace,
    parallel_map,
    parse_jsonl_line,
    require,
)


# --------------------------------------------------------------------- InputError

def test_input_error_names_file_line_and_field():
    e = InputError("data/train.jsonl", 7, "abstract_text", "missing required field", "missing_field")
    assert str(e) == "data/train.jsonl:7: field 'abstract_text': missing required field"
    assert (e.path, e.line, e.field, e.reason) == ("data/train.jsonl", 7, "abstract_text", "missing_field")


def test_input_error_pickles_for_worker_processes():
    e = InputError("a.jsonl", 3, "x", "bad", "wrong_type")
    e2 = pickle.loads(pickle.dumps(e))
    assert str(e2) == str(e) and e2.reason == "wrong_type" and e2.line == 3


# --------------------------------------------------------------------- atomic_outputs

def _listing(d):
    return sorted(os.listdir(d))


def test_atomic_outputs_replaces_all_on_success(tmp_path):
    a, b = tmp_path / "x.source", tmp_path / "x.target"
    a.write_text("old\n")
    with atomic_outputs([a, b]) as (ta, tb):
        assert os.path.dirname(ta) == str(tmp_path) and ta != str(a)
        assert a.read_text() == "old\n"  # final untouched while writing
        with open(ta, "w") as f:
            f.write("new a\n")
        with open(tb, "w") as f:
            f.write("new b\n")
        assert not b.exists()
    assert a.read_text() == "new a\n" and b.read_text() == "new b\n"
    assert _listing(tmp_path) == ["x.source", "x.target"]  # no temp left
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(b).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_atomic_outputs_failure_leaves_nothing(tmp_path):
    a, b = tmp_path / "x.source", tmp_path / "x.target"
    a.write_text("old\n")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_outputs([a, b]) as (ta, tb):
            with open(ta, "w") as f:
                f.write("half")
            raise RuntimeError("boom")
    assert a.read_text() == "old\n"  # previous output intact
    assert _listing(tmp_path) == ["x.source"]  # no target, no temps


def test_atomic_outputs_failure_removes_dirs_it_created(tmp_path):
    out = tmp_path / "new" / "deeper" / "f.txt"
    with pytest.raises(KeyboardInterrupt):
        with atomic_outputs([out]) as (t,):
            assert os.path.isdir(tmp_path / "new" / "deeper")
            raise KeyboardInterrupt
    assert _listing(tmp_path) == []


def test_atomic_outputs_rejects_duplicates(tmp_path):
    with pytest.raises(ValueError, match="duplicate"):
        with atomic_outputs([tmp_path / "a", tmp_path / "a"]):
            pass


# --------------------------------------------------------------------- reading

def _write_lines(path, lines: list[bytes], gz=False):
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")


@pytest.mark.parametrize("gz", [False, True])
def test_iter_jsonl_streams_records_with_line_numbers(tmp_path, gz):
    path = tmp_path / ("d.jsonl.gz" if gz else "d.jsonl")
    _write_lines(path, [b'{"a": 1}', b"", b'{"a": "\xc3\xa9t\xc3\xa9"}'], gz=gz)
    assert list(iter_jsonl(path)) == [(1, {"a": 1}), (3, {"a": "\u00e9t\u00e9"})]
    assert [n for n, _ in iter_lines(path)] == [1, 2, 3]


@pytest.mark.parametrize("raw, reason, field, message", [
    (b'{"a": 1,}', "malformed_json", "<line>", "malformed JSON"),
    (b'{"a": "caf\xe9"}', "non_utf8", "a", "invalid UTF-8 byte 0xe9 at byte offset 10"),
    (b'{"a": 1, "b": ["x", "caf\xe9"]}', "non_utf8", "b", "invalid UTF-8 byte 0xe9"),
    (b'{"a": "caf\xe9}', "non_utf8", "<line>", "invalid UTF-8 byte 0xe9"),  # also not JSON
    (b"[1, 2]", "not_an_object", "<line>", "expected a JSON object, got list"),
])
def test_iter_jsonl_bad_line_raises_with_file_and_line(tmp_path, raw, reason, field, message):
    path = tmp_path / "d.jsonl"
    _write_lines(path, [b'{"ok": true}', raw, b'{"ok": false}'])
    with pytest.raises(InputError) as info:
        list(iter_jsonl(path))
    e = info.value
    assert (e.line, e.reason, e.field) == (2, reason, field)
    assert str(e).startswith(f"{path}:2: field '{field}': ") and message in str(e)


def test_iter_jsonl_on_error_reports_and_continues(tmp_path):
    path = tmp_path / "d.jsonl"
    _write_lines(path, [b"{oops", b'{"ok": 1}', b"\xff\xfe"])
    errors = []
    assert list(iter_jsonl(path, on_error=errors.append)) == [(2, {"ok": 1})]
    assert [(e.line, e.reason) for e in errors] == [(1, "malformed_json"), (3, "non_utf8")]


def test_parse_jsonl_line_matches_json_loads():
    raw = json.dumps({"x": ["a\nb", 1.5, None]}).encode()
    assert parse_jsonl_line("f", 1, raw) == json.loads(raw)


# --------------------------------------------------------------------- require

def test_require_returns_valid_values():
    rec = {"s": "x", "l": ["a", "b"], "n": 3}
    assert require(rec, "s", str, "f", 1) == "x"
    assert require(rec, "l", list, "f", 1, item_type=str) == ["a", "b"]
    assert require(rec, "n", (int, float), "f", 1) == 3


@pytest.mark.parametrize("record, field, types, item_type, reason, bad_field, message", [
    ({}, "a", str, None, "missing_field", "a", "missing required field"),
    ({"a": None}, "a", str, None, "missing_field", "a", "missing required field"),
    ({"a": "text"}, "a", list, None, "wrong_type", "a", "expected list, got string"),
    ({"a": True}, "a", int, None, "wrong_type", "a", "expected integer, got boolean"),
    ({"a": ["x", 3]}, "a", list, str, "wrong_type", "a[1]", "expected string, got integer"),
    ({"a": ["x", None]}, "a", list, str, "wrong_type", "a[1]", "expected string, got null"),
])
def test_require_errors(record, field, types, item_type, reason, bad_field, message):
    with pytest.raises(InputError) as info:
        require(record, field, types, "in.jsonl", 5, item_type=item_type)
    e = info.value
    assert (e.reason, e.field, e.line) == (reason, bad_field, 5)
    assert str(e) == f"in.jsonl:5: field '{bad_field}': {message}"


def test_normalize_whitespace_puts_text_on_one_line():
    assert normalize_whitespace("  a\tb\n\nc\r\nd\u2028e\x0bf\u00a0g  ") == "a b c d e f g"
    assert normalize_whitespace(" \n\t ") == ""


# --------------------------------------------------------------------- Report

def test_report_counts_and_summary(tmp_path):
    r = Report("arxiv train")
    r.keep()
    r.keep(2)
    r.skip(InputError("f", 4, "abstract_text", "empty after cleaning", "empty_field"))
    r.skip(InputError("f", 9, "abstract_text", "empty after cleaning", "empty_field"))
    r.skip(InputError("f", 6, "<line>", "malformed JSON", "malformed_json"))
    assert (r.kept, r.total, r.skipped["empty_field"]) == (3, 6, 2)
    assert r.summary() == "arxiv train: kept 3, skipped 3 of 6 records (empty_field: 2, malformed_json: 1)"
    out = tmp_path / "reports" / "train.json"
    r.write_json(out)
    d = json.loads(out.read_text())
    assert d["kept"] == 3 and d["skipped"] == 3 and d["total"] == 6
    assert d["skipped_by_reason"] == {"empty_field": 2, "malformed_json": 1}
    assert d["examples"]["empty_field"] == "f:4: field 'abstract_text': empty after cleaning"


def test_report_summary_without_skips():
    r = Report()
    r.keep(2)
    assert r.summary() == "kept 2, skipped 0 of 2 records"


# --------------------------------------------------------------------- parallel_map

def _square(x: int) -> int:
    return x * x


def _fail_on_7(x: int) -> int:
    if x == 7:
        raise InputError("f", x, "v", "seven", "bad")
    return x


@pytest.mark.parametrize("workers", [1, 2])
def test_parallel_map_is_ordered(workers):
    xs = range(500)
    assert list(parallel_map(_square, xs, workers=workers, chunksize=7, progress=False)) == [x * x for x in xs]


def test_parallel_map_progress_bar_goes_to_stderr(capsys):
    assert list(parallel_map(_square, range(5), workers=1, desc="sq", total=5)) == [0, 1, 4, 9, 16]
    out, err = capsys.readouterr()
    assert out == "" and "sq" in err and "5/5" in err


def test_parallel_map_streams_and_stops_early():
    pulled = itertools.count()

    def source():
        for i in itertools.count():  # infinite input
            next(pulled)
            yield i

    workers, chunksize = 2, 4
    results = parallel_map(_square, source(), workers=workers, chunksize=chunksize, progress=False)
    first = [next(results) for _ in range(20)]
    assert first == [i * i for i in range(20)]
    # bounded read-ahead: never more than workers*chunksize*4 items in flight (+ one chunk)
    assert next(pulled) <= 20 + workers * chunksize * 4 + chunksize + 1
    results.close()  # must terminate the pool without hanging


def test_parallel_map_propagates_worker_errors():
    with pytest.raises(InputError, match="seven"):
        list(parallel_map(_fail_on_7, range(20), workers=2, chunksize=2, progress=False))


# --------------------------------------------------------------------- broken .gz inputs

def test_cut_gzip_names_file_and_last_good_line(tmp_path):
    lines = [json.dumps({"id": i, "text": f"record {i} " * 20}).encode() for i in range(2000)]
    data = gzip.compress(b"\n".join(lines) + b"\n")
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])  # an interrupted download
    got = []
    with pytest.raises(InputError) as err:
        for line_no, raw in iter_lines(path):
            got.append(raw)
    assert got == lines[: len(got)] and 0 < len(got) < len(lines)  # every line handed out is whole
    assert str(err.value) == (f"{path}:{len(got) + 1}: field '<file>': gzip data cut short or corrupt "
                              f"(Compressed file ended before the end-of-stream marker was reached); "
                              f"the last good line is {len(got)}")
    assert err.value.reason == "bad_gzip"


def test_not_gzip_names_the_file(tmp_path):
    path = tmp_path / "plain.jsonl.gz"
    path.write_bytes(b'{"id": 1}\n')
    with pytest.raises(InputError) as err:
        list(iter_jsonl(path))
    assert str(err.value) == (f"{path}:1: field '<file>': not a gzip file (Not a gzipped file (b'{{\"')); "
                              "no line could be read")


def test_atomic_outputs_unwritable_place_fails_at_entry(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    entered = []
    with pytest.raises(NotADirectoryError, match=f"^cannot write {blocker}/out.txt: {blocker} is not a directory$"):
        with atomic_outputs([tmp_path / "a.txt", blocker / "out.txt"]):
            entered.append(True)
    assert not entered and sorted(os.listdir(tmp_path)) == ["file"]
