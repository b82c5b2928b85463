"""Natural Questions -> QA windows (fairseq_poolingformer.preprocess.nq): real simplified samples, an original-format
fixture built from the published schema, window coverage and labels, bad input."""
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fairseq_poolingformer.preprocess.common import InputError
from fairseq_poolingformer.preprocess.nq import is_html, main, read_nq
from fairseq_poolingformer.preprocess.qa_tokenize import TokenizerSpec, build_tokenizer
from fairseq_poolingformer.preprocess.qa_units import example_units
from fairseq_poolingformer.preprocess.qa_windows import WindowConfig, run_pipeline, tokenize_example, window_spans
from record_edits import RecordEdits

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
NQ_DEV = DATA / "nq" / "dev_sample.jsonl"      # long + short answer, ~3.9k tokens
NQ_TRAIN = DATA / "nq" / "train_sample.jsonl"  # null answer, ~18k tokens
BPE = DATA / "gpt2_bpe"
SPEC = TokenizerSpec("gpt2", str(BPE / "dict.txt"), str(BPE / "encoder.json"), str(BPE / "vocab.bpe"))
GPT2_ARGS = ["--bpe", "gpt2", "--encoder-json", str(BPE / "encoder.json"), "--vocab-bpe", str(BPE / "vocab.bpe"),
             "--dict", str(BPE / "dict.txt")]


@pytest.fixture(scope="module")
def gpt2():
    return build_tokenizer(SPEC)


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def gpt2_bytes(tok, ids):
    out = b""
    for i in ids:
        out += bytes(tok.bpe.byte_decoder[c] for c in tok.bpe.decoder[int(tok.dictionary[i])])
    return out


def to_original(rec: dict, annotations=None) -> dict:
    """A simplified NQ record rewritten in the original format (published schema): document
    tokens with byte offsets into a synthesized ``document_html`` and ``html_token`` flags."""
    tokens = rec["document_text"].split(" ")
    html_tokens = [t.replace("_", " ") if is_html(t) else t for t in tokens]
    document_html, doc_tokens, pos = "", [], 0
    for t, h in zip(tokens, html_tokens):
        start = pos
        document_html += h + " "
        pos += len(h.encode("utf-8"))
        doc_tokens.append({"token": h, "start_byte": start, "end_byte": pos, "html_token": is_html(t)})
        pos += 1

    def with_bytes(span):
        span = dict(span)
        s, e = span["start_token"], span["end_token"]
        span["start_byte"] = doc_tokens[s]["start_byte"] if s >= 0 else -1
        span["end_byte"] = doc_tokens[e - 1]["end_byte"] if e > 0 else -1
        return span

    anns = []
    for a in annotations if annotations is not None else rec["annotations"]:
        a = dict(a)
        a["long_answer"] = with_bytes(a["long_answer"])
        a["short_answers"] = [with_bytes(s) for s in a["short_answers"]]
        anns.append(a)
    return {
        "example_id": rec["example_id"], "question_text": rec["question_text"],
        "question_tokens": rec["question_text"].split(), "document_title": "t",
        "document_url": rec["document_url"], "document_html": document_html, "document_tokens": doc_tokens,
        "long_answer_candidates": [with_bytes(c) for c in rec["long_answer_candidates"]], "annotations": anns,
    }


def read_outputs(out_dir, split):
    ex = load(Path(out_dir) / f"{split}.examples.jsonl")
    win = load(Path(out_dir) / f"{split}.windows.jsonl")
    report = json.loads((Path(out_dir) / f"{split}.report.json").read_text())
    return ex, win, report


# ---------------------------------------------------------------------------
# round trips on the real samples

