"""``pf-answer``: ask long documents questions with a ``long_qa`` checkpoint (docs/qa.md).

    pf-answer --checkpoint DIR --question "who wrote it?" doc1.txt doc2.html
    pf-answer --checkpoint DIR --pairs pairs.jsonl          # {"question": ..., "document": ...} a line
    cat doc.txt | pf-answer --checkpoint DIR --question "..."   # the document on stdin
    pf-answer --checkpoint DIR < pairs.jsonl                 # pairs on stdin

Writes one JSON line per question, in input order: ``answer``, ``start``, ``end``, ``score``,
``kind``, ``paragraph`` (``fairseq_poolingformer.qa.reader``); with ``--top-k K`` > 1 a list of K
such objects. To stdout (streamed), or ``--output FILE``: a file is written atomically
(complete or absent), a FIFO or device streamed, a symlink followed; an output that is one of
the inputs (a document, the checkpoint, a dictionary or BPE file beside it or given) is refused
(``inference.output``, ``inference.files.model_files``). Every option is checked when parsed (exit
status 2, one line naming the flag), every ``--pairs`` line before the model runs; bad input
(an empty document, a file that is not UTF-8, a question longer than the window, BPE or
dictionary files that do not parse, a checkpoint of another task) is one ``pf-answer: error:``
line, exit status 1, nothing written; Ctrl-C exits 130 (``inference.console``). Quiet but for
the progress bar (on a terminal) and errors; ``--verbose`` adds Fairseq's log lines.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Iterator, Sequence

from fairseq_poolingformer.inference.console import progress_bar
from fairseq_poolingformer.inference.files import model_files
from fairseq_poolingformer.inference.options import add_run_options, positive_int, tool_main
from fairseq_poolingformer.inference.output import check_output, open_output
from fairseq_poolingformer.inference.text import read_text
from fairseq_poolingformer.preprocess.qa_windows import WindowConfig
from fairseq_poolingformer.qa.documents import FORMATS
from fairseq_poolingformer.qa.errors import ReaderError
from fairseq_poolingformer.qa.reader import DEFAULT_WINDOWS, check_windows, load_reader


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pf-answer", description="Answer questions on long documents with a "
                                "long_qa (Poolingformer QA) checkpoint; one JSON line per question.")
    p.add_argument("files", nargs="*", metavar="FILE", help="documents (UTF-8 text or NQ-style HTML), with --question")
    p.add_argument("--checkpoint", required=True, help="checkpoint file, or a directory holding model.pt / "
                   "checkpoint_best.pt / checkpoint_last.pt with dict.txt and the BPE files beside it")
    p.add_argument("--question", help="the question asked of every FILE (of stdin without FILE)")
    p.add_argument("--pairs", help="JSONL file of {\"question\": ..., \"document\": ...} (- for stdin)")
    p.add_argument("--top-k", type=positive_int, default=1, help="answers per question (> 1: a list per line)")
    p.add_argument("--max-answer-len", type=positive_int, default=30, help="longest span answer, in subwords")
    p.add_argument("--handle-impossible-answer", action="store_true",
                   help="rank \"no answer\" (score 0) with the others: first when every answer scores below 0")
    p.add_argument("--format", choices=FORMATS, default="auto",
                   help="text (paragraphs between blank lines), nq-html (NQ simplified document_text) or auto")
    p.add_argument("--max-length", type=positive_int, default=None,
                   help=f"window length incl. special tokens (default: {DEFAULT_WINDOWS.max_length}, the "
                        "training windows, at most the checkpoint's positions)")
    p.add_argument("--doc-stride", type=positive_int, default=None,
                   help=f"step between window starts (default: {DEFAULT_WINDOWS.doc_stride} for "
                        f"{DEFAULT_WINDOWS.max_length}-token windows, the same share of shorter ones)")
    p.add_argument("--max-question-len", type=positive_int, default=None,
                   help=f"question subwords a window holds (default {DEFAULT_WINDOWS.max_question_len})")
    p.add_argument("--dict", help="the model's dict.txt (default: beside the checkpoint)")
    p.add_argument("--sentencepiece-model", help="sentencepiece model (default: sentencepiece.bpe.model, "
                   "else spm.model, beside the checkpoint)")
    p.add_argument("--encoder-json", help="GPT-2 BPE encoder.json (default: beside the checkpoint)")
    p.add_argument("--vocab-bpe", help="GPT-2 BPE vocab.bpe (default: beside the checkpoint)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="windows per batch")
    add_run_options(p)
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options, each checked against its meaning (argparse's error and exit status 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.question is not None and not args.question.strip():
        parser.error("argument --question: the question is empty")
    if args.pairs and (args.files or args.question is not None):
        parser.error("--pairs holds the questions and documents: give no --question or FILE with it")
    if args.files and args.question is None:
        parser.error("FILE arguments need --question")
    if args.max_length is not None:  # else the window comes from the checkpoint: checked when it is read
        try:
            check_windows(WindowConfig(args.max_length, args.doc_stride or 1,
                                       args.max_question_len or DEFAULT_WINDOWS.max_question_len))
        except ReaderError as e:
            parser.error(str(e))
    return args


def _pairs_from_jsonl(path: str) -> list[tuple[str, str, str]]:
    """Every (name, question, document) of a JSONL file, all checked before any is answered."""
    name = "stdin" if path == "-" else path
    pairs = []
    for i, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ReaderError(f"{name}:{i}: not JSON ({e.msg})") from None
        if not isinstance(record, dict):
            raise ReaderError(f"{name}:{i}: expected an object with \"question\" and \"document\"")
        for key in ("question", "document"):
            if not isinstance(record.get(key), str):
                raise ReaderError(f"{name}:{i}: field '{key}': expected a string, got {record.get(key)!r:.40}")
            if not record[key].strip():
                raise ReaderError(f"{name}:{i}: empty {key}")
        pairs.append((f"{name}:{i}", record["question"], record["document"]))
    return pairs


def _check_readable(path: str) -> None:
    if path != "-" and not (os.path.isfile(path) and os.access(path, os.R_OK)):
        problem = "not readable" if os.path.isfile(path) else ("a directory" if os.path.isdir(path) else
                                                               "No such file or directory")
        raise ReaderError(f"{path}: {problem}")


def _read_document(path: str) -> str:
    """A FILE argument's text: UTF-8 and not blank, else ReaderError naming it."""
    text = read_text(path)
    if not text.strip():
        raise ReaderError(f"{'stdin' if path == '-' else path}: empty document")
    return text


