"""Contract-conformant QA windows built from the real NQ / TyDi QA samples, for the model-side tests.

Independent of the QA preprocessing (``fairseq_poolingformer/preprocess/nq.py``, ``fairseq_poolingformer/preprocess/tydi.py``): every unit
is one "subword" whose dictionary symbol is the unit's text (a word-level dictionary built here),
so expected offsets can be computed by hand. NQ units are the document tokens (token offsets
``[i, i + 1)``, written in the compact form), TyDi units are the whitespace-free runs of the plain text cut at passage and
answer boundaries (UTF-8 byte offsets). Windows, labels and files follow docs/qa_data_format.md.
"""
from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass, field

from fairseq.data import Dictionary

DATA = os.path.join(os.path.dirname(__file__), "data")
NQ_FILES = [os.path.join(DATA, "nq", "dev_sample.jsonl")]
TYDI_FILE = os.path.join(DATA, "tydiqa", "small_gold_annotation.jsonl.gz")


@dataclass
class Doc:
    example_id: str
    dataset: str
    language: str
    question: str
    units: list[list[int]]          # source offsets of each unit
    symbols: list[str]              # dictionary symbol of each unit (one subword per unit)
    candidates: list[dict]          # contract form
    cand_units: list[tuple[int, int]]  # inclusive unit range of each candidate (-1, -1 if none)
    long_index: int = -1            # gold candidate (list position)
    short_units: tuple[int, int] | None = None  # inclusive unit range of the gold short answer
    yes_no: str = "NONE"
    extra: dict = field(default_factory=dict)


def _symbol(text: str) -> str:
    return text if text and not any(c.isspace() for c in text) else "<unk>"


def nq_docs(paths: list[str] = NQ_FILES, max_tokens: int | None = None) -> list[Doc]:
    docs = []
    for path in paths:
        for line in open(path, encoding="utf-8"):
            d = json.loads(line)
            tokens = d["document_text"].split(" ")
            if max_tokens:
                tokens = tokens[:max_tokens]
            cands, cand_units = [], []
            for i, c in enumerate(d["long_answer_candidates"]):
                if c["end_token"] > len(tokens):
                    continue
                cands.append({"index": i, "start_token": c["start_token"], "end_token": c["end_token"],
                              "start_byte": -1, "end_byte": -1, "top_level": c["top_level"]})
                cand_units.append((c["start_token"], c["end_token"] - 1))
            a = d["annotations"][0]
            long_index = next((p for p, c in enumerate(cands) if c["index"] == a["long_answer"]["candidate_index"]), -1)
            short = None
            if a["short_answers"] and long_index >= 0:
                s = a["short_answers"][0]
                short = (s["start_token"], s["end_token"] - 1)
            docs.append(Doc(str(d["example_id"]), "nq", "english", d["question_text"],
                            [[i, i + 1] for i in range(len(tokens))], [_symbol(t) for t in tokens],
                            cands, cand_units, long_index, short, a["yes_no_answer"]))
    return docs


def _byte_units(text: str, cuts: set[int]) -> list[list[int]]:
    """Byte spans of whitespace-free runs of ``text``, also cut at the byte offsets ``cuts``."""
    units, start, pos = [], None, 0
    for ch in text:
        size = len(ch.encode("utf-8"))
        if ch.isspace():
            if start is not None:
                units.append([start, pos])
            start = None
        else:
            if start is not None and pos in cuts:
                units.append([start, pos])
                start = None
            if start is None:
                start = pos
        pos += size
    if start is not None:
        units.append([start, pos])
    return units


