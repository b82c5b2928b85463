"""QA tokenization with unit maps and windowing (fairseq_poolingformer.preprocess.qa_tokenize, fairseq_poolingformer.preprocess.qa_windows).

References are independent of the code under test: GPT-2 subwords are decoded back to bytes
through the BPE byte table, sentencepiece pieces are compared with the NFKC-normalized text,
window labels are recomputed from the unit map.
"""
import os
import random
import unicodedata
from pathlib import Path

import pytest

from fairseq_poolingformer.preprocess import bpe
from fairseq_poolingformer.preprocess.qa_tokenize import (
    TokenizedDoc, TokenizerSpec, build_tokenizer, text_segments, tokenize_text, tokenize_tokens,
    utf8_char_starts,
)
from fairseq_poolingformer.preprocess.common import InputError
from fairseq_poolingformer.preprocess.qa_units import example_units, units_to_json
from fairseq_poolingformer.preprocess.qa_windows import (
    Annotation, Candidate, QAExample, WindowConfig, WindowStats, build_windows, choose_label,
    process_example, window_spans,
)

DATA = Path(__file__).resolve().parent / "data"
MULTISCRIPT = ("Hello, wörld! 《도라에몽》은 1973년에 ฮอนด้าก่อตั้งเมื่อ 24 กันยายน "
               "東京都に住んでいる。 نواز شريف (ولد 25 ديسمبر) 😀x \u200b y ﬁne")


