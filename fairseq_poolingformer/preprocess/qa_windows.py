"""QA examples -> windows ``<s> question </s> document span </s>`` with labels, and the
streaming pipeline shared by ``fairseq_poolingformer.preprocess.nq`` and ``fairseq_poolingformer.preprocess.tydi``.

Output format (one split): ``docs/qa_data_format.md``. In short, per example one line of
``<split>.examples.jsonl`` (question, candidates, units: compact for NQ, see
``fairseq_poolingformer.preprocess.qa_units``) and per window one line of
``<split>.windows.jsonl`` (input ids, unit map, candidates and labels relative to the window).

Windows: the document subwords are cut into spans of ``budget = max_length - question_len - 1``
subwords starting at ``0, doc_stride, 2 * doc_stride, ...`` until a span reaches the end (the
step is ``min(doc_stride, budget)``, so no subword is ever left out). ``question_len`` counts
``<s> question </s>`` with the question truncated to ``max_question_len`` subwords.

Labels, relative to each window (answer_type 0 null, 1 short/minimal, 2 long-only/passage-only,
3 yes, 4 no), for labelled examples only:
  1 when the gold short/minimal answer's subwords are all inside the window;
  3 / 4 for a yes/no answer when the gold long answer/passage overlaps the window;
  2 when the gold long answer/passage overlaps the window (and no short answer is inside);
  0 otherwise. ``long_position`` is the gold candidate's position in the window's
  ``candidates`` list (-1 when absent); a candidate is listed when it overlaps the window.
Training (``negative_rate < 1``): each answer_type-0 window is kept with probability
``negative_rate``, drawn from ``random.Random(f"{seed}:{example_id}")`` so the choice does not
depend on the number of workers. ``window_index`` numbers the windows before sub-sampling.

Unlabelled examples (records without ``annotations``, or with ``null`` / ``[]``: the blind NQ and
TyDi QA test sets) are kept whole: every window, whatever ``negative_rate``, written without the
four label fields (``answer_type``, ``start_position``, ``end_position``, ``long_position``), and
the example with ``"annotations": null``. Nothing about their answers is invented; they can be
predicted, not trained on. The report counts them.
"""
from __future__ import annotations

import argparse
import functools
import glob
import gzip
import json
import os
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from fairseq_poolingformer.preprocess.common import (
    MAX_UNK_RATE, InputError, Report, atomic_outputs, iter_lines, parallel_map, parse_jsonl_line, require,
)
from fairseq_poolingformer.preprocess.qa_tokenize import TokenizedDoc, TokenizerSpec, get_tokenizer, tokenize_text, tokenize_tokens
from fairseq_poolingformer.preprocess.qa_units import units_to_json

__all__ = [
    "Candidate", "Annotation", "QAExample", "choose_label", "WindowConfig",
    "tokenize_example", "window_spans", "build_windows", "iter_windows", "example_record",
    "prepare_example", "process_example", "run_pipeline", "output_paths", "expand_inputs", "window_summary",
    "add_common_args", "tokenizer_spec_from_args", "negative_rate_from_args", "main_for",
    "require_at", "require_yes_no", "check_text", "read_annotations", "UnkRateError", "check_unk_rate",
]

ANSWER_TYPES = {"null": 0, "short": 1, "long": 2, "yes": 3, "no": 4}
YES_NO = ("NONE", "YES", "NO")


# ---------------------------------------------------------------------------
# the normalized example (both datasets)

@dataclass
class Candidate:
    """A long-answer (NQ) / passage (TyDi) candidate; ``index`` is its position in the input list."""
    index: int
    start_token: int   # NQ token offsets (end exclusive); TyDi: -1
    end_token: int
    start_byte: int    # NQ original: HTML byte offsets; NQ simplified: -1; TyDi: plaintext bytes
    end_byte: int
    top_level: bool = True

    def span(self, dataset: str) -> tuple[int, int]:
        """Source offsets used to find the candidate's units (tokens for NQ, bytes for TyDi)."""
        return (self.start_token, self.end_token) if dataset == "nq" else (self.start_byte, self.end_byte)

    def to_json(self) -> dict:
        return {"index": self.index, "start_token": self.start_token, "end_token": self.end_token,
                "start_byte": self.start_byte, "end_byte": self.end_byte, "top_level": self.top_level}


