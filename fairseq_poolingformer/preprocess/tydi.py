"""TyDi QA primary task (gold JSONL(.gz)) -> QA windows for the ``long_qa`` task.

Input record: ``example_id``, ``language``, ``question_text``, ``document_plaintext``,
``passage_answer_candidates`` ``[{plaintext_start_byte, plaintext_end_byte}]``, ``annotations``
``[{passage_answer: {candidate_index}, minimal_answer: {plaintext_start_byte,
plaintext_end_byte}, yes_no_answer}]`` (dev: 3 annotations). All offsets are UTF-8 byte
offsets into ``document_plaintext`` (end exclusive); ``-1`` marks a null answer.

Units are byte spans of the plain text (see ``fairseq_poolingformer.preprocess.qa_tokenize``); segments are always
cut at passage boundaries. ``--answer-boundaries split`` (default for ``--split train``) also
cuts them at every annotation's minimal-answer boundaries, so that every gold span maps to
subwords and back to exactly its bytes, even when an annotator started an answer inside a word
(real TyDi dev data does); ``snap`` (default otherwise) tokenizes the text alone (no gold
information reaches the model input) and maps a gold boundary inside a unit to the units that
overlap the answer (counted as ``labels_not_exact`` in the report). The training label is the
first annotation with a minimal or yes/no answer, else the first with a passage, else null.

Bad records (missing fields, wrong types, offsets outside the document or inside a multi-byte
character, minimal answers outside their passage, empty documents, non-UTF-8) are an error
naming file, line and field (``--on-error fail``) or a counted skip (``skip``).
A run whose document subwords are more than ``--max-unk-rate`` (default 0.01) the dictionary's
``<unk>`` (a dictionary that does not belong to the BPE) fails and writes nothing.

Usage::

    python -m fairseq_poolingformer.preprocess.tydi --input tydiqa-v1.0-dev.jsonl.gz --output-dir out/tydi --split dev \\
        --bpe sentencepiece --sentencepiece-model sentencepiece.bpe.model --dict dict.txt
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from fairseq_poolingformer.preprocess.common import InputError, require
from fairseq_poolingformer.preprocess.qa_windows import (
    Annotation, Candidate, QAExample, WindowConfig, add_common_args, check_text,
    main_for, negative_rate_from_args, read_annotations, require_at, require_yes_no,
)


def _is_char_boundary(raw: bytes, b: int) -> bool:
    return b == len(raw) or (raw[b] & 0xC0) != 0x80


def _byte_span(obj: dict, path: str, line: int, where: str, raw: bytes,
               allow_null: bool) -> tuple[int, int]:
    """``[plaintext_start_byte, plaintext_end_byte)`` of ``obj``, checked against the text."""
    s = require_at(obj, "plaintext_start_byte", int, path, line, where)
    e = require_at(obj, "plaintext_end_byte", int, path, line, where)
    if allow_null and s == -1 and e == -1:
        return -1, -1
    field_name = f"{where}.plaintext_start_byte/plaintext_end_byte"
    if not 0 <= s < e <= len(raw):
        raise InputError(path, line, field_name,
                         f"span [{s}, {e}) outside the document of {len(raw)} bytes (or empty)",
                         reason="offset_out_of_range")
    for b in (s, e):
        if not _is_char_boundary(raw, b):
            raise InputError(path, line, field_name, f"byte offset {b} is inside a multi-byte UTF-8 character",
                             reason="offset_out_of_range")
    return s, e


def _read_annotation(a: dict, path: str, line: int, where: str, raw: bytes,
                     cands: list[Candidate]) -> Annotation:
    passage = require_at(a, "passage_answer", dict, path, line, where)
    ci = require_at(passage, "candidate_index", int, path, line, f"{where}.passage_answer")
    if not -1 <= ci < len(cands):
        raise InputError(path, line, f"{where}.passage_answer.candidate_index",
                         f"{ci} is not a passage (document has {len(cands)})", reason="offset_out_of_range")
    minimal = require_at(a, "minimal_answer", dict, path, line, where)
    s, e = _byte_span(minimal, path, line, f"{where}.minimal_answer", raw, allow_null=True)
    shorts = []
    if s >= 0:
        if ci < 0 or not (cands[ci].start_byte <= s and e <= cands[ci].end_byte):
            passage_span = f"[{cands[ci].start_byte}, {cands[ci].end_byte})" if ci >= 0 else "null"
            raise InputError(path, line, f"{where}.minimal_answer",
                             f"minimal answer [{s}, {e}) is outside its passage {passage_span}",
                             reason="answer_outside_candidate")
        shorts.append((s, e))
    yes_no = require_yes_no(a, ci >= 0, path, line, where, "passage answer")
    return Annotation(ci, shorts, yes_no)


def read_tydi(record: dict, path: str, line: int) -> QAExample:
    """One TyDi QA primary-task record -> ``QAExample``; raises ``InputError``."""
    example_id = require(record, "example_id", (int, str), path, line)
    language = require(record, "language", str, path, line)
    question = require(record, "question_text", str, path, line)
    check_text(question, path, line, "question_text")
    if not question.strip():
        raise InputError(path, line, "question_text", "empty question", reason="empty_field")
    text = require(record, "document_plaintext", str, path, line)
    check_text(text, path, line, "document_plaintext")
    if not text.strip():
        raise InputError(path, line, "document_plaintext", "empty document", reason="empty_document")
    raw = text.encode("utf-8")
    cands = []
    for i, c in enumerate(require(record, "passage_answer_candidates", list, path, line, item_type=dict)):
        s, e = _byte_span(c, path, line, f"passage_answer_candidates[{i}]", raw, allow_null=False)
        cands.append(Candidate(i, -1, -1, s, e, True))
    annotations = read_annotations(
        record, path, line, lambda a, where: _read_annotation(a, path, line, where, raw, cands))
    return QAExample(str(example_id), "tydi", language, question, cands, annotations, text=text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fairseq_poolingformer.preprocess.tydi",
                                description="TyDi QA primary task JSONL(.gz) -> <split>.examples.jsonl + "
                                            "<split>.windows.jsonl (docs/qa_data_format.md)")
    add_common_args(p)
    p.add_argument("--answer-boundaries", choices=["split", "snap"], default=None,
                   help="split: cut the text at gold minimal-answer boundaries (exact labels); "
                        "snap: tokenize the text alone (default: split for --split train, snap otherwise)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    mode = args.answer_boundaries or ("split" if args.split == "train" else "snap")
    cfg = WindowConfig(max_length=args.max_length, doc_stride=args.doc_stride,
                       max_question_len=args.max_question_len, negative_rate=negative_rate_from_args(args),
                       seed=args.seed, split_at_answers=mode == "split")
    return main_for("tydi", read_tydi, args, cfg)


if __name__ == "__main__":
    sys.exit(main())