def write_spm_dict(model: Path, out: Path) -> Path:
    """XLM-R-style fairseq dict.txt for a sentencepiece model: the documented one command."""
    assert bpe.main(["--bpe", "sentencepiece", "--sentencepiece-model", str(model), "--write-dict", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def gpt2():
    d = DATA / "gpt2_bpe"
    return build_tokenizer(TokenizerSpec("gpt2", str(d / "dict.txt"), str(d / "encoder.json"), str(d / "vocab.bpe")))


@pytest.fixture(scope="module")
def spm(tmp_path_factory):
    model = DATA / "sentencepiece" / "test_model.model"
    dict_path = write_spm_dict(model, tmp_path_factory.mktemp("spm") / "dict.txt")
    return build_tokenizer(TokenizerSpec("sentencepiece", str(dict_path), sentencepiece_model=str(model)))


def gpt2_bytes(tok, ids):
    """Decode dictionary indices to the bytes the GPT-2 BPE tokens stand for."""
    out = b""
    for i in ids:
        bpe_token = tok.bpe.decoder[int(tok.dictionary[i])]
        out += bytes(tok.bpe.byte_decoder[c] for c in bpe_token)
    return out


# ---------------------------------------------------------------------------
# tokenization

def test_text_segments_whitespace_and_cuts():
    text = "ab  cd\u3000東京\nx"
    b = utf8_char_starts(text)
    assert text_segments(text) == [(0, 2, True), (4, 6, True), (b[7], b[9], True), (b[10], b[11], True)]
    # a cut inside 東京 and one at a word start (no effect) and one in whitespace (no effect)
    cut = b[8]
    assert text_segments(text, [cut, 4, 3]) == [
        (0, 2, True), (4, 6, True), (b[7], cut, True), (cut, b[9], False), (b[10], b[11], True)]


@pytest.mark.parametrize("name", ["gpt2", "spm"])
def test_units_are_character_aligned_and_cover_the_subwords(name, request):
    tok = request.getfixturevalue(name)
    raw = MULTISCRIPT.encode("utf-8")
    doc = tokenize_text(MULTISCRIPT, tok)
    assert len(doc.ids) == len(doc.unit_of) > 0
    assert doc.unit_of == sorted(doc.unit_of)
    assert set(doc.unit_of) == set(range(len(doc.units)))  # every unit has a subword here
    for (s, e), (s2, _) in zip(doc.units, doc.units[1:]):
        assert s < e <= s2
    for s, e in doc.units:
        piece = raw[s:e].decode("utf-8")  # raises if a unit splits a character
        assert piece and not any(c.isspace() for c in piece)
    if name == "gpt2":
        # byte-level BPE is lossless: the units' subwords decode to exactly the units' bytes
        for u, (s, e) in enumerate(doc.units):
            ids = [i for i, v in zip(doc.ids, doc.unit_of) if v == u]
            assert gpt2_bytes(tok, ids).lstrip(b" ") == raw[s:e]
        assert b"".join(raw[s:e] for s, e in doc.units) == b"".join(raw.split())
    else:
        unk = tok.dictionary.unk()
        for u, (s, e) in enumerate(doc.units):
            ids = [i for i, v in zip(doc.ids, doc.unit_of) if v == u]
            if unk in ids:
                continue
            pieces = "".join(tok.dictionary[i] for i in ids).replace("\u2581", "")
            assert pieces == unicodedata.normalize("NFKC", raw[s:e].decode("utf-8"))


@pytest.mark.parametrize("name", ["gpt2", "spm"])
def test_word_pieces_after_a_cut_have_no_word_start_marker(name, request):
    tok = request.getfixturevalue(name)
    text = "hello world"
    doc = tokenize_text(text, tok, cuts=[8])  # "hello wo|rld"
    after = [i for i, u in zip(doc.ids, doc.unit_of) if doc.units[u][0] >= 8]
    first = tok.dictionary[after[0]]
    if name == "gpt2":
        assert not gpt2_bytes(tok, [after[0]]).startswith(b" ")
        assert gpt2_bytes(tok, after) == b"rld"
    else:
        assert not first.startswith("\u2581")
    assert doc.source_span(*doc.subword_span(8, 11)) == (8, 11)


def test_subword_span_contained_and_overlapping():
    # units: bytes [0,2) [2,5) [6,8) [8,9); unit 3 has no subword
    doc = TokenizedDoc([(0, 2), (2, 5), (6, 8), (8, 9)], ids=[10, 11, 12, 13], unit_of=[0, 1, 1, 2])
    assert doc.subword_span(0, 9) == (0, 3)
    assert doc.subword_span(2, 5) == (1, 2)
    assert doc.subword_span(3, 9) == (3, 3)                  # units inside [3, 9): [6,8), [8,9)
    assert doc.subword_span(3, 9, contained=False) == (1, 3)  # overlapping: [2,5) too
    assert doc.subword_span(8, 9) is None                    # unit without subword
    assert doc.subword_span(5, 6) is None
    assert doc.source_span(1, 3) == (2, 8)


def test_tokenize_tokens_skips_html(gpt2):
    tokens = ["<P>", "Tracy", "", "McConnell", "</P>"]  # "" from a double space: no subwords
    doc = tokenize_tokens(tokens, gpt2, skip=[True, False, False, False, True])
    assert doc.units == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    assert set(doc.unit_of) == {1, 3}
    assert gpt2_bytes(gpt2, doc.ids) == b" Tracy McConnell"
    assert doc.source_span(*doc.subword_span(0, 5)) == (1, 4)


# ---------------------------------------------------------------------------
# windows

@pytest.mark.parametrize("n,budget,stride", [(1, 5, 2), (5, 5, 2), (6, 5, 2), (100, 30, 11), (100, 30, 50),
                                             (4030 * 4, 4030, 1568)])
def test_window_spans_cover_everything(n, budget, stride):
    spans = window_spans(n, budget, stride)
    covered = set()
    for first, last in spans:
        assert 0 <= first <= last < n and last - first + 1 <= budget
        covered.update(range(first, last + 1))
    assert covered == set(range(n))
    assert spans[-1][1] == n - 1 and (len(spans) == 1 or spans[-2][1] < n - 1)  # no useless last window
    assert [f for f, _ in spans] == [i * min(stride, budget) for i in range(len(spans))]


def nq_like_example(n_tokens, cands, annotations, example_id="7", question="what is w5"):
    tokens = [f"w{i}" for i in range(n_tokens)]
    return QAExample(example_id, "nq", "english", question,
                     [Candidate(i, s, e, -1, -1, True) for i, (s, e) in enumerate(cands)],
                     annotations, tokens=tokens, html=[False] * n_tokens)


def check_window(rec, cfg):
    """Independent checks of one window record's layout; returns its document ids and units."""
    ids, umap, ql = rec["input_ids"], rec["unit_map"], rec["question_len"]
    assert len(ids) == len(umap) <= cfg.max_length
    assert ids[0] == 0 and ids[ql - 1] == 2 and ids[-1] == 2  # <s> ... </s> ... </s>
    assert umap[:ql] == [-1] * ql and umap[-1] == -1 and -1 not in umap[ql:-1]
    return ids[ql:-1], umap[ql:-1]


def test_windows_structure_labels_and_coverage(gpt2):
    cands = [(0, 40), (40, 80), (80, 120), (120, 200)]
    label = Annotation(1, [(50, 53)], "NONE")
    ex = nq_like_example(200, cands, [Annotation(), label])
    assert choose_label(ex.annotations) is label
    cfg = WindowConfig(max_length=64, doc_stride=25, max_question_len=8)
    example, windows, stats = process_example(ex, gpt2, cfg)
    doc = tokenize_tokens(ex.tokens, gpt2)
    q = gpt2.encode(ex.question)[:8]
    seen_units = set()
    for w, rec in enumerate(windows):
        assert rec["window_index"] == w and rec["example_id"] == "7"
        ql = rec["question_len"]
        assert ql == len(q) + 2 and rec["input_ids"][1:ql - 1] == q
        doc_ids, doc_units = check_window(rec, cfg)
        # the document part is doc.ids[first:last+1] for the first subword of this window
        k0 = w * min(cfg.doc_stride, cfg.max_length - ql - 1)
        assert doc_ids == doc.ids[k0:k0 + len(doc_ids)] and doc_units == doc.unit_of[k0:k0 + len(doc_ids)]
        seen_units.update(doc_units)
        # candidates: every candidate with a token in the window, clipped positions
        units_at = {p: u for p, u in enumerate(rec["unit_map"]) if u >= 0}
        expected = []
        for ci, (s, e) in enumerate(cands):
            pos = [p for p, u in units_at.items() if s <= u < e]
            if pos:
                expected.append([ci, min(pos), max(pos)])
        assert rec["candidates"] == expected
        # labels recomputed from the unit map
        short_pos = [p for p, u in units_at.items() if 50 <= u < 53]
        long_in = any(c[0] == 1 for c in expected)
        whole_short = len({rec["unit_map"][p] for p in short_pos}) == 3 and \
            len(short_pos) == sum(1 for u in doc.unit_of if 50 <= u < 53)
        if whole_short:
            assert rec["answer_type"] == 1
            assert (rec["start_position"], rec["end_position"]) == (min(short_pos), max(short_pos))
            assert rec["unit_map"][rec["start_position"]] == 50 and rec["unit_map"][rec["end_position"]] == 52
        elif long_in:
            assert rec["answer_type"] == 2 and (rec["start_position"], rec["end_position"]) == (0, 0)
        else:
            assert rec["answer_type"] == 0 and rec["long_position"] == -1
        if long_in:
            assert rec["candidates"][rec["long_position"]][0] == 1
    assert seen_units == set(range(200))  # every token with subwords is in some window
    assert stats.windows == len(windows) and stats.answer_types[1] >= 1
    assert example["units"] is None and example["num_units"] == 200  # NQ: compact identity units
    assert example["annotations"][1] == {"long": 1, "short": [[50, 53]], "yes_no": "NONE"}


@pytest.mark.parametrize("yes_no,answer_type", [("YES", 3), ("NO", 4)])
def test_yes_no_windows(gpt2, yes_no, answer_type):
    ex = nq_like_example(120, [(0, 30), (30, 60), (60, 120)], [Annotation(1, [], yes_no)])
    _, windows, _ = process_example(ex, gpt2, WindowConfig(max_length=48, doc_stride=16, max_question_len=8))
    types = {r["answer_type"] for r in windows}
    assert types == {0, answer_type}
    for r in windows:
        assert (r["long_position"] >= 0) == (r["answer_type"] == answer_type)


def test_negative_subsampling_rate_is_applied_and_seeded(gpt2):
    """Null examples: every window is a negative; the kept fraction must match the rate."""
    cfg = WindowConfig(max_length=24, doc_stride=8, max_question_len=4, negative_rate=0.5, seed=3)
    kept = total = 0
    first_run = []
    for k in range(150):
        ex = nq_like_example(60, [(0, 60)], [Annotation()], example_id=str(k), question="q")
        stats = WindowStats()
        recs = build_windows(ex, tokenize_tokens(ex.tokens, gpt2), [100], 0, 2, cfg, stats)
        kept, total = kept + len(recs), total + stats.windows
        assert stats.negatives_dropped == stats.windows - len(recs)
        first_run.append([r["window_index"] for r in recs])
    rate = kept / total
    sigma = (0.25 / total) ** 0.5
    assert total > 1500 and abs(rate - 0.5) < 4 * sigma, (rate, total)
    # same seed -> same choice; other seed -> other choice; rate 1 keeps all, rate 0 keeps none
    ex = nq_like_example(60, [(0, 60)], [Annotation()], example_id="5", question="q")
    doc = tokenize_tokens(ex.tokens, gpt2)

    def kept_idx(**kw):
        c = WindowConfig(max_length=24, doc_stride=8, max_question_len=4, **kw)
        return [r["window_index"] for r in build_windows(ex, doc, [100], 0, 2, c, WindowStats())]
    assert kept_idx(negative_rate=0.5, seed=3) == first_run[5]
    assert any(kept_idx(negative_rate=0.5, seed=s) != first_run[5] for s in range(4, 10))
    n = len(window_spans(len(doc.ids), 24 - 3 - 1, 8))
    assert kept_idx(negative_rate=1.0) == list(range(n))
    assert kept_idx(negative_rate=0.0) == []


def test_positive_windows_are_never_dropped(gpt2):
    ex = nq_like_example(200, [(0, 100), (100, 200)], [Annotation(1, [(150, 152)], "NONE")])
    cfg = WindowConfig(max_length=32, doc_stride=10, max_question_len=4, negative_rate=0.0)
    _, windows, stats = process_example(ex, gpt2, cfg)
    assert windows and all(r["answer_type"] > 0 for r in windows)
    full = process_example(ex, gpt2, WindowConfig(max_length=32, doc_stride=10, max_question_len=4))[1]
    assert [r for r in full if r["answer_type"] > 0] == windows
    assert stats.negatives_dropped == sum(1 for r in full if r["answer_type"] == 0)


def test_question_truncated(gpt2):
    ex = nq_like_example(10, [(0, 10)], [Annotation()], question=" ".join(["word"] * 100))
    _, windows, _ = process_example(ex, gpt2, WindowConfig(max_length=128, doc_stride=40, max_question_len=64))
    assert windows[0]["question_len"] == 66


@pytest.mark.parametrize("kw", [dict(max_length=10, max_question_len=8), dict(doc_stride=0),
                                dict(negative_rate=1.5), dict(max_question_len=0)])
def test_bad_window_config(kw):
    with pytest.raises(ValueError):
        WindowConfig(**kw).check()


def test_random_examples_labels_point_at_answer(gpt2):
    """Random documents and answers: every type-1 window points at the answer's subwords."""
    rng = random.Random(0)
    for k in range(20):
        n = rng.randint(5, 150)
        cuts = sorted(rng.sample(range(1, n), min(3, n - 1)))
        bounds = [0] + cuts + [n]
        cands = list(zip(bounds, bounds[1:]))
        ci = rng.randrange(len(cands))
        s0, e0 = cands[ci]
        s = rng.randrange(s0, e0)
        e = rng.randint(s + 1, min(e0, s + 4))
        ex = nq_like_example(n, cands, [Annotation(ci, [(s, e)], "NONE")], example_id=str(k))
        cfg = WindowConfig(max_length=rng.randint(20, 60), doc_stride=rng.randint(3, 30), max_question_len=5)
        _, windows, _ = process_example(ex, gpt2, cfg)
        doc = tokenize_tokens(ex.tokens, gpt2)
        assert {u for r in windows for u in r["unit_map"] if u >= 0} == set(range(n))
        n_short = sum(1 for u in doc.unit_of if s <= u < e)
        for r in windows:
            assert len(r["input_ids"]) <= cfg.max_length
            if r["answer_type"] == 1:
                span = r["unit_map"][r["start_position"]:r["end_position"] + 1]
                assert len(span) == n_short and span[0] == s and span[-1] == e - 1
        budget = cfg.max_length - (len(gpt2.encode(ex.question)[:5]) + 3)
        if n_short <= budget - min(cfg.doc_stride, budget) + 1:  # then some window holds it whole
            assert any(r["answer_type"] == 1 for r in windows)


# ---------------------------------------------------------------------------
# the units field of examples.jsonl: compact (NQ) and explicit (TyDi) forms

def test_units_compact_and_explicit_forms_read_the_same():
    identity = [(i, i + 1) for i in range(5)]
    compact, explicit = units_to_json(identity, compact=True), units_to_json(identity, compact=False)
    assert compact == {"units": None, "num_units": 5}
    assert explicit == {"units": [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]]}
    a, b = example_units(compact), example_units(explicit)
    assert len(a) == len(b) == 5 and list(a) == list(b) == identity
    assert a.is_identity and not b.is_identity
    assert [a[u] for u in (0, 4)] == [b[u] for u in (0, 4)] == [(0, 1), (4, 5)]
    for units in (a, b):
        with pytest.raises(IndexError):
            units[5]
        with pytest.raises(IndexError):
            units[-1]
    # num_units next to an explicit list must agree with it
    assert len(example_units({"units": [[3, 7]], "num_units": 1})) == 1
    assert len(example_units({"units": None, "num_units": 0})) == 0
    # only identity units have a compact form
    with pytest.raises(ValueError, match=r"unit 1 is \(2, 5\)"):
        units_to_json([(0, 1), (2, 5)], compact=True)


@pytest.mark.parametrize("record,field,message", [
    ({}, "units", "missing required field"),
    ({"units": None}, "num_units", "non-negative integer"),
    ({"units": None, "num_units": -1}, "num_units", "non-negative integer"),
    ({"units": None, "num_units": True}, "num_units", "non-negative integer"),
    ({"units": None, "num_units": "5"}, "num_units", "non-negative integer"),
    ({"units": "0-5"}, "units", "expected a list or null"),
    ({"units": [[0, 1], [1]]}, "units[1]", "expected [start, end] integers"),
    ({"units": [[0, 1], [1, 2.5]]}, "units[1]", "expected [start, end] integers"),
    ({"units": [[0, 1], [False, 2]]}, "units[1]", "expected [start, end] integers"),
    ({"units": [[0, 1]], "num_units": 2}, "num_units", "!= len(units) 1"),
])
def test_example_units_bad_input_names_file_line_field(record, field, message):
    with pytest.raises(InputError) as err:
        example_units(record, "x.examples.jsonl", 3)
    assert str(err.value).startswith(f"x.examples.jsonl:3: field '{field}': ")
    assert message in err.value.message


def test_tydi_example_record_keeps_explicit_byte_units(gpt2):
    text = "東京 is big"
    raw = text.encode("utf-8")
    ex = QAExample("9", "tydi", "japanese", "where", [Candidate(0, -1, -1, 0, len(raw), True)],
                   [Annotation(0, [(0, 6)], "NONE")], text=text)
    example, _, _ = process_example(ex, gpt2, WindowConfig(max_length=32, doc_stride=8, max_question_len=4))
    assert "num_units" not in example and isinstance(example["units"], list)
    units = example_units(example)
    assert not units.is_identity and units[0][0] == 0 and units[len(units) - 1][1] == len(raw)
    # whitespace belongs to no unit; the units' bytes are the text's non-space bytes
    assert b"".join(raw[s:e] for s, e in units) == b"".join(raw.split())


def test_write_dict_is_one_command_and_covers_every_piece(tmp_path, capsys):
    """``python -m fairseq_poolingformer.preprocess.bpe --bpe sentencepiece --sentencepiece-model M --write-dict D``
    alone (no --inputs/--outputs) writes a dict.txt that Fairseq loads and that maps every
    piece the model emits on multi-script text to a real entry (so the QA tokenizer makes no
    <unk> but for characters the model itself cannot spell)."""
    import sentencepiece

    from fairseq.data import Dictionary

    model = DATA / "sentencepiece" / "test_model.model"
    dict_path = write_spm_dict(model, tmp_path / "dict.txt")
    assert os.listdir(tmp_path) == ["dict.txt"]
    assert "wrote Fairseq dictionary" in capsys.readouterr().err
    d = Dictionary.load(str(dict_path))
    sp = sentencepiece.SentencePieceProcessor(model_file=str(model))
    pieces = sp.encode(MULTISCRIPT, out_type=str)
    known = [p for p in pieces if sp.piece_to_id(p) != sp.unk_id()]
    assert known and all(d.index(p) != d.unk() for p in known)
    tok = build_tokenizer(TokenizerSpec("sentencepiece", str(dict_path), sentencepiece_model=str(model)))
    ids = tok.encode("Hello, world! The model is here")  # every character known to the model: no <unk>
    assert ids and d.unk() not in ids


@pytest.mark.parametrize("argv, message", [
    (["--bpe", "gpt2", "--write-dict", "d.txt"], "--write-dict writes the dictionary of a sentencepiece model"),
    (["--bpe", "sentencepiece", "--sentencepiece-model", "m.model"], "nothing to do"),
])
def test_bpe_cli_says_what_is_missing(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        bpe.main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