def tydi_docs(path: str = TYDI_FILE) -> list[Doc]:
    docs = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            text = d["document_plaintext"]
            raw = text.encode("utf-8")
            passages = d["passage_answer_candidates"]
            ann = next((a for a in d["annotations"] if a["minimal_answer"]["plaintext_start_byte"] >= 0),
                       d["annotations"][0])
            m = ann["minimal_answer"]
            cuts = {p["plaintext_start_byte"] for p in passages} | {p["plaintext_end_byte"] for p in passages}
            if m["plaintext_start_byte"] >= 0:
                cuts |= {m["plaintext_start_byte"], m["plaintext_end_byte"]}
            units = _byte_units(text, cuts)
            symbols = [_symbol(raw[s:e].decode("utf-8")) for s, e in units]
            cands, cand_units = [], []
            for i, p in enumerate(passages):
                inside = [u for u, (s, e) in enumerate(units)
                          if s >= p["plaintext_start_byte"] and e <= p["plaintext_end_byte"]]
                cands.append({"index": i, "start_token": -1, "end_token": -1,
                              "start_byte": p["plaintext_start_byte"], "end_byte": p["plaintext_end_byte"],
                              "top_level": True})
                cand_units.append((inside[0], inside[-1]) if inside else (-1, -1))
            long_index = ann["passage_answer"]["candidate_index"]
            short = None
            if m["plaintext_start_byte"] >= 0:
                inside = [u for u, (s, e) in enumerate(units)
                          if s >= m["plaintext_start_byte"] and e <= m["plaintext_end_byte"]]
                short = (inside[0], inside[-1])
            docs.append(Doc(str(d["example_id"]), "tydi", d["language"], d["question_text"], units, symbols,
                            cands, cand_units, long_index, short, ann["yes_no_answer"],
                            extra={"minimal": (m["plaintext_start_byte"], m["plaintext_end_byte"])}))
    return docs


def build_dictionary(docs: list[Doc]) -> Dictionary:
    d = Dictionary()
    for doc in docs:
        for s in doc.symbols + [_symbol(w) for w in doc.question.split()]:
            d.add_symbol(s)
    d.finalize(padding_factor=8)
    return d


def windows_for(doc: Doc, d: Dictionary, max_length: int, stride: int, max_question: int = 16) -> list[dict]:
    """Windows ``<s> question </s> document span </s>`` with labels, per the contract."""
    q = [d.bos()] + [d.index(_symbol(w)) for w in doc.question.split()][:max_question] + [d.eos()]
    qlen, n = len(q), len(doc.symbols)
    budget = max_length - qlen - 1
    starts = list(range(0, max(n - budget, 0) + 1, stride))
    if starts[-1] + budget < n:
        starts.append(n - budget)
    out = []
    for w, a in enumerate(starts):
        b = min(a + budget, n)
        ids = q + [d.index(s) for s in doc.symbols[a:b]] + [d.eos()]
        unit_map = [-1] * qlen + list(range(a, b)) + [-1]
        cands = []
        long_position = -1
        for pos, (cs, ce) in enumerate(doc.cand_units):
            if cs < 0 or ce < a or cs >= b:
                continue
            if pos == doc.long_index:
                long_position = len(cands)
            cands.append([pos, max(cs, a) - a + qlen, min(ce, b - 1) - a + qlen])
        answer_type, start, end = 0, 0, 0
        if doc.short_units and a <= doc.short_units[0] and doc.short_units[1] < b:
            answer_type = 1
            start, end = doc.short_units[0] - a + qlen, doc.short_units[1] - a + qlen
        elif long_position >= 0:
            answer_type = {"YES": 3, "NO": 4}.get(doc.yes_no, 2)
        out.append({"example_id": doc.example_id, "window_index": w, "input_ids": ids, "question_len": qlen,
                    "unit_map": unit_map, "candidates": cands, "answer_type": answer_type,
                    "start_position": start, "end_position": end, "long_position": long_position})
    return out


def example_record(doc: Doc, compact_nq: bool = True) -> dict:
    """The examples.jsonl record; NQ units (token i = unit i) in the compact form
    ``"units": null, "num_units": N`` unless ``compact_nq`` is False (both are valid)."""
    rec = {"example_id": doc.example_id, "dataset": doc.dataset, "language": doc.language,
           "question": doc.question, "candidates": doc.candidates, "units": doc.units}
    if doc.dataset == "nq" and compact_nq:
        assert doc.units == [[i, i + 1] for i in range(len(doc.units))]
        rec.update(units=None, num_units=len(doc.units))
    return rec


def write_split(docs: list[Doc], d: Dictionary, out_dir: str, split: str, max_length: int = 128,
                stride: int = 64) -> tuple[str, str]:
    """Write <split>.examples.jsonl and <split>.windows.jsonl; return their paths."""
    os.makedirs(out_dir, exist_ok=True)
    ex_path = os.path.join(out_dir, f"{split}.examples.jsonl")
    win_path = os.path.join(out_dir, f"{split}.windows.jsonl")
    with open(ex_path, "w", encoding="utf-8") as fe, open(win_path, "w", encoding="utf-8") as fw:
        for doc in docs:
            fe.write(json.dumps(example_record(doc), ensure_ascii=False) + "\n")
            for w in windows_for(doc, d, max_length, stride):
                fw.write(json.dumps(w) + "\n")
    return ex_path, win_path