@dataclass
class Annotation:
    """One annotation, in source offsets (NQ tokens, TyDi bytes); ``long_index`` -1 = null."""
    long_index: int = -1
    short_spans: list[tuple[int, int]] = field(default_factory=list)
    yes_no: str = "NONE"

    @property
    def kind(self) -> str:
        if self.long_index < 0:
            return "null"
        if self.yes_no in ("YES", "NO"):
            return self.yes_no.lower()
        return "short" if self.short_spans else "long"

    def to_json(self) -> dict:
        return {"long": self.long_index, "short": [list(s) for s in self.short_spans], "yes_no": self.yes_no}


@dataclass
class QAExample:
    """A document with its question, candidates and annotations.

    NQ: ``tokens`` (+ ``html`` flags, ``token_bytes`` for the original format).
    TyDi: ``text`` (``document_plaintext``); all offsets are UTF-8 byte offsets into it.
    """
    example_id: str
    dataset: str            # "nq" | "tydi"
    language: str
    question: str
    candidates: list[Candidate]
    annotations: list[Annotation] | None     # None: unlabelled (a blind test record)
    tokens: list[str] | None = None
    html: list[bool] | None = None
    token_bytes: list[tuple[int, int]] | None = None
    text: str | None = None

    @property
    def labelled(self) -> bool:
        return self.annotations is not None

    @property
    def label(self) -> Annotation:
        return choose_label(self.annotations or [])


def choose_label(annotations: Sequence[Annotation]) -> Annotation:
    """The training label of a (possibly 5-way / 3-way annotated) example: the first annotation
    with a short/minimal or yes/no answer, else the first with a long answer/passage, else null."""
    for a in annotations:
        if a.kind in ("short", "yes", "no"):
            return a
    for a in annotations:
        if a.kind == "long":
            return a
    return Annotation()


# ---------------------------------------------------------------------------
# tokenization of an example

def tokenize_example(ex: QAExample, tokenizer, drop_html: bool = True,
                     split_at_answers: bool = False) -> TokenizedDoc:
    """Subwords of the document. NQ: HTML tokens get no subwords when ``drop_html``.
    TyDi: segments are cut at passage boundaries, and at every annotation's minimal-answer
    boundaries when ``split_at_answers`` (so that gold spans map to subwords exactly)."""
    if ex.dataset == "nq":
        return tokenize_tokens(ex.tokens, tokenizer, ex.html if drop_html else None)
    cuts = [b for c in ex.candidates for b in (c.start_byte, c.end_byte)]
    if split_at_answers:
        cuts += [b for a in ex.annotations or [] for s in a.short_spans for b in s]
    return tokenize_text(ex.text, tokenizer, cuts)


# ---------------------------------------------------------------------------
# windows

@dataclass(frozen=True)
class WindowConfig:
    max_length: int = 4096
    doc_stride: int = 1568
    max_question_len: int = 64
    negative_rate: float = 1.0     # probability of keeping an answer_type-0 window
    seed: int = 1
    drop_html: bool = True         # NQ
    split_at_answers: bool = False  # TyDi

    def check(self) -> None:
        if self.max_question_len < 1:
            raise ValueError(f"max_question_len must be >= 1, got {self.max_question_len}")
        if self.max_length < self.max_question_len + 4:
            raise ValueError(f"max_length {self.max_length} leaves no room for the document "
                             f"(needs >= max_question_len + 4 = {self.max_question_len + 4})")
        if self.doc_stride < 1:
            raise ValueError(f"doc_stride must be >= 1, got {self.doc_stride}")
        if not 0.0 <= self.negative_rate <= 1.0:
            raise ValueError(f"negative_rate must be in [0, 1], got {self.negative_rate}")


