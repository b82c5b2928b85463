"""Cohan et al. (2018) arXiv / PubMed JSONL -> plain-text source/target files.

Input: one JSON object per line (the release names the files ``train.txt``, ``val.txt``,
``test.txt``; ``.gz`` is read transparently) with

  ``article_text``   list of sentence strings  -> ``{split}.source``
  ``abstract_text``  list of ``"<S> ... </S>"`` sentence strings  -> ``{split}.target``

Output: one document per line: sentences joined by a space, every run of whitespace
(newlines, tabs, ...) collapsed to one space, ``<S>``/``</S>`` tags removed.
``--max-source-words N`` keeps the first N words of each article. ``--write-ids`` also
writes ``{split}.id`` (the ``article_id`` of each kept record, same line order).

Bad records (malformed JSON, non-UTF-8 bytes, missing fields, wrong types, article or
abstract empty after cleaning) give a message naming file, line and field:

  ``--on-error fail`` (default): stop at the first bad record, exit status 1, write nothing.
  ``--on-error skip``: skip bad records, count them by reason in the report.

Blank lines are not records and are ignored. A run that keeps no record fails. The
outputs appear together or not at all (``atomic_outputs``); the kept/skipped report is
printed as one line on stderr and, with ``--report-json PATH``, written as JSON together with the
outputs (an output place that cannot be written fails the run before any work).

Usage::

    python -m fairseq_poolingformer.preprocess.arxiv --input RAW/train.txt --output-dir TEXT --split train \\
        [--workers 4] [--max-source-words 16000] [--on-error skip] [--report-json R.json]
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import re
import sys
from typing import Sequence

from fairseq_poolingformer.preprocess.common import (
    InputError,
    Report,
    atomic_outputs,
    iter_lines,
    normalize_whitespace,
    parallel_map,
    parse_jsonl_line,
    require,
)

SENTENCE_TAG = re.compile(r"</?S>")


def clean_article(sentences: Sequence[str], max_words: int | None = None) -> str:
    """Join article sentences into one whitespace-normalized line (first ``max_words`` words)."""
    text = normalize_whitespace(" ".join(sentences))
    if max_words is not None:
        words = text.split(" ")
        if len(words) > max_words:
            text = " ".join(words[:max_words])
    return text


def clean_abstract(sentences: Sequence[str]) -> str:
    """Join ``<S> ... </S>`` abstract sentences into one line without the tags."""
    return normalize_whitespace(SENTENCE_TAG.sub(" ", " ".join(sentences)))


def convert_record(record: dict, path: str, line_no: int,
                   max_source_words: int | None = None) -> tuple[str, str]:
    """Return ``(source, target)`` for one parsed record; raise ``InputError`` if unusable."""
    article = require(record, "article_text", list, path, line_no, item_type=str)
    abstract = require(record, "abstract_text", list, path, line_no, item_type=str)
    source = clean_article(article, max_source_words)
    if not source:
        raise InputError(path, line_no, "article_text", "empty article (no text after cleaning)",
                         reason="empty_field")
    target = clean_abstract(abstract)
    if not target:
        raise InputError(path, line_no, "abstract_text", "empty abstract (no text after cleaning)",
                         reason="empty_field")
    return source, target


def _convert_line(path: str, max_source_words: int | None, with_ids: bool,
                  item: tuple[int, bytes]) -> tuple[str, str, str] | InputError:
    """Worker: raw line -> ``(source, target, article_id)``, or the ``InputError``."""
    line_no, raw = item
    try:
        record = parse_jsonl_line(path, line_no, raw)
        source, target = convert_record(record, path, line_no, max_source_words)
        article_id = ""
        if with_ids:
            article_id = normalize_whitespace(str(require(record, "article_id", (str, int), path, line_no)))
        return source, target, article_id
    except InputError as e:
        return e


def convert_file(input_path: str, output_dir: str, split: str, workers: int = 1,
                 max_source_words: int | None = None, on_error: str = "fail",
                 write_ids: bool = False, progress: bool = True, report_json: str | None = None) -> Report:
    """Convert one JSONL file to ``output_dir/{split}.source|.target[|.id]``; return the report.

    With ``report_json`` the report is written there too, together with the outputs.
    Raises ``InputError`` (``on_error="fail"``) at the first bad record, or when no record
    is kept, and ``OSError`` when an output cannot be written (checked before any work);
    nothing is written then.
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    report = Report(f"arxiv {split} ({input_path})")
    suffixes = ["source", "target"] + (["id"] if write_ids else [])
    finals = [os.path.join(output_dir, f"{split}.{s}") for s in suffixes] + ([report_json] if report_json else [])
    lines = ((n, raw) for n, raw in iter_lines(input_path) if raw.strip())  # blank lines: not records
    worker = functools.partial(_convert_line, input_path, max_source_words, write_ids)

    with atomic_outputs(finals) as temps:
        files = [open(t, "w", encoding="utf-8", newline="\n") for t in temps[:len(suffixes)]]
        try:
            # closing(): on an error the pool stops at once, not when the generator is collected
            with contextlib.closing(parallel_map(worker, lines, workers=workers, chunksize=4,
                                                 desc=f"arxiv {split}", progress=progress)) as results:
                for result in results:
                    if isinstance(result, InputError):
                        if on_error == "fail":
                            raise result
                        report.skip(result)
                        continue
                    for f, text in zip(files, result):
                        f.write(text + "\n")
                    report.keep()
        finally:
            for f in files:
                f.close()
        if report.kept == 0:
            raise InputError(input_path, report.total, "<file>",
                             f"no usable record ({report.summary()})", reason="no_records")
        if report_json:
            report.write_json_to(temps[-1])
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fairseq_poolingformer.preprocess.arxiv",
                                description="arXiv/PubMed JSONL (Cohan et al.) -> {split}.source / {split}.target")
    p.add_argument("--input", required=True, help="JSONL file (.txt/.jsonl, optionally .gz)")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--split", required=True, help="output prefix, e.g. train, valid, test")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--max-source-words", type=int, default=None,
                   help="keep the first N whitespace words of each article")
    p.add_argument("--on-error", choices=["fail", "skip"], default="fail",
                   help="fail (default): stop at the first bad record and write nothing; "
                        "skip: skip bad records and count them in the report")
    p.add_argument("--write-ids", action="store_true", help="also write {split}.id (article_id per line)")
    p.add_argument("--report-json", default=None, help="write the kept/skipped report here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_source_words is not None and args.max_source_words < 1:
        build_parser().error("--max-source-words must be >= 1")
    try:
        report = convert_file(args.input, args.output_dir, args.split, workers=args.workers,
                              max_source_words=args.max_source_words, on_error=args.on_error,
                              write_ids=args.write_ids, progress=not args.no_progress,
                              report_json=args.report_json)
    except InputError as e:
        print(e.cli_message(args.on_error), file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e}; no output written", file=sys.stderr)
        return 1
    report.log()
    return 0


if __name__ == "__main__":
    sys.exit(main())
