"""Natural Questions (simplified or original format) -> QA windows for the ``long_qa`` task.

Formats (one JSON object per line, ``.gz`` read transparently; a directory stands for its
``*.jsonl.gz`` / ``*.jsonl`` shards):

* ``simplified``: ``document_text`` (tokens separated by single spaces, HTML tags included,
  e.g. ``<Td_colspan="2">``), ``long_answer_candidates`` ``{start_token, end_token, top_level}``,
  ``annotations`` ``{long_answer: {start_token, end_token, candidate_index}, short_answers:
  [{start_token, end_token}], yes_no_answer}``, ``question_text``, ``example_id``.
* ``original``: ``document_tokens`` ``[{token, start_byte, end_byte, html_token}]`` and the same
  fields with ``start_byte``/``end_byte`` (offsets into ``document_html``) next to the token
  offsets; dev has 5 annotations per example.

Document tokens are the units (so every NQ token offset maps back exactly; ``examples.jsonl``
stores them compactly as ``"units": null, "num_units": N``, see ``fairseq_poolingformer.preprocess.qa_units``). HTML
tokens stay units but get no subwords by default (``--html drop``: a window spends its length
on text; candidates still start/end on their HTML tags through their own token offsets, and a
short answer that begins or ends on an HTML token maps back without it); ``--html keep``
tokenizes them as text. The training label of a multi-annotation example is the first
annotation with a short or yes/no answer, else the first with a long answer, else null
(``choose_label``); only the first short answer of that annotation becomes the span label (all
annotations are kept in ``<split>.examples.jsonl``).

Bad records (missing fields, wrong types, offsets outside the document, short answers outside
their long answer, long answers that are not a candidate, empty documents, non-UTF-8) are an
error naming file, line and field (``--on-error fail``) or a counted skip (``skip``).
A run whose document subwords are more than ``--max-unk-rate`` (default 0.01) the dictionary's
``<unk>`` (a dictionary that does not belong to the BPE) fails and writes nothing.

Usage::

    python -m fairseq_poolingformer.preprocess.nq --input nq/train/ --output-dir out/nq --split train \\
        --format original --bpe gpt2 --encoder-json encoder.json --vocab-bpe vocab.bpe \\
        --dict dict.txt [--workers 8] [--max-length 4096 --doc-stride 1568]
"""
from __future__ import annotations

import argparse
import functools
import re
import sys
from typing import Sequence

from fairseq_poolingformer.preprocess.common import InputError, require
from fairseq_poolingformer.preprocess.qa_windows import (
    Annotation, Candidate, QAExample, WindowConfig, add_common_args, check_text,
    main_for, negative_rate_from_args, read_annotations, require_at, require_yes_no,
)

FORMATS = ("simplified", "original")
HTML_TAG = re.compile(r"^</?[A-Za-z][^<>]*>$")


def is_html(token: str) -> bool:
    """An NQ simplified-format HTML token such as ``<P>``, ``</Td>`` or ``<Th_colspan="2">``."""
    return HTML_TAG.match(token) is not None


def _span(obj: dict, path: str, line: int, where: str, n: int, allow_null: bool) -> tuple[int, int]:
    """Token span ``[start_token, end_token)`` of ``obj``, checked against ``n`` tokens."""
    s = require_at(obj, "start_token", int, path, line, where)
    e = require_at(obj, "end_token", int, path, line, where)
    if allow_null and s == -1 and e == -1:
        return -1, -1
    if not 0 <= s < e <= n:
        raise InputError(path, line, f"{where}.start_token/end_token",
                         f"span [{s}, {e}) outside the document of {n} tokens (or empty)",
                         reason="offset_out_of_range")
    return s, e


def _bytes(obj: dict, path: str, line: int, where: str) -> tuple[int, int]:
    return require_at(obj, "start_byte", int, path, line, where), require_at(obj, "end_byte", int, path, line, where)


def _read_document(record: dict, path: str, line: int, fmt: str):
    """(tokens, html flags, token byte spans or None)."""
    if fmt == "simplified":
        text = require(record, "document_text", str, path, line)
        check_text(text, path, line, "document_text")
        tokens = text.split(" ") if text.strip() else []
        return tokens, [is_html(t) for t in tokens], None
    raw_tokens = require(record, "document_tokens", list, path, line, item_type=dict)
    tokens, html, token_bytes = [], [], []
    for i, t in enumerate(raw_tokens):
        where = f"document_tokens[{i}]"
        token = require_at(t, "token", str, path, line, where)
        check_text(token, path, line, f"{where}.token")
        tokens.append(token)
        html.append(require_at(t, "html_token", bool, path, line, where))
        token_bytes.append(_bytes(t, path, line, where))
    return tokens, html, token_bytes