def window_spans(num_subwords: int, budget: int, stride: int) -> list[tuple[int, int]]:
    """Inclusive document-subword ranges ``(first, last)`` of the windows."""
    spans, start = [], 0
    while start < num_subwords:
        last = min(start + budget, num_subwords) - 1
        spans.append((start, last))
        if last == num_subwords - 1:
            break
        start += min(stride, budget)
    return spans


@dataclass
class WindowStats:
    windows: int = 0
    kept: int = 0
    negatives_dropped: int = 0
    answer_types: Counter = field(default_factory=Counter)
    unlabelled: int = 0             # windows of unlabelled examples (kept, no labels)
    labels_not_exact: int = 0       # gold span whose subwords map back to other offsets
    labels_without_subwords: int = 0  # gold span with no subword at all (answer lost)
    tokens: int = 0                 # document subwords (each counted once, not per window)
    unk_tokens: int = 0             # of which the dictionary's <unk>

    @property
    def unk_rate(self) -> float:
        return self.unk_tokens / self.tokens if self.tokens else 0.0


def _gold_subwords(ex: QAExample, doc: TokenizedDoc, label: Annotation, contained: bool,
                   stats: WindowStats) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """Subword spans (inclusive) of the label's long candidate and first short answer."""
    long_sw = short_sw = None
    if label.long_index >= 0:
        s, e = ex.candidates[label.long_index].span(ex.dataset)
        long_sw = doc.subword_span(s, e, contained)
        if long_sw is None:
            stats.labels_without_subwords += 1
    if label.short_spans and label.long_index >= 0:
        s, e = label.short_spans[0]
        short_sw = doc.subword_span(s, e, contained)
        if short_sw is None:
            stats.labels_without_subwords += 1
        elif doc.source_span(*short_sw) != (s, e):
            stats.labels_not_exact += 1
    return long_sw, short_sw


def build_windows(ex: QAExample, doc: TokenizedDoc, question_ids: list[int], bos: int, eos: int,
                  cfg: WindowConfig, stats: WindowStats) -> list[dict]:
    """All windows of one example as contract records (after negative sub-sampling)."""
    return list(iter_windows(ex, doc, question_ids, bos, eos, cfg, stats))


def iter_windows(ex: QAExample, doc: TokenizedDoc, question_ids: list[int], bos: int, eos: int,
                 cfg: WindowConfig, stats: WindowStats) -> Iterator[dict]:
    """``build_windows`` one window at a time (the reader streams a long document's windows
    through the model without holding them all); ``stats`` is complete once exhausted."""
    q = question_ids[:cfg.max_question_len]
    question_len = len(q) + 2                       # <s> q </s>
    budget = cfg.max_length - question_len - 1      # room for the document span and the final </s>
    contained = ex.dataset == "nq" or cfg.split_at_answers
    cand_sw = [doc.subword_span(*c.span(ex.dataset), contained=contained) for c in ex.candidates]
    label = ex.label
    long_sw, short_sw = _gold_subwords(ex, doc, label, contained, stats) if ex.labelled else (None, None)
    kind = label.kind
    rng = random.Random(f"{cfg.seed}:{ex.example_id}")

    for w, (first, last) in enumerate(window_spans(len(doc.ids), budget, cfg.doc_stride)):
        off = question_len - first                 # window position of document subword k: k + off
        input_ids = [bos] + q + [eos] + doc.ids[first:last + 1] + [eos]
        unit_map = [-1] * question_len + doc.unit_of[first:last + 1] + [-1]
        cands, long_position = [], -1
        for pos, sw in enumerate(cand_sw):
            if sw is None or sw[1] < first or sw[0] > last:
                continue
            if pos == label.long_index:
                long_position = len(cands)
            cands.append([pos, max(sw[0], first) + off, min(sw[1], last) + off])
        record = {
            "example_id": ex.example_id, "window_index": w, "input_ids": input_ids,
            "question_len": question_len, "unit_map": unit_map, "candidates": cands,
        }
        stats.windows += 1
        if not ex.labelled:
            stats.kept += 1
            stats.unlabelled += 1
            yield record
            continue
        answer_type, start_position, end_position = 0, 0, 0
        if long_sw is not None and long_position >= 0:
            if kind == "short" and short_sw is not None and first <= short_sw[0] and short_sw[1] <= last:
                answer_type = 1
                start_position, end_position = short_sw[0] + off, short_sw[1] + off
            elif kind in ("yes", "no"):
                answer_type = ANSWER_TYPES[kind]
            else:
                answer_type = 2
        if answer_type == 0 and cfg.negative_rate < 1.0 and rng.random() >= cfg.negative_rate:
            stats.negatives_dropped += 1
            continue
        stats.kept += 1
        stats.answer_types[answer_type] += 1
        yield {**record, "answer_type": answer_type, "start_position": start_position,
               "end_position": end_position, "long_position": long_position}


