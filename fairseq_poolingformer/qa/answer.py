"""``pf-answer``: ask long documents questions with a ``long_qa`` checkpoint (docs/qa.md).

    pf-answer --checkpoint DIR --question "who wrote it?" doc1.txt doc2.html
    pf-answer --checkpoint DIR --pairs pairs.jsonl          # {"question": ..., "document": ...} a line
    cat doc.txt | pf-answer --checkpoint DIR --question "..."   # the document on stdin
    pf-answer --checkpoint DIR < pairs.jsonl                 # pairs on stdin

Writes one JSON line per question, in input order: ``answer``, ``start``, ``end``, ``score``,
``kind``, ``paragraph`` (``fairseq_poolingformer.qa.reader``); with ``--top-k K`` > 1 a list of K
such objects. To stdout, or ``--output FILE`` (complete or absent). Bad input (an empty
question or document, a file that is not UTF-8, a question longer than the window, a
checkpoint of another task) is one ``pf-answer: error:`` line, exit status 1, nothing written.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Iterator, Sequence

from fairseq_poolingformer.inference.errors import InferenceError
from fairseq_poolingformer.inference.lines import progress_bar, write_lines
from fairseq_poolingformer.inference.text import read_text
from fairseq_poolingformer.qa.documents import FORMATS
from fairseq_poolingformer.qa.errors import ReaderError
from fairseq_poolingformer.qa.reader import load_reader


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pf-answer", description="Answer questions on long documents with a "
                                "long_qa (Poolingformer QA) checkpoint; one JSON line per question.")
    p.add_argument("files", nargs="*", metavar="FILE", help="documents (UTF-8 text or NQ-style HTML), with --question")
    p.add_argument("--checkpoint", required=True, help="checkpoint file, or a directory holding model.pt / "
                   "checkpoint_best.pt / checkpoint_last.pt with dict.txt and the BPE files beside it")
    p.add_argument("--question", help="the question asked of every FILE (of stdin without FILE)")
    p.add_argument("--pairs", help="JSONL file of {\"question\": ..., \"document\": ...} (- for stdin)")
    p.add_argument("--top-k", type=int, default=1, help="answers per question (> 1: a list per line)")
    p.add_argument("--max-answer-len", type=int, default=30, help="longest span answer, in subwords")
    p.add_argument("--handle-impossible-answer", action="store_true",
                   help="rank \"no answer\" (score 0) with the others: first when every answer scores below 0")
    p.add_argument("--format", choices=FORMATS, default="auto",
                   help="text (paragraphs between blank lines), nq-html (NQ simplified document_text) or auto")
    p.add_argument("--max-length", type=int, default=None,
                   help="window length incl. special tokens (default: 4096, the training windows, at most the "
                        "checkpoint's positions)")
    p.add_argument("--doc-stride", type=int, default=None, help="step between window starts (default 1568)")
    p.add_argument("--max-question-len", type=int, default=None, help="question subwords a window holds (default 64)")
    p.add_argument("--dict", help="the model's dict.txt (default: beside the checkpoint)")
    p.add_argument("--sentencepiece-model", help="sentencepiece model (default: sentencepiece.bpe.model beside it)")
    p.add_argument("--encoder-json", help="GPT-2 BPE encoder.json (default: beside the checkpoint)")
    p.add_argument("--vocab-bpe", help="GPT-2 BPE vocab.bpe (default: beside the checkpoint)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per batch")
    p.add_argument("--cpu", action="store_true", help="run on CPU even when CUDA is available")
    p.add_argument("--fp16", action="store_true", help="half precision (CUDA only)")
    p.add_argument("--output", help="write here (complete or absent) instead of stdout")
    return p


def _pairs_from_jsonl(path: str) -> Iterator[tuple[str, str, str]]:
    name = "stdin" if path == "-" else path
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
        yield f"{name}:{i}", record["question"], record["document"]


def iter_inputs(args: argparse.Namespace) -> tuple[Iterator[tuple[str, str, str]], int | None]:
    """(name, question, document) in input order, read one at a time, and their number when known."""
    if args.pairs and (args.files or args.question):
        raise ReaderError("--pairs holds the questions and documents: give no --question or FILE with it")
    if args.files and not args.question:
        raise ReaderError("FILE arguments need --question")
    if args.pairs or not args.question:
        return _pairs_from_jsonl(args.pairs or "-"), None
    files = args.files or ["-"]
    return ((("stdin" if f == "-" else f), args.question, read_text(f)) for f in files), len(files)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
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

        lines = []
        with progress_bar(total, "pf-answer") as bar:
            for answer in reader.iter_answers(pairs(), args.top_k, args.max_answer_len,
                                              args.handle_impossible_answer, args.format, names=names):
                lines.append(json.dumps(answer, ensure_ascii=False))
                bar.update(1)
        write_lines(lines, args.output)
    except (InferenceError, OSError) as e:
        print(f"pf-answer: error: {e}; nothing written", file=sys.stderr)
        return 1
    return 0


def cli_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli_main()