@pytest.mark.parametrize("path", [NQ_DEV, NQ_TRAIN])
@pytest.mark.parametrize("drop_html", [True, False])
def test_round_trip_real_samples(gpt2, path, drop_html):
    """Every candidate, gold long answer and short answer maps to subwords and back to the
    same tokens (HTML tokens at the ends excluded when they have no subwords)."""
    rec = load(path)[0]
    ex = read_nq(rec, str(path), 1)
    doc = tokenize_example(ex, gpt2, drop_html=drop_html)
    tokens = rec["document_text"].split(" ")
    assert ex.tokens == tokens and len(doc.units) == len(tokens)

    def expected(s, e):
        keep = [i for i in range(s, e) if not (drop_html and is_html(tokens[i]))]
        return (keep[0], keep[-1] + 1) if keep else None

    spans = [(c["start_token"], c["end_token"]) for c in rec["long_answer_candidates"]]
    for a in rec["annotations"]:
        if a["long_answer"]["candidate_index"] >= 0:
            spans.append((a["long_answer"]["start_token"], a["long_answer"]["end_token"]))
        spans += [(s["start_token"], s["end_token"]) for s in a["short_answers"]]
    n_checked = 0
    for s, e in spans:
        sw = doc.subword_span(s, e)
        exp = expected(s, e)
        if exp is None:
            assert sw is None
            continue
        assert doc.source_span(*sw) == exp
        # the subwords in between are exactly the tokens' subwords, decoding to the tokens
        text = gpt2_bytes(gpt2, doc.ids[sw[0]:sw[1] + 1]).decode("utf-8")
        assert text == "".join(" " + t for t in tokens[exp[0]:exp[1]] if not (drop_html and is_html(t)))
        n_checked += 1
    assert n_checked > 30
    if path == NQ_DEV:  # the short answer: tokens 213..215 "Tracy McConnell"
        sw = doc.subword_span(213, 215)
        assert doc.source_span(*sw) == (213, 215)
        assert gpt2_bytes(gpt2, doc.ids[sw[0]:sw[1] + 1]) == b" Tracy McConnell"


def test_dev_sample_windows_small(tmp_path, gpt2):
    """Pipeline at max length 256 / stride 98: parse the files back and check the contract."""
    report, stats = run_pipeline(read_nq, [str(NQ_DEV)], str(tmp_path), "dev", SPEC,
                                 WindowConfig(max_length=256, doc_stride=98), progress=False)
    examples, windows, rep = read_outputs(tmp_path, "dev")
    rec = load(NQ_DEV)[0]
    tokens = rec["document_text"].split(" ")
    assert report.kept == 1 and rep["kept"] == 1 and rep["windows"]["kept"] == len(windows) == stats.kept
    [ex] = examples
    assert ex["example_id"] == "5328212470870865242" and ex["dataset"] == "nq" and ex["language"] == "english"
    assert ex["question"] == rec["question_text"]
    # NQ units are the document tokens, written in the compact form (docs/qa_data_format.md)
    assert ex["units"] is None and ex["num_units"] == len(tokens)
    assert list(example_units(ex)) == [(i, i + 1) for i in range(len(tokens))]
    assert [(c["index"], c["start_token"], c["end_token"], c["top_level"]) for c in ex["candidates"]] == \
        [(i, c["start_token"], c["end_token"], c["top_level"]) for i, c in enumerate(rec["long_answer_candidates"])]
    assert all(c["start_byte"] == -1 == c["end_byte"] for c in ex["candidates"])
    assert "token_bytes" not in ex

    covered = set()
    type1 = 0
    for w in windows:
        ids, umap, ql = w["input_ids"], w["unit_map"], w["question_len"]
        assert len(ids) == len(umap) <= 256 and ids[0] == 0 and ids[ql - 1] == 2 and ids[-1] == 2
        assert gpt2_bytes(gpt2, ids[1:ql - 1]).decode() == rec["question_text"]
        # document positions decode, unit by unit, to the document tokens (independent check)
        by_unit = {}
        for p in range(ql, len(ids) - 1):
            by_unit.setdefault(umap[p], []).append(ids[p])
        for u, u_ids in list(by_unit.items())[1:-1]:  # first/last unit may be cut by the window
            assert gpt2_bytes(gpt2, u_ids).decode() == " " + tokens[u]
        covered.update(by_unit)
        for cpos, s, e in w["candidates"]:
            c = ex["candidates"][cpos]
            assert ql <= s <= e < len(ids) - 1
            assert c["start_token"] <= umap[s] and umap[e] < c["end_token"]
        if w["answer_type"] == 1:
            type1 += 1
            assert [umap[w["start_position"]], umap[w["end_position"]]] == [213, 214]
            assert gpt2_bytes(gpt2, ids[w["start_position"]:w["end_position"] + 1]) == b" Tracy McConnell"
        if w["answer_type"] in (1, 2):
            assert w["candidates"][w["long_position"]][0] == 15
        else:
            assert w["answer_type"] == 0 and w["long_position"] == -1
            assert (w["start_position"], w["end_position"]) == (0, 0)
    assert type1 >= 1
    assert covered == {i for i, t in enumerate(tokens) if not is_html(t) and t}