def example_record(ex: QAExample, doc: TokenizedDoc) -> dict:
    """The ``<split>.examples.jsonl`` record of one example."""
    rec = {
        "example_id": ex.example_id, "dataset": ex.dataset, "language": ex.language,
        "question": ex.question, "candidates": [c.to_json() for c in ex.candidates],
        # NQ: unit i is token i, written compactly ("units": null, "num_units": N); TyDi: byte spans
        **units_to_json(doc.units, compact=ex.dataset == "nq"),
        "annotations": None if ex.annotations is None else [a.to_json() for a in ex.annotations],
    }
    if ex.token_bytes is not None:
        rec["token_bytes"] = [list(b) for b in ex.token_bytes]
    return rec


def prepare_example(ex: QAExample, tokenizer, cfg: WindowConfig, path: str = "<input>", line: int = 0,
                    field_name: str | None = None) -> tuple[TokenizedDoc, WindowStats]:
    """Tokenize one example's document (the first step of ``process_example``, shared with the
    reader). Raises ``InputError`` on ``field_name`` for a document without any subword
    (empty, or HTML only)."""
    doc = tokenize_example(ex, tokenizer, cfg.drop_html, cfg.split_at_answers)
    if not doc.ids:
        if field_name is None:
            field_name = "document_text/document_tokens" if ex.dataset == "nq" else "document_plaintext"
        raise InputError(path, line, field_name, "empty document (no subword to put in a window)",
                         reason="empty_document")
    return doc, WindowStats(tokens=len(doc.ids), unk_tokens=doc.ids.count(tokenizer.dictionary.unk()))


def process_example(ex: QAExample, tokenizer, cfg: WindowConfig,
                    path: str = "<input>", line: int = 0) -> tuple[dict, list[dict], WindowStats]:
    """Tokenize one example and build its windows. Raises ``InputError`` for a document
    without any subword (empty, or HTML only)."""
    doc, stats = prepare_example(ex, tokenizer, cfg, path, line)
    d = tokenizer.dictionary
    windows = build_windows(ex, doc, tokenizer.encode(ex.question), d.bos(), d.eos(), cfg, stats)
    return example_record(ex, doc), windows, stats


# ---------------------------------------------------------------------------
# the streaming pipeline

Reader = Callable[[dict, str, int], QAExample]   # (record, path, line) -> example; raises InputError


