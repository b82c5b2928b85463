"""Tests for fairseq_poolingformer.preprocess.arxiv: real samples round trip, bad input, atomicity, report counts."""
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fairseq_poolingformer.preprocess import arxiv
from fairseq_poolingformer.preprocess.arxiv import clean_abstract, clean_article, convert_file

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "arxiv"


def _records(name: str) -> list[dict]:
    with open(DATA / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _reference(record: dict) -> tuple[str, str]:
    """Independent reference: whitespace words of all sentences, tags dropped as tokens."""
    source = " ".join(w for s in record["article_text"] for w in s.split())
    target = " ".join(w for s in record["abstract_text"] for w in s.split() if w not in ("<S>", "</S>"))
    return source, target


def _lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    assert text.endswith("\n")
    return text[:-1].split("\n")


def _write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


GOOD = [json.dumps(r).encode() for r in _records("train.txt")]


# ----------------------------------------------------------------- real samples

@pytest.mark.parametrize("name, workers", [("train.txt", 1), ("val.txt", 2)])
def test_real_samples_round_trip(tmp_path, name, workers):
    records = _records(name)
    report = convert_file(str(DATA / name), str(tmp_path), "train", workers=workers,
                          write_ids=True, progress=False)
    assert (report.kept, report.total) == (len(records), len(records)) == (2, 2)
    sources, targets = _lines(tmp_path / "train.source"), _lines(tmp_path / "train.target")
    assert [(s, t) for s, t in zip(sources, targets)] == [_reference(r) for r in records]
    assert _lines(tmp_path / "train.id") == [r["article_id"] for r in records]
    for line in sources + targets:
        assert line and "\t" not in line and "<S>" not in line and "</S>" not in line
        assert line == line.strip() and "  " not in line
    assert sorted(os.listdir(tmp_path)) == ["train.id", "train.source", "train.target"]


def test_gzip_input(tmp_path):
    gz = tmp_path / "val.txt.gz"
    gz.write_bytes(gzip.compress((DATA / "val.txt").read_bytes()))
    convert_file(str(gz), str(tmp_path / "out"), "valid", progress=False)
    assert _lines(tmp_path / "out" / "valid.target") == [_reference(r)[1] for r in _records("val.txt")]


def test_max_source_words_truncates(tmp_path):
    convert_file(str(DATA / "train.txt"), str(tmp_path), "train", max_source_words=100, progress=False)
    for line, record in zip(_lines(tmp_path / "train.source"), _records("train.txt")):
        assert line.split(" ") == _reference(record)[0].split(" ")[:100]


def test_cleaning_rules():
    assert clean_article(["a  b\n", "\tc\u2028d ", ""]) == "a b c d"
    assert clean_abstract(["<S> first one . </S>", "<S>second\n. </S>"]) == "first one . second ."
    assert clean_article(["one two three"], max_words=2) == "one two"


def test_cli_subprocess(tmp_path):
    out = tmp_path / "text"
    proc = subprocess.run(
        [sys.executable, "-m", "fairseq_poolingformer.preprocess.arxiv", "--input", str(DATA / "train.txt"), "--output-dir",
         str(out), "--split", "train", "--workers", "2", "--report-json", str(tmp_path / "r.json")],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "kept 2, skipped 0 of 2 records" in proc.stderr
    assert json.loads((tmp_path / "r.json").read_text())["kept"] == 2
    assert len(_lines(out / "train.source")) == 2


# ----------------------------------------------------------------- bad input, one test each

def _check_bad(tmp_path, bad_line: bytes, field: str, reason: str, message: str, capsys):
    """A file good, BAD, good: `fail` writes nothing and names file:2:field; `skip` keeps 2."""
    src = _write(tmp_path / "in.jsonl", [GOOD[0], bad_line, GOOD[1]])
    out = tmp_path / "out"
    rc = arxiv.main(["--input", str(src), "--output-dir", str(out), "--split", "train", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"error: {src}:2: field '{field}': {message}" in err
    assert "no output written" in err
    assert not out.exists()  # nothing written, not even the directory

    rc = arxiv.main(["--input", str(src), "--output-dir", str(out), "--split", "train", "--no-progress",
                     "--on-error", "skip", "--report-json", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert rc == 0
    assert f"kept 2, skipped 1 of 3 records ({reason}: 1)" in err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["skipped_by_reason"] == {reason: 1}
    assert report["examples"][reason].startswith(f"{src}:2: field '{field}': ")
    expected = [_reference(r) for r in _records("train.txt")]
    assert list(zip(_lines(out / "train.source"), _lines(out / "train.target"))) == expected


def test_malformed_json(tmp_path, capsys):
    _check_bad(tmp_path, GOOD[0][:-10], "<line>", "malformed_json", "malformed JSON", capsys)


def test_missing_field(tmp_path, capsys):
    rec = _records("train.txt")[0]
    del rec["abstract_text"]
    _check_bad(tmp_path, json.dumps(rec).encode(), "abstract_text", "missing_field",
               "missing required field", capsys)


def test_null_field(tmp_path, capsys):
    rec = dict(_records("train.txt")[0], article_text=None)
    _check_bad(tmp_path, json.dumps(rec).encode(), "article_text", "missing_field",
               "missing required field", capsys)


def test_empty_abstract(tmp_path, capsys):
    rec = dict(_records("train.txt")[0], abstract_text=["<S> </S>", "  "])
    _check_bad(tmp_path, json.dumps(rec).encode(), "abstract_text", "empty_field",
               "empty abstract (no text after cleaning)", capsys)


def test_empty_article(tmp_path, capsys):
    rec = dict(_records("train.txt")[0], article_text=[])
    _check_bad(tmp_path, json.dumps(rec).encode(), "article_text", "empty_field",
               "empty article (no text after cleaning)", capsys)


def test_non_utf8(tmp_path, capsys):
    rec = dict(_records("train.txt")[0], article_text=["caf\u00e9 au lait ."])
    bad = json.dumps(rec, ensure_ascii=False).encode().replace("\u00e9".encode(), b"\xe9")
    _check_bad(tmp_path, bad, "article_text", "non_utf8", "invalid UTF-8 byte 0xe9", capsys)


def test_wrong_type(tmp_path, capsys):
    rec = dict(_records("train.txt")[0], article_text="a string, not a list of sentences")
    _check_bad(tmp_path, json.dumps(rec).encode(), "article_text", "wrong_type",
               "expected list, got string", capsys)


def test_wrong_item_type(tmp_path, capsys):
    rec = dict(_records("train.txt")[0], abstract_text=["<S> ok . </S>", 42])
    _check_bad(tmp_path, json.dumps(rec).encode(), "abstract_text[1]", "wrong_type",
               "expected string, got integer", capsys)


def test_not_an_object(tmp_path, capsys):
    _check_bad(tmp_path, b'["article_text", "abstract_text"]', "<line>", "not_an_object",
               "expected a JSON object, got list", capsys)


# ----------------------------------------------------------------- atomicity and counts

@pytest.mark.parametrize("workers", [1, 2])
def test_failure_mid_run_keeps_previous_outputs_and_leaves_no_temp(tmp_path, workers):
    out = tmp_path / "out"
    convert_file(str(DATA / "val.txt"), str(out), "train", progress=False)
    before = {p: (out / p).read_bytes() for p in os.listdir(out)}
    # many good records first, so the temp files already hold data when the bad line comes
    src = _write(tmp_path / "in.jsonl", GOOD * 20 + [b"{not json"] + GOOD)
    with pytest.raises(arxiv.InputError) as info:
        convert_file(str(src), str(out), "train", workers=workers, progress=False)
    assert info.value.line == 41 and info.value.reason == "malformed_json"
    assert {p: (out / p).read_bytes() for p in os.listdir(out)} == before  # no temp, old outputs intact


def test_skip_report_counts_and_order(tmp_path):
    rec = _records("train.txt")[0]
    bad = [
        b"{broken",
        json.dumps({k: v for k, v in rec.items() if k != "article_text"}).encode(),
        json.dumps(dict(rec, abstract_text=[])).encode(),
        json.dumps(dict(rec, abstract_text=[])).encode(),
        b'{"article_text": ["x"], "abstract_text": ["\xff"]}',
    ]
    lines = [GOOD[0], bad[0], GOOD[1], b"", bad[1], bad[2], GOOD[0], bad[3], bad[4], GOOD[1]]
    src = _write(tmp_path / "in.jsonl", lines)
    report = convert_file(str(src), str(tmp_path / "o"), "train", workers=2, on_error="skip", progress=False)
    assert report.kept == 4 and report.total == 9  # the blank line is not a record
    assert dict(report.skipped) == {"malformed_json": 1, "missing_field": 1, "empty_field": 2, "non_utf8": 1}
    refs = [_reference(r) for r in _records("train.txt")]
    assert list(zip(_lines(tmp_path / "o" / "train.source"), _lines(tmp_path / "o" / "train.target"))) \
        == [refs[0], refs[1], refs[0], refs[1]]


def test_all_records_bad_is_an_error(tmp_path):
    src = _write(tmp_path / "in.jsonl", [b"{x", b"{y"])
    with pytest.raises(arxiv.InputError, match="no usable record"):
        convert_file(str(src), str(tmp_path / "o"), "train", on_error="skip", progress=False)
    assert not (tmp_path / "o").exists()


def test_missing_input_file(tmp_path, capsys):
    rc = arxiv.main(["--input", str(tmp_path / "nope.txt"), "--output-dir", str(tmp_path / "o"),
                     "--split", "train", "--no-progress"])
    assert rc == 1 and "nope.txt" in capsys.readouterr().err and not (tmp_path / "o").exists()


# ================================================================= BPE (fairseq_poolingformer.preprocess.bpe)

from types import SimpleNamespace  # noqa: E402

from fairseq_poolingformer.preprocess import bpe  # noqa: E402

GPT2 = REPO / "tests" / "data" / "gpt2_bpe"
SPM_MODEL = REPO / "tests" / "data" / "sentencepiece" / "test_model.model"


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory) -> Path:
    """The bundled papers as text: train.{source,target} and valid.{source,target}."""
    d = tmp_path_factory.mktemp("text")
    convert_file(str(DATA / "train.txt"), str(d), "train", progress=False)
    convert_file(str(DATA / "val.txt"), str(d), "valid", progress=False)
    return d


def _text_files(d: Path) -> list[str]:
    return [str(d / f"{s}.{side}") for s in ("train", "valid") for side in ("source", "target")]


def test_gpt2_ids_equal_fairseq_encoder_and_decode_back(text_dir, tmp_path):
    from fairseq.data import Dictionary
    from fairseq.examples.roberta.multiprocessing_bpe_encoder import MultiprocessingEncoder

    inputs = _text_files(text_dir)
    outputs = [str(tmp_path / Path(p).name) for p in inputs]
    backend = bpe.gpt2_backend(str(GPT2 / "encoder.json"), str(GPT2 / "vocab.bpe"))
    stats = bpe.process_files(backend, inputs, outputs, workers=2, progress=False)
    assert [s.lines for s in stats] == [2, 2, 2, 2]

    # reference: Fairseq's own multiprocessing_bpe_encoder, in-process
    ref = MultiprocessingEncoder(SimpleNamespace(encoder_json=str(GPT2 / "encoder.json"),
                                                 vocab_bpe=str(GPT2 / "vocab.bpe"), keep_empty=False))
    ref.initializer()
    dictionary = Dictionary.load(str(GPT2 / "dict.txt"))
    assert len(dictionary) == 50264  # 4 specials + BART's 50,260 lines
    for inp, out in zip(inputs, outputs):
        status, expected = ref.encode_lines(_lines(Path(inp)))
        assert status == "PASS" and _lines(Path(out)) == expected
        for text, ids in zip(_lines(Path(inp)), _lines(Path(out))):
            assert bpe.decode_line(backend, ids) == text  # exact round trip
            assert all(dictionary.index(t) != dictionary.unk() for t in ids.split())

    # the CLI --decode gives the text files back
    decoded = [str(tmp_path / f"dec{i}") for i in range(len(outputs))]
    assert bpe.main(["--bpe", "gpt2", "--encoder-json", str(GPT2 / "encoder.json"), "--vocab-bpe",
                     str(GPT2 / "vocab.bpe"), "--decode", "--no-progress",
                     "--inputs", *outputs, "--outputs", *decoded]) == 0
    for inp, dec in zip(inputs, decoded):
        assert Path(dec).read_bytes() == Path(inp).read_bytes()


def test_sentencepiece_given_model_matches_library(text_dir, tmp_path):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(SPM_MODEL))
    inputs = _text_files(text_dir)[:2]
    outputs = [str(tmp_path / "s"), str(tmp_path / "t")]
    backend = bpe.sentencepiece_backend(str(SPM_MODEL))
    bpe.process_files(backend, inputs, outputs, workers=2, progress=False)
    for inp, out in zip(inputs, outputs):
        for text, pieces in zip(_lines(Path(inp)), _lines(Path(out))):
            assert pieces.split(" ") == sp.encode(text, out_type=str)
            assert sp.decode_pieces(pieces.split(" ")) == text


def test_sentencepiece_train_round_trip_and_dict(text_dir, tmp_path):
    inputs = _text_files(text_dir)
    outputs = [str(tmp_path / "bpe" / Path(p).name) for p in inputs]
    model = tmp_path / "bpe" / "spm.model"
    rc = bpe.main(["--bpe", "sentencepiece", "--sentencepiece-train", "--vocab-size", "400",
                   "--sentencepiece-model", str(model), "--train-inputs", *inputs[:2],
                   "--write-dict", str(tmp_path / "bpe" / "dict.txt"), "--workers", "2", "--no-progress",
                   "--inputs", *inputs, "--outputs", *outputs])
    assert rc == 0
    names = sorted(os.listdir(tmp_path / "bpe"))
    assert names == sorted(["spm.model", "spm.vocab", "dict.txt"] + [Path(p).name for p in inputs])  # no temps
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=str(model))
    dict_pieces = [line.rsplit(" ", 1)[0] for line in _lines(tmp_path / "bpe" / "dict.txt")]
    assert len(dict_pieces) == sp.get_piece_size() - 3  # all but <unk> <s> </s>
    assert "<0xE9>" in dict_pieces  # byte fallback pieces: unseen characters never become <unk>
    backend = bpe.sentencepiece_backend(str(model))
    for inp, out in zip(inputs, outputs):  # valid was not in training: still exact
        for text, pieces in zip(_lines(Path(inp)), _lines(Path(out))):
            assert bpe.decode_line(backend, pieces) == text
            assert set(pieces.split(" ")) <= set(dict_pieces)


@pytest.mark.parametrize("bad, field_msg", [
    (b"", "empty line"),
    (b"caf\xe9", "invalid UTF-8 byte 0xe9"),
])
def test_bpe_bad_line_writes_no_output(tmp_path, capsys, bad, field_msg):
    good = _write(tmp_path / "a.txt", [b"fine text", b"more text"])
    broken = _write(tmp_path / "b.txt", [b"ok", bad, b"ok"])
    out = tmp_path / "out"
    rc = bpe.main(["--bpe", "sentencepiece", "--sentencepiece-model", str(SPM_MODEL), "--no-progress",
                   "--inputs", str(good), str(broken), "--outputs", str(out / "a"), str(out / "b")])
    err = capsys.readouterr().err
    assert rc == 1 and f"error: {broken}:2: field '<line>': {field_msg}" in err
    assert not out.exists()  # neither output, even though a.txt was fine


def test_bpe_keep_empty(tmp_path):
    src = _write(tmp_path / "a.txt", [b"x", b"", b"y"])
    backend = bpe.gpt2_backend(str(GPT2 / "encoder.json"), str(GPT2 / "vocab.bpe"))
    bpe.process_files(backend, [str(src)], [str(tmp_path / "o")], keep_empty=True, progress=False)
    assert _lines(tmp_path / "o") == ["87", "", "88"]


def test_gpt2_decode_bad_id_is_an_input_error(tmp_path):
    src = _write(tmp_path / "ids.txt", [b"87 88", b"87 notanid"])
    backend = bpe.gpt2_backend(str(GPT2 / "encoder.json"), str(GPT2 / "vocab.bpe"))
    with pytest.raises(bpe.InputError) as info:
        bpe.process_files(backend, [str(src)], [str(tmp_path / "o")], decode=True, progress=False)
    assert info.value.line == 2 and info.value.reason == "bad_token"
    assert not (tmp_path / "o").exists()


def test_gpt2_missing_files_never_download(tmp_path, capsys):
    rc = bpe.main(["--bpe", "gpt2", "--encoder-json", str(tmp_path / "encoder.json"), "--vocab-bpe",
                   str(GPT2 / "vocab.bpe"), "--inputs", str(GPT2 / "dict.txt"), "--outputs", str(tmp_path / "o")])
    assert rc == 1 and "GPT-2 BPE file not found" in capsys.readouterr().err


# ================================================================= recipes/arxiv/binarize.sh

def _run_recipe(raw: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(["bash", str(REPO / "recipes" / "arxiv" / "binarize.sh"), str(raw), str(out), *extra,
                           "--workers", "2"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory) -> Path:
    """train.txt, val.txt (the samples) and test.jsonl.gz = train + one bad line (skipped by default)."""
    d = tmp_path_factory.mktemp("raw")
    (d / "train.txt").write_bytes((DATA / "train.txt").read_bytes())
    (d / "val.txt").write_bytes((DATA / "val.txt").read_bytes())
    (d / "test.jsonl.gz").write_bytes(gzip.compress((DATA / "train.txt").read_bytes() + b"{broken\n"))
    return d


def _expected(split: str) -> list[tuple[str, str]]:
    return [_reference(r) for r in _records({"train": "train.txt", "valid": "val.txt", "test": "train.txt"}[split])]


def _load_bin(bin_dir: Path, split: str, side: str):
    from fairseq.data import Dictionary, data_utils
    dictionary = Dictionary.load(str(bin_dir / f"dict.{side}.txt"))
    dataset = data_utils.load_indexed_dataset(str(bin_dir / f"{split}.source-target.{side}"), dictionary)
    assert dataset is not None
    return dictionary, dataset


def _check_binarized(out: Path, decode) -> None:
    for split in ("train", "valid", "test"):
        expected = _expected(split)
        for k, side in enumerate(("source", "target")):
            dictionary, dataset = _load_bin(out / "bin", split, side)
            assert len(dataset) == len(expected) == 2
            for i, (src_tgt) in enumerate(expected):
                tokens = dataset[i]
                assert tokens[-1].item() == dictionary.eos()
                assert dictionary.unk() not in tokens.tolist()
                assert decode(dictionary.string(tokens)) == src_tgt[k]
    report = json.loads((out / "reports" / "test.json").read_text())
    assert (report["kept"], report["skipped_by_reason"]) == (2, {"malformed_json": 1})


def test_recipe_gpt2_end_to_end(raw_dir, tmp_path):
    out = tmp_path / "arxiv"
    proc = _run_recipe(raw_dir, out, "--bpe", "gpt2", "--encoder-json", str(GPT2 / "encoder.json"),
                       "--vocab-bpe", str(GPT2 / "vocab.bpe"), "--dict", str(GPT2 / "dict.txt"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "kept 2, skipped 1 of 3 records (malformed_json: 1)" in proc.stderr
    backend = bpe.gpt2_backend(str(GPT2 / "encoder.json"), str(GPT2 / "vocab.bpe"))
    _check_binarized(out, lambda ids: bpe.decode_line(backend, ids))
    assert (out / "bin" / "dict.source.txt").read_text() == (GPT2 / "dict.txt").read_text()
    assert not [p for p in os.listdir(out) if p.startswith(".")]  # no temp dir left


def test_recipe_sentencepiece_end_to_end(raw_dir, tmp_path):
    out = tmp_path / "arxiv"
    proc = _run_recipe(raw_dir, out, "--bpe", "sentencepiece", "--vocab-size", "400")
    assert proc.returncode == 0, proc.stderr[-3000:]
    backend = bpe.sentencepiece_backend(str(out / "bpe" / "spm.model"))
    _check_binarized(out, lambda pieces: bpe.decode_line(backend, pieces))


def test_recipe_fail_mode_writes_no_binaries(raw_dir, tmp_path):
    out = tmp_path / "arxiv"
    proc = _run_recipe(raw_dir, out, "--bpe", "sentencepiece", "--vocab-size", "400", "--on-error", "fail")
    assert proc.returncode != 0
    assert f"{raw_dir / 'test.jsonl.gz'}:3: field '<line>': malformed JSON" in proc.stderr
    assert not (out / "bin").exists() and not (out / "text" / "test.source").exists()


def test_sentencepiece_dict_loads_in_fairseq(tmp_path):
    """The bundled model has a "\\r" piece: the written dict must still load, one entry per line."""
    from fairseq.data import Dictionary

    from fairseq_poolingformer.preprocess.bpe import write_fairseq_dict

    model = Path(__file__).parent / "data" / "sentencepiece" / "test_model.model"
    n = write_fairseq_dict(str(model), str(tmp_path / "dict.txt"))
    vocab = Dictionary.load(str(tmp_path / "dict.txt"))
    assert len(vocab) == vocab.nspecial + n
    assert all(not any(ch.isspace() for ch in vocab[i]) for i in range(vocab.nspecial, len(vocab)))


# ------------------------------------------------ held-out splits, dictionaries that do not fit

SPM = REPO / "tests" / "data" / "sentencepiece" / "test_model.model"


@pytest.fixture(scope="module")
def held_out_dir(tmp_path_factory) -> Path:
    """A raw directory holding only a test split: the 2 real validation papers (the recipe runs
    below keep their first 300 words: enough to measure, and fast)."""
    d = tmp_path_factory.mktemp("held_out")
    (d / "test.txt").write_bytes((DATA / "val.txt").read_bytes())
    return d


def test_recipe_binarizes_a_test_split_alone_against_a_given_dict(held_out_dir, tmp_path):
    """A held-out test set binarizes against BART's GPT-2 dictionary (sentencepiece with a trained
    model: tests/test_long_references.py)."""
    backend = bpe.gpt2_backend(str(GPT2 / "encoder.json"), str(GPT2 / "vocab.bpe"))
    out = tmp_path / "gpt2"
    proc = _run_recipe(held_out_dir, out, "--bpe", "gpt2", "--encoder-json", str(GPT2 / "encoder.json"),
                       "--vocab-bpe", str(GPT2 / "vocab.bpe"), "--dict", str(GPT2 / "dict.txt"),
                       "--max-source-words", "300")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no train split" in proc.stderr and "<unk> rate: test.source 0.00%, test.target 0.00%" in proc.stderr
    assert sorted(p.name for p in (out / "bin").iterdir() if not p.name.startswith("dict.")) == [
        "preprocess.log"] + [f"test.source-target.{side}.{ext}" for side in ("source", "target") for ext in ("bin", "idx")]
    expected = [_reference(r) for r in _records("val.txt")]
    for k, side in enumerate(("source", "target")):
        dictionary, dataset = _load_bin(out / "bin", "test", side)
        assert [bpe.decode_line(backend, dictionary.string(dataset[i])) for i in range(2)] == \
            [" ".join(e[k].split()[:300]) if side == "source" else e[k] for e in expected]


def test_recipe_training_a_sentencepiece_model_still_needs_train(held_out_dir, tmp_path):
    proc = _run_recipe(held_out_dir, tmp_path / "out", "--bpe", "sentencepiece", "--vocab-size", "400")
    assert proc.returncode == 1
    assert (f"binarize.sh: no train.{{txt,jsonl}}[.gz] in {held_out_dir}: --vocab-size trains the sentencepiece "
            "model on it (binarize other splits with an existing model: --sentencepiece-model M --dict D)") in proc.stderr
    assert not (tmp_path / "out").exists()


def test_recipe_dict_of_another_bpe_fails_and_writes_no_binaries(held_out_dir, tmp_path):
    """GPT-2 ids against a dictionary that is not GPT-2's: ~98% <unk>; refused, naming the files."""
    from fairseq_poolingformer.preprocess.bpe import write_fairseq_dict

    wrong = tmp_path / "spm_dict.txt"
    write_fairseq_dict(str(SPM), str(wrong))
    enc, voc = GPT2 / "encoder.json", GPT2 / "vocab.bpe"
    out = tmp_path / "out"
    proc = _run_recipe(held_out_dir, out, "--bpe", "gpt2", "--encoder-json", str(enc), "--vocab-bpe", str(voc),
                       "--dict", str(wrong), "--max-source-words", "300")
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 2, proc.stderr[-3000:]
    import re
    m = re.fullmatch(r"error: (\d+\.\d)% of the (\d+) tokens of test\.source became <unk> \(limit 1%, "
                     r"--max-unk-rate\): the dictionary (.*) does not belong to the BPE \(--encoder-json (.*) "
                     r"and --vocab-bpe (.*)\)", lines[0])
    assert m and float(m[1]) > 90 and m.group(3, 4, 5) == (str(wrong), str(enc), str(voc)), lines[0]
    assert f"binarize.sh: nothing written to {out / 'bin'}" in proc.stderr
    assert not (out / "bin").exists() and not [p for p in os.listdir(out) if p.startswith(".")]


def test_unk_rate_counts_against_a_hand_built_split(tmp_path, capsys):
    """Known tokens: source 2 <unk> of 4 (50%), target none; the limit is a flag."""
    import numpy as np
    import torch
    from fairseq.data import Dictionary
    from fairseq.data.indexed_dataset import MMapIndexedDatasetBuilder

    from fairseq_poolingformer.preprocess import unk_rate

    d = Dictionary()
    for w in ("a", "b", "c", "d"):
        d.add_symbol(w)
    for side, examples in (("source", [[d.index("a"), d.unk(), d.eos()], [d.unk(), d.index("b"), d.eos()]]),
                           ("target", [[d.index("c"), d.index("d"), d.eos()]])):
        d.save(str(tmp_path / f"dict.{side}.txt"))
        prefix = tmp_path / f"test.source-target.{side}"
        builder = MMapIndexedDatasetBuilder(str(prefix) + ".bin", dtype=np.uint16)
        for ex in examples:
            builder.add_item(torch.tensor(ex))
        builder.finalize(str(prefix) + ".idx")
    assert unk_rate.main([str(tmp_path), "--splits", "test", "--dict", "D", "--bpe-files", "B"]) == 1
    assert capsys.readouterr().err == (
        "<unk> rate: test.source 50.00%, test.target 0.00%\n"
        "error: 50.0% of the 4 tokens of test.source became <unk> (limit 1%, --max-unk-rate): the dictionary D "
        "does not belong to the BPE (B)\n")
    assert unk_rate.main([str(tmp_path), "--splits", "test", "--max-unk-rate", "0.5"]) == 0


def test_gpt2_files_swapped_are_named(tmp_path, capsys):
    enc, voc = GPT2 / "encoder.json", GPT2 / "vocab.bpe"
    (tmp_path / "t.txt").write_text("hello\n")
    rc = bpe.main(["--bpe", "gpt2", "--encoder-json", str(voc), "--vocab-bpe", str(enc),
                   "--inputs", str(tmp_path / "t.txt"), "--outputs", str(tmp_path / "o")])
    assert rc == 1 and not (tmp_path / "o").exists()
    assert capsys.readouterr().err == (
        f"error: GPT-2 BPE files look swapped: --encoder-json {voc} is not JSON and --vocab-bpe {enc} is: pass "
        "encoder.json as --encoder-json and vocab.bpe as --vocab-bpe; no output written\n")
    broken = tmp_path / "encoder.json"
    broken.write_bytes(enc.read_bytes()[:5000])  # a cut download
    with pytest.raises(ValueError, match=f"^{broken}: not a GPT-2 encoder.json \\(invalid JSON: "):
        bpe.gpt2_backend(str(broken), str(voc))


def test_truncate_lines_cuts_in_place(tmp_path, capsys):
    path = tmp_path / "train.target"
    path.write_text("1 2 3 4 5\n6 7\n8 9 10\n")
    assert bpe.main(["--truncate-lines", "4", "--inputs", str(path)]) == 0
    assert path.read_text() == "1 2 3\n6 7\n8 9 10\n"
    assert f"truncated 1 of 3 lines of {path} to 3 tokens (+ </s> = 4 positions)" in capsys.readouterr().err


@pytest.mark.parametrize("workers", [1, 2])
def test_cut_gzip_input_is_an_error_naming_the_file(tmp_path, capsys, workers):
    """Even with --on-error skip: a cut .gz is not a bad record, the run fails and writes nothing."""
    data = gzip.compress((DATA / "train.txt").read_bytes())
    path = tmp_path / "train.jsonl.gz"
    path.write_bytes(data[: len(data) * 3 // 4])
    rc = arxiv.main(["--input", str(path), "--output-dir", str(tmp_path / "out"), "--split", "train",
                     "--workers", str(workers), "--on-error", "skip", "--no-progress"])
    assert rc == 1 and not (tmp_path / "out").exists()
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}:")
    assert "field '<file>': gzip data cut short or corrupt (Compressed file ended before the end-of-stream " \
           "marker was reached); the last good line is" in err and err.endswith("; no output written\n")


def test_cut_gzip_error_does_not_suggest_skipping(tmp_path, capsys):
    """With the default --on-error fail, a broken file gets no '--on-error skip' hint (no option
    can skip it); a bad record still does."""
    data = gzip.compress((DATA / "train.txt").read_bytes())
    cut = tmp_path / "train.jsonl.gz"
    cut.write_bytes(data[: len(data) // 2])
    assert arxiv.main(["--input", str(cut), "--output-dir", str(tmp_path / "a"), "--split", "train",
                       "--workers", "1", "--no-progress"]) == 1
    assert "--on-error skip" not in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    assert arxiv.main(["--input", str(bad), "--output-dir", str(tmp_path / "b"), "--split", "train",
                       "--workers", "1", "--no-progress"]) == 1
    assert "(use --on-error skip to skip and count bad records); no output written" in capsys.readouterr().err


def test_unwritable_report_fails_before_work_and_writes_nothing(tmp_path, capsys):
    """--report-json where it cannot be written: exit 1 naming it, and no text output either."""
    blocker = tmp_path / "reports"
    blocker.write_text("a file where the report directory should be\n")
    out = tmp_path / "text"
    rc = arxiv.main(["--input", str(DATA / "train.txt"), "--output-dir", str(out), "--split", "train",
                     "--report-json", str(blocker / "train.json"), "--no-progress"])
    assert rc == 1
    assert capsys.readouterr().err == (f"error: cannot write {blocker / 'train.json'}: {blocker} is not a "
                                       "directory; no output written\n")
    assert not out.exists()
    # writable: outputs and report appear together
    rc = arxiv.main(["--input", str(DATA / "train.txt"), "--output-dir", str(out), "--split", "train",
                     "--report-json", str(tmp_path / "r" / "train.json"), "--no-progress"])
    assert rc == 0 and json.loads((tmp_path / "r" / "train.json").read_text())["kept"] == 2
    assert sorted(os.listdir(out)) == ["train.source", "train.target"]


def test_unk_rate_without_binaries_is_one_line(tmp_path, capsys):
    """unk_rate pointed at a directory without fairseq-preprocess's output: the missing file is
    named, exit 1, instead of Fairseq's reader's traceback."""
    from fairseq_poolingformer.preprocess import unk_rate

    with pytest.raises(SystemExit) as exit_info:
        unk_rate.main([str(tmp_path), "--splits", "train", "valid"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == (f"error: not found: {tmp_path}/train.source-target.source.idx (the "
                                       f"fairseq-preprocess output of train valid in {tmp_path})\n")


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int32", "int64"])
def test_read_index_equals_fairseqs_reader(tmp_path, dtype):
    """mmap_index reads the .idx without Fairseq: same dtype and sizes as Fairseq's own reader
    (MMapIndexedDataset.Index) on an index Fairseq's builder wrote, for every token dtype the
    builder picks by vocabulary size."""
    import numpy as np
    import torch
    from fairseq.data.indexed_dataset import MMapIndexedDataset, MMapIndexedDatasetBuilder

    from fairseq_poolingformer.preprocess.mmap_index import read_index

    prefix = tmp_path / "train.source-target.source"
    builder = MMapIndexedDatasetBuilder(str(prefix) + ".bin", dtype=getattr(np, dtype))
    lengths = [3, 1, 700, 17, 2]
    for n in lengths:
        builder.add_item(torch.arange(n) % 200)
    builder.finalize(str(prefix) + ".idx")
    ours, theirs = read_index(prefix), MMapIndexedDataset.Index(str(prefix) + ".idx")
    assert ours.dtype == theirs.dtype == getattr(np, dtype)
    assert ours.sizes.dtype == np.int32 and ours.sizes.tolist() == list(theirs.sizes) == lengths


def test_read_index_of_a_file_that_is_not_an_index(tmp_path, capsys):
    from fairseq_poolingformer.preprocess import unk_rate
    from fairseq_poolingformer.preprocess.mmap_index import read_index

    (tmp_path / "train.source-target.source.idx").write_text("source\n")  # a text file in its place
    with pytest.raises(ValueError, match=r"train.source-target.source.idx: not a fairseq-preprocess index"):
        read_index(tmp_path / "train.source-target.source")
    with pytest.raises(SystemExit) as exit_info:
        unk_rate.main([str(tmp_path), "--splits", "train"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path}/train.source-target.source.idx: not a fairseq-preprocess index")
    assert err.count("\n") == 1