def test_real_length_4096_on_18k_token_sample(tmp_path):
    """The paper's windows (4096, stride 1568) on the ~18k-token train sample (null answer)."""
    rc = main(["--input", str(NQ_TRAIN), "--output-dir", str(tmp_path), "--split", "dev", "--no-progress",
               *GPT2_ARGS])
    assert rc == 0
    [ex], windows, rep = read_outputs(tmp_path, "dev")
    gpt2 = build_tokenizer(SPEC)
    doc = tokenize_example(read_nq(load(NQ_TRAIN)[0], "x", 1), gpt2)
    ql = windows[0]["question_len"]
    spans = window_spans(len(doc.ids), 4096 - ql - 1, 1568)
    assert len(doc.units) == 17964 and len(spans) == len(windows) >= 3
    # compact units: the examples line is the candidates plus a few fields (an explicit
    # [[i, i + 1], ...] list alone took 229 KB of the 253 KB line)
    assert (ex["units"], ex["num_units"]) == (None, 17964)
    # every document subword is counted once (not per window); GPT-2 BPE with its own dict: no <unk>
    assert (rep["tokens"], rep["unk_tokens"], rep["unk_rate"], rep["max_unk_rate"]) == (len(doc.ids), 0, 0.0, 0.01)
    assert (tmp_path / "dev.examples.jsonl").stat().st_size < len(json.dumps(ex["candidates"])) + 1000
    assert [len(w["input_ids"]) for w in windows[:-1]] == [4096] * (len(windows) - 1)
    assert len(windows[-1]["input_ids"]) <= 4096
    covered = set()
    for w, (first, last) in zip(windows, spans):
        assert w["input_ids"][ql:-1] == doc.ids[first:last + 1]
        assert w["answer_type"] == 0 and w["long_position"] == -1
        covered.update(w["unit_map"][ql:-1])
    assert covered == set(doc.unit_of)
    assert rep["windows"] == {"total": len(spans), "kept": len(spans), "negatives_dropped": 0,
                              "answer_types": {"null": len(spans), "short": 0, "long": 0, "yes": 0, "no": 0},
                              "unlabelled": 0,
                              "labels_not_exact": 0, "labels_without_subwords": 0}
    # --split train sub-samples the (all negative) windows at 0.5 by default
    out2 = tmp_path / "train"
    assert main(["--input", str(NQ_TRAIN), "--output-dir", str(out2), "--split", "train", "--no-progress",
                 *GPT2_ARGS]) == 0
    _, train_windows, rep2 = read_outputs(out2, "train")
    assert rep2["config"]["negative_rate"] == 0.5
    assert rep2["windows"]["kept"] + rep2["windows"]["negatives_dropped"] == len(spans)
    assert len(train_windows) == rep2["windows"]["kept"]


# ---------------------------------------------------------------------------
# original format