def _dumps(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _work(reader: Reader, spec: TokenizerSpec, cfg: WindowConfig,
          item: tuple[str, int, bytes]) -> tuple[str, list[str], WindowStats, tuple] | InputError:
    """Worker: one raw input line -> (example line, window lines, stats, (path, line, example_id))
    or the InputError."""
    path, line, raw = item
    try:
        record = parse_jsonl_line(path, line, raw)
        ex = reader(record, path, line)
        example, windows, stats = process_example(ex, get_tokenizer(spec), cfg, path, line)
        return _dumps(example), [_dumps(w) for w in windows], stats, (path, line, ex.example_id)
    except InputError as e:
        return e


def expand_inputs(inputs: Sequence[str]) -> list[str]:
    """Files as given; a directory stands for its ``*.jsonl.gz`` and ``*.jsonl`` files (sorted)."""
    files: list[str] = []
    for p in inputs:
        if os.path.isdir(p):
            found = sorted(glob.glob(os.path.join(p, "*.jsonl.gz")) + glob.glob(os.path.join(p, "*.jsonl")))
            if not found:
                raise FileNotFoundError(f"{p}: no *.jsonl or *.jsonl.gz file in this directory")
            files.extend(found)
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    return files


def _raw_lines(files: Sequence[str]) -> Iterator[tuple[str, int, bytes]]:
    for path in files:
        for line, raw in iter_lines(path):
            if raw.strip():  # blank lines are not records
                yield path, line, raw


def output_paths(output_dir: str, split: str, compress: bool = False) -> tuple[str, str, str]:
    """(examples, windows, report) paths of one split (``.jsonl.gz`` when ``compress``)."""
    p = os.path.join(output_dir, split)
    ext = ".jsonl.gz" if compress else ".jsonl"
    return f"{p}.examples{ext}", f"{p}.windows{ext}", f"{p}.report.json"


def _open_text(path: str, compress: bool):
    if compress:
        return gzip.open(path, "wt", encoding="utf-8", compresslevel=3)
    return open(path, "w", encoding="utf-8")


def run_pipeline(reader: Reader, inputs: Sequence[str], output_dir: str, split: str,
                 spec: TokenizerSpec, cfg: WindowConfig, workers: int = 1, on_error: str = "fail",
                 progress: bool = True, name: str = "qa", compress: bool = False,
                 max_unk_rate: float = MAX_UNK_RATE) -> tuple[Report, WindowStats]:
    """Stream every input line through ``reader`` and the windowing; write the examples and
    windows of the split together (or nothing), then the JSON report. Raises ``InputError``
    on the first bad record (``on_error="fail"``) or when no record is kept, and
    ``UnkRateError`` when more than ``max_unk_rate`` of the kept documents' subwords are the
    dictionary's ``<unk>`` (nothing written in either case)."""
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    if not 0.0 <= max_unk_rate <= 1.0:
        raise ValueError(f"--max-unk-rate must be between 0 and 1, got {max_unk_rate}")
    cfg.check()
    files = expand_inputs(inputs)
    get_tokenizer(spec)  # fail early (missing files) before any worker starts
    report = Report(f"{name} {split}")
    totals = WindowStats()
    examples_path, windows_path, report_path = output_paths(output_dir, split, compress)
    worker = functools.partial(_work, reader, spec, cfg)
    seen_ids: dict[str, str] = {}  # example_id -> "file:line" where it was kept
    with atomic_outputs([examples_path, windows_path]) as (tmp_examples, tmp_windows):
        with _open_text(tmp_examples, compress) as fe, _open_text(tmp_windows, compress) as fw:
            for result in parallel_map(worker, _raw_lines(files), workers=workers, chunksize=2,
                                       desc=f"{name} {split}", progress=progress):
                if isinstance(result, InputError):
                    if on_error == "fail":
                        raise result
                    report.skip(result)
                    continue
                example_line, window_lines, stats, (path, line, example_id) = result
                if example_id in seen_ids:
                    error = InputError(path, line, "example_id", f"duplicate example_id {example_id!r} "
                                       f"(first seen at {seen_ids[example_id]})", reason="duplicate_example_id")
                    if on_error == "fail":
                        raise error
                    report.skip(error)
                    continue
                seen_ids[example_id] = f"{path}:{line}"
                fe.write(example_line + "\n")
                for w in window_lines:
                    fw.write(w + "\n")
                report.keep()
                _add_stats(totals, stats)
        if report.kept == 0:
            raise InputError(", ".join(files), report.total, "<file>",
                             f"no usable record ({report.summary()})", reason="no_records")
        check_unk_rate(totals, spec, max_unk_rate)  # inside: a failure removes the temporaries
    _write_report(report_path, report, totals, cfg, max_unk_rate)
    return report, totals


def _add_stats(total: WindowStats, s: WindowStats) -> None:
    total.windows += s.windows
    total.kept += s.kept
    total.negatives_dropped += s.negatives_dropped
    total.answer_types.update(s.answer_types)
    total.unlabelled += s.unlabelled
    total.labels_not_exact += s.labels_not_exact
    total.labels_without_subwords += s.labels_without_subwords
    total.tokens += s.tokens
    total.unk_tokens += s.unk_tokens


class UnkRateError(ValueError):
    """Too many document subwords became ``<unk>``: the dictionary does not fit the BPE."""


def _bpe_files(spec: TokenizerSpec) -> str:
    if spec.kind == "gpt2":
        return f"--encoder-json {spec.encoder_json}, --vocab-bpe {spec.vocab_bpe}"
    return f"--sentencepiece-model {spec.sentencepiece_model}"


def check_unk_rate(stats: WindowStats, spec: TokenizerSpec, max_unk_rate: float) -> None:
    """Raise ``UnkRateError`` (one line naming the dictionary and the BPE files) when the
    ``<unk>`` rate of the document subwords is above ``max_unk_rate``. Correct data has none:
    GPT-2 BPE covers every byte, and an XLM-R dictionary every piece of its model."""
    if stats.unk_rate > max_unk_rate:
        raise UnkRateError(
            f"{100 * stats.unk_rate:.1f}% of the {stats.tokens} document subwords ({stats.unk_tokens}) became "
            f"<unk> (limit {100 * max_unk_rate:g}%, --max-unk-rate {max_unk_rate:g}): the dictionary "
            f"{spec.dict_path} does not belong to the BPE ({_bpe_files(spec)}), or the BPE does not cover "
            f"this text; pass --max-unk-rate 1 to accept it")


def window_summary(stats: WindowStats) -> str:
    types = ", ".join(f"{k}: {stats.answer_types[v]}" for k, v in ANSWER_TYPES.items())
    return (f"windows: kept {stats.kept} of {stats.windows} ({stats.negatives_dropped} negatives dropped); "
            f"answer types {{{types}}}, unlabelled {stats.unlabelled}; labels not exact {stats.labels_not_exact}, "
            f"labels without subwords {stats.labels_without_subwords}; document subwords {stats.tokens}, "
            f"<unk> {stats.unk_tokens} ({100 * stats.unk_rate:.2f}%)")


def _write_report(path: str, report: Report, stats: WindowStats, cfg: WindowConfig,
                  max_unk_rate: float) -> None:
    data = report.to_dict()
    # document subwords of the kept examples (each once, whatever the windows)
    data.update(tokens=stats.tokens, unk_tokens=stats.unk_tokens, unk_rate=stats.unk_rate,
                max_unk_rate=max_unk_rate)
    data["windows"] = {
        "total": stats.windows, "kept": stats.kept, "negatives_dropped": stats.negatives_dropped,
        "answer_types": {k: stats.answer_types[v] for k, v in ANSWER_TYPES.items()},
        "unlabelled": stats.unlabelled,
        "labels_not_exact": stats.labels_not_exact,
        "labels_without_subwords": stats.labels_without_subwords,
    }
    data["config"] = cfg.__dict__.copy()
    with atomic_outputs([path]) as (tmp,):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
            f.write("\n")


# ---------------------------------------------------------------------------
# command line (shared by fairseq_poolingformer.preprocess.nq and fairseq_poolingformer.preprocess.tydi)

def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, nargs="+",
                   help="JSONL(.gz) files, or directories of *.jsonl(.gz) shards")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--split", required=True, help="output prefix: train, dev, test, ...")
    p.add_argument("--bpe", choices=["gpt2", "sentencepiece"], required=True)
    p.add_argument("--dict", required=True, help="the model's fairseq dict.txt")
    p.add_argument("--encoder-json", help="GPT-2 BPE encoder.json (--bpe gpt2)")
    p.add_argument("--vocab-bpe", help="GPT-2 BPE vocab.bpe (--bpe gpt2)")
    p.add_argument("--sentencepiece-model", help="sentencepiece .model (--bpe sentencepiece)")
    p.add_argument("--max-length", type=int, default=4096, help="window length incl. special tokens")
    p.add_argument("--doc-stride", type=int, default=1568, help="step between window starts (subwords)")
    p.add_argument("--max-question-len", type=int, default=64, help="question subwords kept")
    p.add_argument("--negative-rate", type=float, default=None,
                   help="keep each window without answer with this probability "
                        "(default 0.5 for --split train, 1.0 otherwise)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--on-error", choices=["fail", "skip"], default="fail",
                   help="fail (default): stop at the first bad record, write nothing; "
                        "skip: skip bad records and count them by reason")
    p.add_argument("--compress", action="store_true",
                   help="write <split>.examples.jsonl.gz / <split>.windows.jsonl.gz (gzip)")
    p.add_argument("--max-unk-rate", type=float, default=MAX_UNK_RATE,
                   help="largest fraction of document subwords allowed to be the dictionary's <unk> "
                        "(default %(default)s); above it the run fails and writes nothing, as a dictionary "
                        "that does not belong to the BPE would make almost every subword <unk>")
    p.add_argument("--no-progress", action="store_true")


