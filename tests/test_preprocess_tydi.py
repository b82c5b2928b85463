"""TyDi QA primary task -> QA windows (fairseq_poolingformer.preprocess.tydi): byte-exact round trips on the real
Korean / Thai / Arabic samples and a hand-made Japanese one, windows, bad input."""
import gzip
import json
import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from fairseq_poolingformer.preprocess import bpe
from fairseq_poolingformer.preprocess.common import InputError
from fairseq_poolingformer.preprocess.qa_tokenize import TokenizerSpec, build_tokenizer
from fairseq_poolingformer.preprocess.qa_windows import WindowConfig, process_example, run_pipeline, tokenize_example
from fairseq_poolingformer.preprocess.tydi import main, read_tydi
from record_edits import RecordEdits

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
TYDI = DATA / "tydiqa" / "small_gold_annotation.jsonl.gz"   # korean (null), thai, arabic; 3 annotations each
BPE = DATA / "gpt2_bpe"
SPM_MODEL = DATA / "sentencepiece" / "test_model.model"
GPT2_SPEC = TokenizerSpec("gpt2", str(BPE / "dict.txt"), str(BPE / "encoder.json"), str(BPE / "vocab.bpe"))


def write_spm_dict(model: Path, out: Path) -> Path:
    """XLM-R-style fairseq dict.txt for a sentencepiece model: the documented one command."""
    assert bpe.main(["--bpe", "sentencepiece", "--sentencepiece-model", str(model), "--write-dict", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    d = write_spm_dict(SPM_MODEL, tmp_path_factory.mktemp("spm") / "dict.txt")
    return {"gpt2": GPT2_SPEC,
            "spm": TokenizerSpec("sentencepiece", str(d), sentencepiece_model=str(SPM_MODEL))}


@pytest.fixture(scope="module")
def tokenizers(specs):
    return {k: build_tokenizer(v) for k, v in specs.items()}


def load_gold():
    with gzip.open(TYDI, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def stripped(raw: bytes, s: int, e: int) -> tuple[int, int]:
    """``[s, e)`` without surrounding whitespace (whitespace belongs to no unit)."""
    text = raw[s:e].decode("utf-8")
    lead = len(text) - len(text.lstrip())
    trail = len(text) - len(text.rstrip())
    return s + len(text[:lead].encode()), e - len(text[len(text) - trail:].encode())


def decoded_matches(tok, kind, ids, raw_span: bytes) -> bool:
    """Independent check that subwords spell the span (whitespace-insensitive)."""
    text = raw_span.decode("utf-8")
    if kind == "gpt2":
        out = b"".join(bytes(tok.bpe.byte_decoder[c] for c in tok.bpe.decoder[int(tok.dictionary[i])]) for i in ids)
        return out.decode("utf-8").split() == text.split()
    pieces = [tok.dictionary[i] for i in ids]
    if "<unk>" in pieces:  # the 1000-piece test model knows few non-Latin characters
        return len(ids) >= len("".join(text.split())) // 4
    return "".join(pieces).replace("\u2581", "") == unicodedata.normalize("NFKC", "".join(text.split()))


def japanese_record() -> dict:
    """Hand-made TyDi record in Japanese (no spaces; 3- and 4-byte characters)."""
    passages = ["山田太郎は東京都に住んでいる会社員です。", "彼は毎朝７時に起きて、コーヒーを飲みます☕。",
                "趣味は写真𠮷野家めぐりで、週末はカメラを持って出かける。"]
    text = "\n" + "\n".join(passages) + "\n"
    raw = text.encode()

    def span(sub, in_passage):
        base = raw.index(passages[in_passage].encode())
        s = raw.index(sub.encode(), base)
        return s, s + len(sub.encode())
    cands = [span(p, i) for i, p in enumerate(passages)]
    m0 = span("東京都", 0)
    m1 = span("７時", 1)

    def ann(ci, m=(-1, -1), yes_no="NONE"):
        return {"passage_answer": {"candidate_index": ci}, "yes_no_answer": yes_no,
                "minimal_answer": {"plaintext_start_byte": m[0], "plaintext_end_byte": m[1]}}
    return {"example_id": 77, "language": "japanese", "question_text": "山田さんはどこに住んでいますか？",
            "document_plaintext": text,
            "passage_answer_candidates": [{"plaintext_start_byte": s, "plaintext_end_byte": e} for s, e in cands],
            "annotations": [ann(-1), ann(0, m0), ann(1, m1)]}


def all_records():
    return load_gold() + [japanese_record()]


# ---------------------------------------------------------------------------
# round trips

@pytest.mark.parametrize("kind", ["gpt2", "spm"])
def test_round_trip_every_gold_span_split_mode(tokenizers, kind):
    """Korean, Thai, Arabic (real) and Japanese (hand-made): every passage candidate and every
    annotation's passage and minimal answer maps to subwords and back to exactly its bytes."""
    tok = tokenizers[kind]
    n_minimal = 0
    for line, rec in enumerate(all_records(), start=1):
        ex = read_tydi(rec, "x", line)
        raw = rec["document_plaintext"].encode("utf-8")
        doc = tokenize_example(ex, tok, split_at_answers=True)
        spans = [(c["plaintext_start_byte"], c["plaintext_end_byte"]) for c in rec["passage_answer_candidates"]]
        for a in rec["annotations"]:
            m = a["minimal_answer"]
            if m["plaintext_start_byte"] >= 0:
                spans.append((m["plaintext_start_byte"], m["plaintext_end_byte"]))
                n_minimal += 1
        for s, e in spans:
            sw = doc.subword_span(s, e)
            assert sw is not None
            assert doc.source_span(*sw) == stripped(raw, s, e), (rec["language"], s, e)
            assert decoded_matches(tok, kind, doc.ids[sw[0]:sw[1] + 1], raw[s:e])
        for s, e in doc.units:
            raw[s:e].decode("utf-8")  # units never split a character
    assert n_minimal == 3 + 3 + 2  # thai 3, arabic 3, japanese 2


def test_arabic_answer_inside_a_word_split_vs_snap(tokenizers):
    """The real Arabic annotation 0 starts inside the word نواز: ``split`` cuts the word there
    (exact), ``snap`` keeps the text's own tokenization and covers the answer."""
    tok = tokenizers["gpt2"]
    rec = load_gold()[2]
    assert rec["language"] == "arabic"
    ex = read_tydi(rec, "x", 3)
    raw = rec["document_plaintext"].encode()
    s, e = ex.annotations[0].short_spans[0]
    assert raw[s:s + 2].decode() == "ز" and raw[s - 6:s].decode() == "نوا"
    split_doc = tokenize_example(ex, tok, split_at_answers=True)
    assert split_doc.source_span(*split_doc.subword_span(s, e)) == (s, e)
    snap_doc = tokenize_example(ex, tok, split_at_answers=False)
    back = snap_doc.source_span(*snap_doc.subword_span(s, e, contained=False))
    assert back[0] < s and back[1] == e and raw[back[0]:s].decode() in ("نوا", "وا", "ا")
    # snap mode: the model input does not depend on the annotations at all
    no_gold = read_tydi({**rec, "annotations": []}, "x", 3)
    bare = tokenize_example(no_gold, tok, split_at_answers=False)
    assert (bare.units, bare.ids, bare.unit_of) == (snap_doc.units, snap_doc.ids, snap_doc.unit_of)


# ---------------------------------------------------------------------------
# the pipeline

def write_gz(path: Path, records) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


@pytest.mark.parametrize("kind", ["gpt2", "spm"])
def test_windows_on_real_and_japanese_samples(tmp_path, specs, tokenizers, kind):
    records = all_records()
    inp = write_gz(tmp_path / "in.jsonl.gz", records)
    cfg = WindowConfig(max_length=128, doc_stride=49, split_at_answers=True)
    # the 1000-piece test model knows few Korean / Thai / Arabic characters: most subwords are <unk>
    report, stats = run_pipeline(read_tydi, [str(inp)], str(tmp_path / "out"), "train", specs[kind], cfg,
                                 progress=False, max_unk_rate=1.0 if kind == "spm" else 0.01)
    assert report.kept == 4 and stats.labels_not_exact == 0 and stats.labels_without_subwords == 0
    examples = [json.loads(x) for x in (tmp_path / "out" / "train.examples.jsonl").read_text().splitlines()]
    windows = [json.loads(x) for x in (tmp_path / "out" / "train.windows.jsonl").read_text().splitlines()]
    tok = tokenizers[kind]
    # expected labels: first annotation with a minimal answer (korean: null)
    gold = {str(r["example_id"]): next((a for a in r["annotations"]
                                        if a["minimal_answer"]["plaintext_start_byte"] >= 0), None)
            for r in records}
    by_id = {str(r["example_id"]): r for r in records}
    assert [e["example_id"] for e in examples] == list(by_id)
    for ex in examples:
        rec = by_id[ex["example_id"]]
        raw = rec["document_plaintext"].encode()
        assert ex["dataset"] == "tydi" and ex["language"] == rec["language"]
        assert [(c["start_byte"], c["end_byte"], c["start_token"]) for c in ex["candidates"]] == \
            [(c["plaintext_start_byte"], c["plaintext_end_byte"], -1) for c in rec["passage_answer_candidates"]]
        wins = [w for w in windows if w["example_id"] == ex["example_id"]]
        covered = set()
        g = gold[ex["example_id"]]
        n_type1 = 0
        for w in wins:
            ids, umap, ql = w["input_ids"], w["unit_map"], w["question_len"]
            assert len(ids) <= 128 and umap[:ql] == [-1] * ql and umap[-1] == -1
            covered.update(umap[ql:-1])
            for cpos, s, e in w["candidates"]:
                c = ex["candidates"][cpos]
                assert c["start_byte"] <= ex["units"][umap[s]][0] and ex["units"][umap[e]][1] <= c["end_byte"]
            if w["answer_type"] == 1:
                n_type1 += 1
                b0, b1 = ex["units"][umap[w["start_position"]]][0], ex["units"][umap[w["end_position"]]][1]
                m = g["minimal_answer"]
                assert (b0, b1) == stripped(raw, m["plaintext_start_byte"], m["plaintext_end_byte"])
                assert decoded_matches(tok, kind, ids[w["start_position"]:w["end_position"] + 1], raw[b0:b1])
            if w["answer_type"] in (1, 2):
                assert w["candidates"][w["long_position"]][0] == g["passage_answer"]["candidate_index"]
            else:
                assert w["answer_type"] == 0 and w["long_position"] == -1
        assert covered == set(range(len(ex["units"])))  # every unit (all have subwords) is in a window
        for s, e in ex["units"]:
            assert raw[s:e].decode().strip() == raw[s:e].decode() != ""
        if g is not None:
            assert n_type1 >= 1
        else:
            assert {w["answer_type"] for w in wins} == {0}
    jp = [w for w in windows if w["example_id"] == "77" and w["answer_type"] == 1]
    ex77 = examples[-1]
    raw77 = by_id["77"]["document_plaintext"].encode()
    assert {raw77[ex77["units"][w["unit_map"][w["start_position"]]][0]:
                  ex77["units"][w["unit_map"][w["end_position"]]][1]].decode() for w in jp} == {"東京都"}


def test_yes_no_answer(tmp_path, tokenizers):
    rec = japanese_record()
    rec["annotations"] = [{"passage_answer": {"candidate_index": 2}, "yes_no_answer": "NO",
                           "minimal_answer": {"plaintext_start_byte": -1, "plaintext_end_byte": -1}}]
    ex = read_tydi(rec, "x", 1)
    _, windows, _ = process_example(ex, tokenizers["gpt2"], WindowConfig(max_length=64, doc_stride=20))
    assert {w["answer_type"] for w in windows} == {0, 4}
    for w in windows:
        if w["answer_type"] == 4:
            assert w["candidates"][w["long_position"]][0] == 2


def test_cli_defaults_split_for_train_snap_for_dev(tmp_path, specs):
    inp = write_gz(tmp_path / "in.jsonl.gz", load_gold())
    args = ["--input", str(inp), "--bpe", "gpt2", "--encoder-json", GPT2_SPEC.encoder_json, "--vocab-bpe",
            GPT2_SPEC.vocab_bpe, "--dict", GPT2_SPEC.dict_path, "--max-length", "256", "--doc-stride", "98",
            "--no-progress"]
    reports = {}
    for split in ("train", "dev"):
        assert main([*args, "--output-dir", str(tmp_path / split), "--split", split]) == 0
        reports[split] = json.loads((tmp_path / split / f"{split}.report.json").read_text())
    assert reports["train"]["config"]["split_at_answers"] is True
    assert reports["train"]["config"]["negative_rate"] == 0.5
    assert reports["dev"]["config"]["split_at_answers"] is False
    assert reports["dev"]["config"]["negative_rate"] == 1.0
    assert reports["train"]["windows"]["labels_not_exact"] == 0
    assert reports["dev"]["windows"]["labels_not_exact"] == 1  # the Arabic answer starting inside a word
    assert reports["dev"]["windows"]["negatives_dropped"] == 0
    assert reports["train"]["windows"]["negatives_dropped"] > 0


# ---------------------------------------------------------------------------
# bad input

THAI = RecordEdits(lambda: load_gold()[1], ensure_ascii=False)
THAI_LEN = len(load_gold()[1]["document_plaintext"].encode())
MIN = "annotations[0].minimal_answer"
BAD = {
    "missing_plaintext": (THAI.edit(lambda r: r.pop("document_plaintext")), "document_plaintext", "missing_field"),
    "missing_language": (THAI.edit(lambda r: r.pop("language")), "language", "missing_field"),
    "annotations_not_a_list": (THAI.set(["annotations"], "none"), "annotations", "wrong_type"),
    "missing_nested": (THAI.edit(lambda r: r["annotations"][0].pop("passage_answer")),
                       "annotations[0].passage_answer", "missing_field"),
    "wrong_type": (THAI.set(["passage_answer_candidates", 0, "plaintext_start_byte"], "1"),
                   "passage_answer_candidates[0].plaintext_start_byte", "wrong_type"),
    "passage_outside_document": (THAI.set(["passage_answer_candidates", 6, "plaintext_end_byte"], THAI_LEN + 1),
                                 "passage_answer_candidates[6].plaintext_start_byte/plaintext_end_byte",
                                 "offset_out_of_range"),
    "minimal_outside_document": (THAI.set(["annotations", 0, "minimal_answer", "plaintext_end_byte"], 10 ** 7),
                                 f"{MIN}.plaintext_start_byte/plaintext_end_byte", "offset_out_of_range"),
    "offset_inside_character": (THAI.set(["annotations", 0, "minimal_answer", "plaintext_start_byte"], 818),
                                f"{MIN}.plaintext_start_byte/plaintext_end_byte", "offset_out_of_range"),
    "minimal_outside_passage": (THAI.set(["annotations", 0, "passage_answer", "candidate_index"], 0),
                                MIN, "answer_outside_candidate"),
    "minimal_without_passage": (THAI.set(["annotations", 0, "passage_answer", "candidate_index"], -1),
                                MIN, "answer_outside_candidate"),
    "passage_index_out_of_range": (THAI.set(["annotations", 0, "passage_answer", "candidate_index"], 7),
                                   "annotations[0].passage_answer.candidate_index", "offset_out_of_range"),
    "yes_without_passage": (THAI.edit(lambda r: r["annotations"][0].update(
        passage_answer={"candidate_index": -1}, yes_no_answer="YES",
        minimal_answer={"plaintext_start_byte": -1, "plaintext_end_byte": -1})),
        "annotations[0].yes_no_answer", "answer_outside_candidate"),
    "empty_document": (THAI.edit(lambda r: r.update(document_plaintext=" \n ", passage_answer_candidates=[],
                                               annotations=[])), "document_plaintext", "empty_document"),
    "non_utf8": (lambda: THAI.set(["question_text"], "ฮอนด้า QQQ ?")().replace(b"QQQ", b"\xe0\xb8"),
                 "question_text", "non_utf8"),
    "lone_surrogate": (lambda: THAI.set(["document_plaintext"], "abc SURR def")().replace(b"SURR", b"\\udc80"),
                       "document_plaintext", "non_utf8"),
    "malformed_json": (lambda: b'{"example_id": ', "<line>", "malformed_json"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_fail_and_skip(tmp_path, case):
    make, field, reason = BAD[case]
    good = json.dumps(load_gold()[2], ensure_ascii=False).encode()
    path = tmp_path / "in.jsonl.gz"
    with gzip.open(path, "wb") as f:
        f.write(good + b"\n" + make() + b"\n")
    out = tmp_path / "out"
    cfg = WindowConfig(max_length=128, doc_stride=49)
    with pytest.raises(InputError) as err:
        run_pipeline(read_tydi, [str(path)], str(out), "dev", GPT2_SPEC, cfg, on_error="fail", progress=False)
    e = err.value
    assert (e.path, e.line, e.field, e.reason) == (str(path), 2, field, reason), str(e)
    assert not out.exists()
    report, _ = run_pipeline(read_tydi, [str(path)], str(out), "dev", GPT2_SPEC, cfg, on_error="skip",
                             progress=False)
    assert report.kept == 1 and dict(report.skipped) == {reason: 1}
    assert len((out / "dev.examples.jsonl").read_text().splitlines()) == 1


def test_unk_rate_of_the_tiny_model_fails_by_default_and_is_reported_when_accepted(tmp_path, specs, tokenizers,
                                                                                   capsys):
    """The 1000-piece sentencepiece test model on Korean / Thai / Arabic: most subwords are the
    dictionary's <unk>. Default limit: exit 1, nothing written; --max-unk-rate 1: the report holds
    the counts summed over the workers (reference: the tokenizer on each document)."""
    spec = specs["spm"]
    tok = tokenizers["spm"]
    unk = tokens = 0
    for line, rec in enumerate(load_gold(), 1):
        ids = tokenize_example(read_tydi(rec, "x", line), tok, split_at_answers=False).ids
        tokens += len(ids)
        unk += ids.count(tok.dictionary.unk())
    assert 0.5 < unk / tokens < 0.9
    out = tmp_path / "out"
    argv = ["--input", str(TYDI), "--output-dir", str(out), "--split", "dev", "--no-progress", "--workers", "2",
            "--bpe", "sentencepiece", "--sentencepiece-model", spec.sentencepiece_model, "--dict", spec.dict_path]
    capsys.readouterr()
    assert main(argv) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"error: {100 * unk / tokens:.1f}% of the {tokens} document subwords ({unk}) became <unk> (limit 1%, "
        f"--max-unk-rate 0.01): the dictionary {spec.dict_path} does not belong to the BPE (--sentencepiece-model "
        f"{SPM_MODEL}), or the BPE does not cover this text; pass --max-unk-rate 1 to accept it; no output written"]
    assert not out.exists()
    assert main([*argv, "--max-unk-rate", "1"]) == 0
    report = json.loads((out / "dev.report.json").read_text())
    assert (report["tokens"], report["unk_tokens"], report["unk_rate"]) == (tokens, unk, unk / tokens)
    assert report["max_unk_rate"] == 1.0
    assert main([*argv, "--max-unk-rate", "1.5"]) == 1
    assert "error: --max-unk-rate must be between 0 and 1, got 1.5; no output written" in capsys.readouterr().err


def test_recipe_binarize_runs_preprocess_tydi(tmp_path, specs):
    spec = specs["spm"]
    out = tmp_path / "tydi"
    proc = subprocess.run(["bash", str(REPO / "recipes" / "tydi" / "binarize.sh"), str(out), "--train", str(TYDI),
                           "--dict", spec.dict_path, "--bpe", "sentencepiece", "--sentencepiece-model",
                           spec.sentencepiece_model, "--max-length", "128", "--doc-stride", "49",
                           "--negative-rate", "1.0", "--no-progress", "--max-unk-rate", "1"],
                          cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "jsonl" / "train.report.json").read_text())
    assert report["kept"] == 3 and report["config"]["split_at_answers"] is True
    labels = np.load(out / "bin" / "train.labels.npy")
    assert labels.shape == (report["windows"]["kept"], 7)
    assert int((labels[:, 3] == 1).sum()) == report["windows"]["answer_types"]["short"] > 0
