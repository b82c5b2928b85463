"""Document answers -> the official NQ / TyDi QA prediction files, with a report.

Outputs, exactly the official formats:
- ``--format nq``: one JSON object ``{"predictions": [...]}`` (NQ ``nq_eval.py``), each with
  ``example_id`` (int), ``long_answer`` {start_token, end_token, start_byte, end_byte},
  ``long_answer_score``, ``short_answers`` [{same four}], ``short_answers_score``,
  ``yes_no_answer`` ("NONE" / "YES" / "NO"); -1 offsets for a null answer.
- ``--format tydi``: JSONL (TyDi QA ``tydi_eval.py``), one line per example with
  ``example_id`` (int, as in the official files), ``language``, ``passage_answer_index``,
  ``passage_answer_score``, ``minimal_answer`` {start_byte_offset, end_byte_offset},
  ``minimal_answer_score``, ``yes_no_answer``.
Splits without gold (blind test sets, preprocessed from records without ``annotations``) are
predicted the same way: one entry per example.

Next to the output, ``<output stem>.report.json`` (also logged) counts examples and windows,
short answers by kind (span / YES / NO / null), long answers, and the predicted spans that are
exactly ``--max-answer-len`` subwords long (a gold answer longer than the limit can only come
out cut to it). Final numbers come from the official scripts, not from the criterion's
approximate window-level F1.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

from fairseq_poolingformer.preprocess.common import atomic_outputs
from fairseq_poolingformer.preprocess.qa_units import example_units
from fairseq_poolingformer.qa.combine import ExamplePrediction, combine_windows, logits_finite
from fairseq_poolingformer.qa.errors import ReaderError
from fairseq_poolingformer.qa.scores import WindowResult


def _int_id(example_id: str) -> int | str:
    """The official files use integer example ids; keep a non-numeric id as it is."""
    try:
        return int(example_id)
    except ValueError:
        return example_id


def unit_offsets(example: dict, pred: ExamplePrediction) -> tuple[int, int]:
    """Source offsets ``[start, end)`` of the predicted units ``unit_start..unit_end``: NQ token
    offsets, TyDi byte offsets (either form of the example's units, see
    ``fairseq_poolingformer.preprocess.qa_units``)."""
    units = example_units(example)
    return units[pred.unit_start][0], units[pred.unit_end][1]


def nq_entry(example: dict, pred: ExamplePrediction) -> dict:
    """One NQ prediction. NQ units are document tokens, ``units[u] = [start_token, end_token)``;
    byte offsets come from the example's ``token_bytes`` (original format) or are -1
    (simplified format: the official script then compares token offsets)."""
    null = {"start_token": -1, "end_token": -1, "start_byte": -1, "end_byte": -1}
    long_answer = dict(null)
    if pred.long_index >= 0:
        cand = example["candidates"][pred.long_index]
        long_answer = {k: int(cand[k]) for k in ("start_token", "end_token", "start_byte", "end_byte")}
    short_answers = []
    if pred.unit_start >= 0:
        start_token, end_token = unit_offsets(example, pred)
        start_byte = end_byte = -1
        token_bytes = example.get("token_bytes")
        if token_bytes:
            start_byte, end_byte = token_bytes[start_token][0], token_bytes[end_token - 1][1]
            if start_byte < 0 or end_byte < 0:
                start_byte = end_byte = -1
        short_answers.append({"start_token": int(start_token), "end_token": int(end_token),
                              "start_byte": int(start_byte), "end_byte": int(end_byte)})
    return {
        "example_id": _int_id(example["example_id"]),
        "long_answer": long_answer,
        "long_answer_score": float(pred.long_score),
        "short_answers": short_answers,
        "short_answers_score": float(pred.short_score),
        "yes_no_answer": pred.yes_no,
    }


def tydi_entry(example: dict, pred: ExamplePrediction) -> dict:
    """One TyDi QA prediction. TyDi units are byte spans: ``units[u] = [start_byte, end_byte)``."""
    passage_index = int(example["candidates"][pred.long_index]["index"]) if pred.long_index >= 0 else -1
    start_byte = end_byte = -1
    if pred.unit_start >= 0:
        start_byte, end_byte = unit_offsets(example, pred)
    return {
        "example_id": _int_id(example["example_id"]),
        "language": example["language"],
        "passage_answer_index": passage_index,
        "passage_answer_score": float(pred.long_score),
        "minimal_answer": {"start_byte_offset": int(start_byte), "end_byte_offset": int(end_byte)},
        "minimal_answer_score": float(pred.short_score),
        "yes_no_answer": pred.yes_no,
    }


def iter_examples(path: str) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


@dataclass
class PredictionReport:
    """What a prediction run wrote: counts by answer kind, and spans cut at the length limit."""
    examples: int = 0
    windows: int = 0
    examples_without_windows: int = 0
    short: Counter = field(default_factory=Counter)   # span / YES / NO / null
    long: Counter = field(default_factory=Counter)    # answer / null
    max_answer_len: int = 0
    spans_at_max_answer_len: int = 0

    def add(self, pred: ExamplePrediction, n_windows: int) -> None:
        self.examples += 1
        self.windows += n_windows
        self.examples_without_windows += n_windows == 0
        kind = pred.yes_no if pred.yes_no != "NONE" else ("span" if pred.unit_start >= 0 else "null")
        self.short[kind] += 1
        self.long["answer" if pred.long_index >= 0 else "null"] += 1
        self.spans_at_max_answer_len += pred.span_len == self.max_answer_len

    def to_dict(self) -> dict:
        return {"examples": self.examples, "windows": self.windows,
                "examples_without_windows": self.examples_without_windows,
                "short_answers": {k: self.short[k] for k in ("span", "YES", "NO", "null")},
                "long_answers": {k: self.long[k] for k in ("answer", "null")},
                "max_answer_len": self.max_answer_len,
                "spans_at_max_answer_len": self.spans_at_max_answer_len}

    def summary(self) -> str:
        s, lg = self.short, self.long
        return (f"{self.examples} predictions ({self.windows} windows, {self.examples_without_windows} examples "
                f"without windows); short answers: {s['span']} spans, {s['YES']} YES, {s['NO']} NO, "
                f"{s['null']} null; long answers: {lg['answer']}, null {lg['null']}; "
                f"{self.spans_at_max_answer_len} predicted spans are --max-answer-len {self.max_answer_len} "
                f"subwords long (longer answers are cut to it)")


def report_path(output: str) -> str:
    """``preds.json`` -> ``preds.report.json`` (next to the predictions)."""
    return os.path.splitext(output)[0] + ".report.json"


def write_predictions(examples_path: str, by_example: dict[int, list[tuple[int, WindowResult]]],
                      fmt: str, output: str, max_answer_len: int = 30) -> PredictionReport:
    """Combine windows per example and write the official format and its report, together or
    not at all. Every example gets one entry (null answers when it has no window)."""
    entries = []
    report = PredictionReport(max_answer_len=max_answer_len)
    for row, example in enumerate(iter_examples(examples_path)):
        if example.get("dataset", fmt) != fmt:
            raise ReaderError(f"{examples_path}:{row + 1}: dataset {example.get('dataset')!r} "
                              f"cannot be written in --format {fmt}")
        windows = [r for _, r in sorted(by_example.get(row, []), key=lambda x: x[0])]
        pred = combine_windows(windows)
        if not logits_finite(pred, windows):
            raise ReaderError(f"{examples_path}:{row + 1}: example {example['example_id']}: the model's "
                              f"logits are not finite (inf/NaN; scores {pred.short_score}, {pred.long_score}); "
                              f"with --fp16, run without it")
        report.add(pred, len(windows))
        entries.append(nq_entry(example, pred) if fmt == "nq" else tydi_entry(example, pred))
    unknown = sorted(set(by_example) - set(range(len(entries))))
    if unknown:
        raise ReaderError(f"windows point at example rows {unknown[:5]} but {examples_path} "
                          f"has {len(entries)} examples (binaries and examples file of different runs?)")

    with atomic_outputs([output, report_path(output)]) as (tmp_output, tmp_report):
        with open(tmp_output, "w", encoding="utf-8") as f:
            if fmt == "nq":
                json.dump({"predictions": entries}, f, ensure_ascii=False)
                f.write("\n")
            else:
                for entry in entries:
                    f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        with open(tmp_report, "w", encoding="utf-8") as f:
            json.dump({"predictions": output, "format": fmt, **report.to_dict()}, f, indent=2)
            f.write("\n")
    return report