def tokenizer_spec_from_args(args: argparse.Namespace) -> TokenizerSpec:
    return TokenizerSpec(args.bpe, args.dict, args.encoder_json, args.vocab_bpe, args.sentencepiece_model)


def negative_rate_from_args(args: argparse.Namespace) -> float:
    if args.negative_rate is not None:
        return args.negative_rate
    return 0.5 if args.split == "train" else 1.0


def main_for(name: str, reader: Reader, args: argparse.Namespace, cfg: WindowConfig) -> int:
    """Run the pipeline for a parsed command line; print the report; return the exit status."""
    try:
        report, stats = run_pipeline(reader, args.input, args.output_dir, args.split,
                                     tokenizer_spec_from_args(args), cfg, workers=args.workers,
                                     on_error=args.on_error, progress=not args.no_progress, name=name,
                                     compress=args.compress, max_unk_rate=args.max_unk_rate)
    except InputError as e:
        print(e.cli_message(args.on_error), file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"error: {e}; no output written", file=sys.stderr)
        return 1
    report.log()
    print(f"{name} {args.split}: {window_summary(stats)}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------
# helpers for the readers

def require_at(obj: dict, key: str, types, path: str, line: int, where: str):
    """``common.require`` on a nested object; the error names the field as ``where.key``."""
    if not isinstance(obj, dict):
        raise InputError(path, line, where, f"expected an object, got {type(obj).__name__}",
                         reason="wrong_type")
    try:
        return require(obj, key, types, path, line)
    except InputError as e:
        raise InputError(path, line, f"{where}.{key}" if where else key, e.message, e.reason) from None


def read_annotations(record: dict, path: str, line: int,
                     read_one: Callable[[dict, str], Annotation]) -> list[Annotation] | None:
    """The record's annotations through ``read_one(annotation, where)``; ``None`` (unlabelled)
    when ``annotations`` is absent, ``null`` or ``[]``, as in the blind test sets."""
    if record.get("annotations") in (None, []):
        return None
    items = require(record, "annotations", list, path, line)
    return [read_one(a, f"annotations[{i}]") for i, a in enumerate(items)]


def require_yes_no(annotation: dict, has_long: bool, path: str, line: int, where: str, long_name: str) -> str:
    """The annotation's ``yes_no_answer``: one of YES_NO, and YES/NO only with a long answer
    (NQ) / passage answer (TyDi), named ``long_name`` in the error."""
    yes_no = require_at(annotation, "yes_no_answer", str, path, line, where)
    if yes_no not in YES_NO:
        raise InputError(path, line, f"{where}.yes_no_answer", f"expected one of {YES_NO}, got {yes_no!r}",
                         reason="invalid_value")
    if yes_no != "NONE" and not has_long:
        raise InputError(path, line, f"{where}.yes_no_answer", f"{yes_no} without a {long_name}",
                         reason="answer_outside_candidate")
    return yes_no


def check_text(text: str, path: str, line: int, field_name: str) -> None:
    """Raise ``InputError`` (``non_utf8``) if ``text`` holds a lone surrogate (``\\udXXX`` escape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(path, line, field_name,
                         f"not valid UTF-8 text: lone surrogate U+{ord(text[e.start]):04X} at character {e.start}",
                         reason="non_utf8") from None