def test_original_format_shards(tmp_path, gpt2):
    rec = load(NQ_DEV)[0]
    la = rec["annotations"][0]["long_answer"]
    null = {"long_answer": {"start_token": -1, "end_token": -1, "candidate_index": -1},
            "short_answers": [], "yes_no_answer": "NONE"}
    long_only = {"long_answer": la, "short_answers": [], "yes_no_answer": "NONE"}
    short = {"long_answer": la, "short_answers": [{"start_token": 213, "end_token": 215},
                                                  {"start_token": 220, "end_token": 222}], "yes_no_answer": "NONE"}
    cand16 = rec["long_answer_candidates"][16]
    yes = {"long_answer": {**cand16, "candidate_index": 16}, "short_answers": [], "yes_no_answer": "YES"}
    first = to_original(rec, [null, long_only, short, null, yes])       # 5-way dev annotations
    second = to_original({**rec, "example_id": 42}, [null, yes, short, null, null])
    shards = tmp_path / "shards"
    shards.mkdir()
    for i, r in enumerate([first, second]):
        with gzip.open(shards / f"nq-dev-0{i}.jsonl.gz", "wt", encoding="utf-8") as f:
            f.write(json.dumps(r) + "\n")
    out = tmp_path / "out"
    assert main(["--input", str(shards), "--output-dir", str(out), "--split", "dev", "--format", "original",
                 "--max-length", "256", "--doc-stride", "98", "--no-progress", *GPT2_ARGS]) == 0
    examples, windows, rep = read_outputs(out, "dev")
    assert [e["example_id"] for e in examples] == [str(rec["example_id"]), "42"] and rep["kept"] == 2
    ex = examples[0]
    toks = first["document_tokens"]
    assert (ex["units"], ex["num_units"]) == (None, len(toks))
    assert ex["token_bytes"] == [[t["start_byte"], t["end_byte"]] for t in toks]
    for c, orig in zip(ex["candidates"], first["long_answer_candidates"]):
        assert (c["start_byte"], c["end_byte"]) == (orig["start_byte"], orig["end_byte"])
        html = first["document_html"].encode()[c["start_byte"]:c["end_byte"]].decode()
        assert html.startswith(toks[c["start_token"]]["token"]) and html.endswith(toks[c["end_token"] - 1]["token"])
    assert [a["long"] for a in ex["annotations"]] == [-1, 15, 15, -1, 16]
    assert ex["annotations"][2]["short"] == [[213, 215], [220, 222]]
    # label of example 1: the first annotation with a short answer (the 3rd), first short answer
    w1 = [w for w in windows if w["example_id"] == ex["example_id"]]
    assert {w["answer_type"] for w in w1} >= {1, 2} and 3 not in {w["answer_type"] for w in w1}
    for w in w1:
        if w["answer_type"] == 1:
            s, e = w["unit_map"][w["start_position"]], w["unit_map"][w["end_position"]]
            assert (s, e + 1) == (213, 215)
            b0, b1 = ex["token_bytes"][s][0], ex["token_bytes"][e][1]
            assert first["document_html"].encode()[b0:b1] == b"Tracy McConnell"
    # label of example 2: the YES annotation comes first -> yes windows over candidate 16
    w2 = [w for w in windows if w["example_id"] == "42"]
    assert 3 in {w["answer_type"] for w in w2} and 1 not in {w["answer_type"] for w in w2}
    for w in w2:
        if w["answer_type"] == 3:
            assert w["candidates"][w["long_position"]][0] == 16
    # HTML tokens are units without subwords
    html_units = {i for i, t in enumerate(toks) if t["html_token"]}
    assert html_units and not html_units & {u for w in windows for u in w["unit_map"]}


def test_workers_give_identical_outputs(tmp_path):
    outs = []
    for workers in (1, 2):
        d = tmp_path / f"w{workers}"
        assert main(["--input", str(NQ_DEV), str(NQ_TRAIN), "--output-dir", str(d), "--split", "train",
                     "--max-length", "128", "--doc-stride", "49", "--workers", str(workers), "--no-progress",
                     *GPT2_ARGS]) == 0
        outs.append([(d / f"train.{k}.jsonl").read_bytes() for k in ("examples", "windows")])
    assert outs[0] == outs[1]


# ---------------------------------------------------------------------------
# bad input

NQ_RECORD = RecordEdits(lambda: load(NQ_DEV)[0])