def iter_inputs(args: argparse.Namespace) -> tuple[Iterator[tuple[str, str, str]], int | None]:
    """(name, question, document) in input order and their number: ``--pairs`` read and checked
    whole; every FILE argument read and checked now (UTF-8, not empty: a bad one is refused
    before any work), then dropped and read again when its turn comes, so that only one
    document at a time is in memory (stdin, which cannot be read twice, is kept)."""
    if args.pairs or args.question is None:
        pairs = _pairs_from_jsonl(args.pairs or "-")
        return iter(pairs), len(pairs)
    files = args.files or ["-"]
    stdin = None
    for path in files:  # the checking pass: each read, checked and dropped (stdin kept)
        _check_readable(path)
        text = _read_document(path)
        if path == "-":
            stdin = text
    return ((("stdin" if f == "-" else f), args.question, stdin if f == "-" else _read_document(f))
            for f in files), len(files)


def answer(args: argparse.Namespace) -> int:
    """pf-answer's work, after parsing: raises the errors ``run`` reports in one line."""
    # the documents, and every file of the model: none of them may be the output
    inputs_given = [*args.files, args.pairs, *model_files(args.checkpoint, args.dict, args.sentencepiece_model,
                                                          args.encoder_json, args.vocab_bpe)]
    check_output(args.output, inputs_given)  # before any work
    inputs, total = iter_inputs(args)
    reader = load_reader(args.checkpoint, dict_path=args.dict, sentencepiece_model=args.sentencepiece_model,
                         encoder_json=args.encoder_json, vocab_bpe=args.vocab_bpe, max_length=args.max_length,
                         doc_stride=args.doc_stride, max_question_len=args.max_question_len,
                         batch_size=args.batch_size, cpu=args.cpu, fp16=args.fp16)
    names: list[str] = []  # the name of pair i (for errors), appended as it is read

    def pairs():
        for name, question, document in inputs:
            names.append(name)
            yield question, document

    with open_output(args.output, inputs_given) as out, progress_bar(total, "pf-answer") as bar:
        for result in reader.iter_answers(pairs(), args.top_k, args.max_answer_len,
                                          args.handle_impossible_answer, args.format, names=names):
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
            bar.update(1)
    return 0


# parse, then answer; exits with 0, 1 (one error line), 2 (usage) or 130 (Ctrl-C); cli_main: setup.py's
main = cli_main = tool_main("pf-answer", parse_args, answer)

if __name__ == "__main__":
    main()