def _read_candidates(record: dict, path: str, line: int, n: int, original: bool) -> list[Candidate]:
    cands = []
    for i, c in enumerate(require(record, "long_answer_candidates", list, path, line, item_type=dict)):
        where = f"long_answer_candidates[{i}]"
        s, e = _span(c, path, line, where, n, allow_null=False)
        bs, be = _bytes(c, path, line, where) if original else (-1, -1)
        top = c.get("top_level", True)
        if not isinstance(top, bool):
            raise InputError(path, line, f"{where}.top_level", f"expected boolean, got {top!r}", reason="wrong_type")
        cands.append(Candidate(i, s, e, bs, be, top))
    return cands


def _read_annotation(a: dict, path: str, line: int, where: str, n: int,
                     cands: list[Candidate]) -> Annotation:
    long = require_at(a, "long_answer", dict, path, line, where)
    ci = require_at(long, "candidate_index", int, path, line, f"{where}.long_answer")
    ls, le = _span(long, path, line, f"{where}.long_answer", n, allow_null=True)
    if not -1 <= ci < len(cands):
        raise InputError(path, line, f"{where}.long_answer.candidate_index",
                         f"{ci} is not a candidate (document has {len(cands)})", reason="offset_out_of_range")
    if ci >= 0 and (ls, le) != (cands[ci].start_token, cands[ci].end_token):
        raise InputError(path, line, f"{where}.long_answer",
                         f"span [{ls}, {le}) differs from candidate {ci} "
                         f"[{cands[ci].start_token}, {cands[ci].end_token})", reason="answer_outside_candidate")
    if ci < 0 and ls >= 0:
        raise InputError(path, line, f"{where}.long_answer.candidate_index",
                         f"-1 but the long answer has span [{ls}, {le})", reason="answer_outside_candidate")
    shorts = []
    raw_shorts = require_at(a, "short_answers", list, path, line, where)
    for j, sa in enumerate(raw_shorts):
        swhere = f"{where}.short_answers[{j}]"
        s, e = _span(sa, path, line, swhere, n, allow_null=False)
        if ci < 0 or not (ls <= s and e <= le):
            raise InputError(path, line, swhere, f"short answer [{s}, {e}) is outside the long answer "
                             f"[{ls}, {le})", reason="answer_outside_candidate")
        shorts.append((s, e))
    yes_no = require_yes_no(a, ci >= 0, path, line, where, "long answer")
    return Annotation(ci, shorts, yes_no)


def read_nq(record: dict, path: str, line: int, fmt: str = "simplified") -> QAExample:
    """One NQ record (``simplified`` or ``original``) -> ``QAExample``; raises ``InputError``."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    example_id = require(record, "example_id", (int, str), path, line)
    question = require(record, "question_text", str, path, line)
    check_text(question, path, line, "question_text")
    if not question.strip():
        raise InputError(path, line, "question_text", "empty question", reason="empty_field")
    tokens, html, token_bytes = _read_document(record, path, line, fmt)
    if not tokens:
        raise InputError(path, line, "document_text" if fmt == "simplified" else "document_tokens",
                         "empty document", reason="empty_document")
    cands = _read_candidates(record, path, line, len(tokens), fmt == "original")
    annotations = read_annotations(
        record, path, line, lambda a, where: _read_annotation(a, path, line, where, len(tokens), cands))
    return QAExample(str(example_id), "nq", "english", question, cands, annotations,
                     tokens=tokens, html=html, token_bytes=token_bytes)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fairseq_poolingformer.preprocess.nq",
                                description="Natural Questions JSONL(.gz) -> <split>.examples.jsonl + "
                                            "<split>.windows.jsonl (docs/qa_data_format.md)")
    add_common_args(p)
    p.add_argument("--format", choices=FORMATS, default="simplified")
    p.add_argument("--html", choices=["drop", "keep"], default="drop",
                   help="drop (default): HTML tokens get no subwords; keep: tokenize them as text")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = WindowConfig(max_length=args.max_length, doc_stride=args.doc_stride,
                       max_question_len=args.max_question_len, negative_rate=negative_rate_from_args(args),
                       seed=args.seed, drop_html=args.html == "drop")
    return main_for("nq", functools.partial(read_nq, fmt=args.format), args, cfg)


if __name__ == "__main__":
    sys.exit(main())