BAD = {
    "missing_question": (NQ_RECORD.delete("question_text"), "question_text", "missing_field"),
    # (no annotations at all is a blind test record: tests/test_qa_blind.py)
    "annotations_not_a_list": (NQ_RECORD.set(["annotations"], {"long_answer": None}), "annotations", "wrong_type"),
    "missing_nested": (NQ_RECORD.edit(lambda r: r["annotations"][0].pop("yes_no_answer")),
                       "annotations[0].yes_no_answer", "missing_field"),
    "wrong_type": (NQ_RECORD.set(["long_answer_candidates"], "x"), "long_answer_candidates", "wrong_type"),
    "candidate_not_object": (NQ_RECORD.set(["long_answer_candidates", 3], 7), "long_answer_candidates[3]", "wrong_type"),
    "candidate_outside_document": (NQ_RECORD.set(["long_answer_candidates", 3, "end_token"], 10 ** 6),
                                   "long_answer_candidates[3].start_token/end_token", "offset_out_of_range"),
    "short_outside_document": (NQ_RECORD.set(["annotations", 0, "short_answers", 0, "start_token"], -5),
                               "annotations[0].short_answers[0].start_token/end_token", "offset_out_of_range"),
    "short_outside_long": (NQ_RECORD.set(["annotations", 0, "short_answers", 0], {"start_token": 5, "end_token": 7}),
                           "annotations[0].short_answers[0]", "answer_outside_candidate"),
    "long_not_its_candidate": (NQ_RECORD.set(["annotations", 0, "long_answer", "candidate_index"], 16),
                               "annotations[0].long_answer", "answer_outside_candidate"),
    "candidate_index_out_of_range": (NQ_RECORD.set(["annotations", 0, "long_answer", "candidate_index"], 999),
                                     "annotations[0].long_answer.candidate_index", "offset_out_of_range"),
    "bad_yes_no": (NQ_RECORD.set(["annotations", 0, "yes_no_answer"], "MAYBE"),
                   "annotations[0].yes_no_answer", "invalid_value"),
    "empty_document": (NQ_RECORD.set(["document_text"], ""), "document_text", "empty_document"),
    "html_only_document": (NQ_RECORD.edit(lambda r: r.update(document_text="<P> </P>", long_answer_candidates=[
        {"start_token": 0, "end_token": 2, "top_level": True}], annotations=[])),
        "document_text/document_tokens", "empty_document"),
    "non_utf8": (lambda: json.dumps(load(NQ_DEV)[0]).encode().replace(b"how i.met", b"how \xff.met"),
                 "question_text", "non_utf8"),
    "lone_surrogate": (lambda: json.dumps(load(NQ_DEV)[0]).encode().replace(b"how i.met", b"how \\ud800.met"),
                       "question_text", "non_utf8"),
    "malformed_json": (lambda: b'{"example_id": 1, ', "<line>", "malformed_json"),
    "duplicate_example_id": (lambda: json.dumps(load(NQ_DEV)[0]).encode(), "example_id", "duplicate_example_id"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_fail_and_skip(tmp_path, case):
    make, field, reason = BAD[case]
    good = json.dumps(load(NQ_DEV)[0]).encode()
    path = tmp_path / "in.jsonl"
    path.write_bytes(good + b"\n" + make() + b"\n")
    out = tmp_path / "out"
    cfg = WindowConfig(max_length=128, doc_stride=49)
    with pytest.raises(InputError) as err:
        run_pipeline(read_nq, [str(path)], str(out), "dev", SPEC, cfg, on_error="fail", progress=False)
    e = err.value
    assert (e.path, e.line, e.field, e.reason) == (str(path), 2, field, reason), str(e)
    assert str(e).startswith(f"{path}:2: field '{field}'")
    assert not out.exists()  # nothing written, not even the directory
    report, _ = run_pipeline(read_nq, [str(path)], str(out), "dev", SPEC, cfg, on_error="skip", progress=False)
    assert report.kept == 1 and dict(report.skipped) == {reason: 1}
    examples, windows, rep = read_outputs(out, "dev")
    assert len(examples) == 1 and windows and rep["skipped_by_reason"] == {reason: 1}


def test_cli_fail_writes_nothing_and_names_file_line_field(tmp_path, capsys):
    """The command line in process (``python -m fairseq_poolingformer.preprocess.nq`` itself runs in the recipe test)."""
    bad = json.loads(json.dumps(load(NQ_DEV)[0]))
    bad["long_answer_candidates"][0]["end_token"] = 10 ** 6
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(load(NQ_DEV)[0]) + "\n\n" + json.dumps(bad) + "\n")
    out = tmp_path / "out"
    rc = main(["--input", str(path), "--output-dir", str(out), "--split", "dev", "--no-progress", *GPT2_ARGS])
    stderr = capsys.readouterr().err
    assert rc == 1
    assert f"{path}:3: field 'long_answer_candidates[0].start_token/end_token'" in stderr
    assert "no output written" in stderr and not out.exists()


def test_foreign_dictionary_fails_on_unk_rate_and_writes_nothing(tmp_path, capsys):
    """GPT-2 BPE ids through a dictionary that does not belong to them (the sentencepiece test
    model's dict.txt): almost every subword becomes <unk>. One error line naming the dictionary,
    the BPE files, the rate and the counts; no output, no temporary file left."""
    from fairseq.data import Dictionary

    from fairseq_poolingformer.preprocess import bpe

    foreign = tmp_path / "dict.txt"
    assert bpe.main(["--bpe", "sentencepiece", "--sentencepiece-model",
                     str(DATA / "sentencepiece" / "test_model.model"), "--write-dict", str(foreign)]) == 0
    # reference: the BPE ids of the document (through the right dictionary) that the foreign one lacks
    gpt2 = build_tokenizer(SPEC)
    ids = tokenize_example(read_nq(load(NQ_DEV)[0], "x", 1), gpt2).ids
    symbols = set(Dictionary.load(str(foreign)).symbols)
    unk = sum(gpt2.dictionary[i] not in symbols for i in ids)
    assert unk > 0.99 * len(ids)
    out = tmp_path / "out"
    out.mkdir()
    capsys.readouterr()
    argv = ["--input", str(NQ_DEV), "--output-dir", str(out), "--split", "dev", "--no-progress", *GPT2_ARGS[:-2],
            "--dict", str(foreign)]
    assert main(argv) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: {100 * unk / len(ids):.1f}% of the {len(ids)} document subwords ({unk}) became <unk> "
                   f"(limit 1%, --max-unk-rate 0.01): the dictionary {foreign} does not belong to the BPE "
                   f"(--encoder-json {BPE / 'encoder.json'}, --vocab-bpe {BPE / 'vocab.bpe'}), or the BPE does not "
                   f"cover this text; pass --max-unk-rate 1 to accept it; no output written"]
    assert os.listdir(out) == []
    # the override accepts it and reports the same counts
    assert main([*argv, "--max-unk-rate", "1"]) == 0
    rep = read_outputs(out, "dev")[2]
    assert (rep["tokens"], rep["unk_tokens"], rep["unk_rate"]) == (len(ids), unk, unk / len(ids))
    assert f"document subwords {len(ids)}, <unk> {unk} ({100 * unk / len(ids):.2f}%)" in capsys.readouterr().err


def test_all_records_bad_is_an_error(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"example_id": 1}\n')
    with pytest.raises(InputError, match="no usable record"):
        run_pipeline(read_nq, [str(path)], str(tmp_path / "o"), "dev", SPEC, WindowConfig(), on_error="skip",
                     progress=False)
    assert not (tmp_path / "o").exists()


def test_recipe_binarize_end_to_end(tmp_path):
    """recipes/nq/binarize.sh: windows (gzipped JSONL) -> qa_binarize; binaries hold the windows."""
    import numpy as np
    from fairseq.data.indexed_dataset import MMapIndexedDataset

    out = tmp_path / "nq"
    proc = subprocess.run(["bash", str(REPO / "recipes" / "nq" / "binarize.sh"), str(out), "--valid", str(NQ_DEV),
                           *GPT2_ARGS, "--max-length", "256", "--doc-stride", "98", "--no-progress"],
                          cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr
    with gzip.open(out / "jsonl" / "valid.windows.jsonl.gz", "rt", encoding="utf-8") as f:
        windows = [json.loads(line) for line in f]
    labels = np.load(out / "bin" / "valid.labels.npy")
    ids = MMapIndexedDataset(str(out / "bin" / "valid.input_ids"))
    assert len(windows) == len(ids) == labels.shape[0] > 1
    for i, w in enumerate(windows):
        assert ids[i].tolist() == w["input_ids"]
        assert labels[i, 3:].tolist() == [w["answer_type"], w["start_position"], w["end_position"],
                                          w["long_position"]]
    assert (out / "bin" / "dict.txt").read_bytes() == (BPE / "dict.txt").read_bytes()
    assert not list(out.glob(".bin.tmp.*"))


def test_a_file_that_is_not_a_dictionary_is_one_line(tmp_path, capsys):
    """encoder.json passed as --dict (the files users mix up): its first line is named, shortly."""
    gpt2 = str(DATA / "gpt2_bpe")
    code = main(["--input", str(NQ_DEV), "--output-dir", str(tmp_path / "out"), "--split", "valid", "--bpe", "gpt2",
                    "--encoder-json", os.path.join(gpt2, "encoder.json"), "--vocab-bpe", os.path.join(gpt2, "vocab.bpe"),
                    "--dict", os.path.join(gpt2, "encoder.json")])
    err = capsys.readouterr().err
    assert code != 0 and not (tmp_path / "out").exists()
    assert err.strip() == (f"error: {os.path.join(gpt2, 'encoder.json')}:1: field 'dict': not a Fairseq dict.txt line "
                           """('<token> <count>'): '{"!": 0, "\\\\"": 1, "#": 2, "$": 3, "%": 4'...; no output written""")
