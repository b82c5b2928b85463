"""Ask a long document a question: a ``long_qa`` checkpoint as a reader (docs/qa.md).

    from fairseq_poolingformer.hub import load_reader
    reader = load_reader("checkpoints/nq")            # model.pt / checkpoint_best.pt + dict.txt + BPE
    reader.answer("who is the mother?", open("doc.txt").read())
    # {'answer': 'Tracy McConnell', 'start': 1412, 'end': 1427, 'score': 7.3, 'kind': 'span',
    #  'paragraph': [1302, 1788]}

A document goes through the QA preprocessing's own steps (``fairseq_poolingformer.preprocess``:
``qa_tokenize``, ``qa_windows``) and ``predict_qa``'s own window decoding and document-level
combination: the answer and its score are those ``predict_qa`` writes for the same document
preprocessed as an NQ / TyDi record. Windows are built one at a time and run in batches of
``batch_size``, so a document of any length needs memory for its subwords, not its windows.

Documents:

* plain text (``format="text"``): paragraphs are the blocks between blank lines (none when the
  text has no blank line), tokenized as TyDi QA plain text (the paragraphs are the passages);
* NQ-style HTML (``format="nq-html"``): the simplified Natural Questions ``document_text``
  (tokens separated by single spaces, tags as tokens: ``<P>``, ``</Table>``, ...); HTML tokens
  get no subwords, and the paragraphs are NQ's long-answer candidates (``<P>``, ``<Table>``,
  ``<Tr>``, lists and list items) found from the tags;
* ``format="auto"`` (default): NQ-style HTML when the document has no newline and holds one of
  those tags, plain text otherwise.

``paragraphs=[(start, end), ...]`` (character offsets) gives the paragraphs instead.

Every answer is a dict: ``answer`` (the text; ``"yes"`` / ``"no"`` / ``""`` for the other kinds),
``start`` / ``end`` (character offsets into the document as given, ``document[start:end] ==
answer``; ``None`` unless a span), ``score`` (log-odds against no answer, ``predict_qa``'s
scale: above 0 the model prefers this answer to none), ``kind`` (``span``, ``yes``, ``no``,
``none``) and ``paragraph`` (``[start, end]`` of the paragraph it lies in, or of the chosen
paragraph for yes / no; ``None`` when the document has none).
"""
from __future__ import annotations

import bisect
import contextlib
import logging
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import torch

from fairseq_poolingformer.load import CheckpointError, check_task, find_beside, load_for_inference, read_checkpoint
from fairseq_poolingformer.predict_qa import (
    ExamplePrediction, WindowResult, candidate_best_scores, combine_windows, logits_finite,
    run_batch,
)
from fairseq_poolingformer.preprocess.common import InputError
from fairseq_poolingformer.preprocess.nq import is_html
from fairseq_poolingformer.preprocess.qa_tokenize import TokenizerSpec, TokenizedDoc, build_tokenizer
from fairseq_poolingformer.preprocess.qa_windows import (
    Candidate, QAExample, WindowConfig, WindowStats, check_text, iter_windows, prepare_example,
)
from fairseq_poolingformer.tasks.long_qa import collate_windows

logger = logging.getLogger(__name__)

__all__ = ["ReaderError", "QAReader", "load_reader", "FORMATS", "CHECKPOINT_NAMES"]

FORMATS = ("auto", "text", "nq-html")
CHECKPOINT_NAMES = ("model.pt", "checkpoint_best.pt", "checkpoint_last.pt")  # looked for in a directory
SPM_NAMES = ("sentencepiece.bpe.model", "spm.model")
DEFAULT_WINDOWS = WindowConfig()   # what the recipes preprocess (and train) with: 4096 / 1568 / 64
# NQ's long-answer candidates: paragraphs, tables, table rows, lists and list items
NQ_CANDIDATE_TAGS = frozenset({"P", "Table", "Tr", "Ul", "Ol", "Dl", "Li", "Dd", "Dt"})
_BLANK_LINES = re.compile(r"\n[^\S\n]*\n\s*")
_NQ_TAG_NAME = re.compile(r"^</?([A-Za-z]+)")


class ReaderError(ValueError):
    """Bad input or a checkpoint the reader cannot use; ``str(e)`` is one line for the user."""


# ---------------------------------------------------------------------------
# checkpoint and tokenizer files

def resolve_checkpoint(path: str, names: Sequence[str] = CHECKPOINT_NAMES) -> str:
    """A checkpoint file, or the first of ``names`` in a directory."""
    if os.path.isfile(path):
        return path
    if os.path.isdir(path):
        found = find_beside(path, *names)
        if found:
            return found
        raise ReaderError(f"{path}: no checkpoint in this directory (looked for {', '.join(names)})")
    raise ReaderError(f"checkpoint not found: {path}")


def tokenizer_spec(model_dir: str, dict_path: str | None = None, sentencepiece_model: str | None = None,
                   encoder_json: str | None = None, vocab_bpe: str | None = None) -> TokenizerSpec:
    """The QA tokenizer's files: as given, else beside the checkpoint as ``convert`` writes
    them (``dict.txt`` with ``sentencepiece.bpe.model``, or ``encoder.json`` + ``vocab.bpe``)."""
    dict_path = dict_path or os.path.join(model_dir, "dict.txt")
    if not os.path.isfile(dict_path):
        raise ReaderError(f"dictionary not found: {dict_path} (pass --dict / dict_path=)")
    if not (encoder_json or vocab_bpe):
        sentencepiece_model = sentencepiece_model or find_beside(model_dir, *SPM_NAMES)
    if sentencepiece_model:
        if not os.path.isfile(sentencepiece_model):
            raise ReaderError(f"sentencepiece model not found: {sentencepiece_model}")
        return TokenizerSpec("sentencepiece", dict_path, sentencepiece_model=sentencepiece_model)
    encoder_json = encoder_json or find_beside(model_dir, "encoder.json")
    vocab_bpe = vocab_bpe or find_beside(model_dir, "vocab.bpe")
    if not (encoder_json and vocab_bpe):
        raise ReaderError(
            f"no BPE for the reader: none given and none beside the checkpoint in {model_dir} (looked for "
            f"{' or '.join(SPM_NAMES)}, or encoder.json + vocab.bpe); pass --sentencepiece-model, or "
            f"--encoder-json and --vocab-bpe")
    for path in (encoder_json, vocab_bpe):
        if not os.path.isfile(path):
            raise ReaderError(f"GPT-2 BPE file not found: {path} (nothing is downloaded)")
    return TokenizerSpec("gpt2", dict_path, encoder_json=encoder_json, vocab_bpe=vocab_bpe)


# ---------------------------------------------------------------------------
# documents -> examples (the preprocessing's QAExample), and offsets back to characters

def _char_to_byte(text: str, chars: Sequence[int]) -> list[int]:
    """UTF-8 byte offsets of the (sorted) character offsets ``chars``."""
    out, char, byte = [], 0, 0
    for c in chars:
        byte += len(text[char:c].encode("utf-8"))
        char = c
        out.append(byte)
    return out


def _byte_to_char(raw: bytes, byte: int) -> int:
    return len(raw[:byte].decode("utf-8"))


def blank_line_paragraphs(text: str) -> list[tuple[int, int]]:
    """Character ranges of the blocks between blank lines, without their outer whitespace;
    none when the text is a single block."""
    blocks, start = [], 0
    for m in _BLANK_LINES.finditer(text):
        blocks.append((start, m.start()))
        start = m.end()
    blocks.append((start, len(text)))
    out = []
    for s, e in blocks:
        block = text[s:e]
        if block.strip():
            lead = len(block) - len(block.lstrip())
            out.append((s + lead, s + len(block.rstrip())))
    return out if len(out) > 1 else []


def nq_candidates(tokens: Sequence[str]) -> list[tuple[int, int, bool]]:
    """NQ long-answer candidates ``(start_token, end_token, top_level)`` of a simplified-format
    document: every ``<P>``, ``<Table>``, ``<Tr>``, list or list item element, from its opening
    to its closing tag (inclusive, end exclusive), in document order; top level when no other
    candidate contains it."""
    open_tags: list[tuple[str, int]] = []
    found = []
    for i, token in enumerate(tokens):
        if not is_html(token):
            continue
        name = _NQ_TAG_NAME.match(token).group(1)
        if name not in NQ_CANDIDATE_TAGS:
            continue
        if not token.startswith("</"):
            open_tags.append((name, i))
            continue
        for depth in range(len(open_tags) - 1, -1, -1):  # the innermost open element of that name
            if open_tags[depth][0] == name:
                found.append((open_tags[depth][1], i + 1))
                del open_tags[depth:]
                break
    found.sort()
    out, outer_end = [], -1
    for s, e in found:
        out.append((s, e, s >= outer_end))
        outer_end = max(outer_end, e) if s < outer_end else e
    return out


def detect_format(document: str) -> str:
    """``nq-html`` for a one-line document holding an NQ candidate tag, else ``text``."""
    if "\n" in document:
        return "text"
    tags = {f"<{t}>" for t in NQ_CANDIDATE_TAGS}
    return "nq-html" if any(token in tags for token in document.split(" ")) else "text"


@dataclass
class Document:
    """One (question, document) pair made into the preprocessing's ``QAExample``, with what maps
    its units and candidates back to character offsets of the document as given."""
    text: str
    example: QAExample
    paragraphs: list[tuple[int, int]]        # character range of each candidate
    token_starts: list[int] | None = None    # NQ-style HTML: character offset of each token (unit)
    tokens: TokenizedDoc | None = None       # set by the reader
    question_ids: list[int] = field(default_factory=list)
    stats: WindowStats | None = None
    results: list[tuple[int, WindowResult]] = field(default_factory=list)
    windows_left: int = 0
    _raw: bytes | None = None

    def unit_chars(self, first: int, last: int) -> tuple[int, int]:
        """Character range ``[start, end)`` of units ``first..last`` (inclusive)."""
        if self.token_starts is not None:  # units are the tokens
            return self.token_starts[first], self.token_starts[last] + len(self.example.tokens[last])
        if self._raw is None:               # units are UTF-8 byte spans
            self._raw = self.text.encode("utf-8")
        units = self.tokens.units
        return _byte_to_char(self._raw, units[first][0]), _byte_to_char(self._raw, units[last][1])


def make_document(question: str, document: str, fmt: str = "auto",
                  paragraphs: Sequence[Sequence[int]] | None = None, name: str = "document") -> Document:
    """The ``QAExample`` of a question on a document (``format`` and ``paragraphs`` as in the
    module docstring); raises ``ReaderError`` for an empty question or document."""
    if not isinstance(question, str) or not question.strip():
        raise ReaderError(f"{name}: empty question")
    if not isinstance(document, str) or not document.strip():
        raise ReaderError(f"{name}: empty document")
    try:
        check_text(question, name, 0, "question")
        check_text(document, name, 0, "document")
    except InputError as e:
        raise ReaderError(f"{name}: the {e.field} is {e.message}") from None
    if fmt not in FORMATS:
        raise ReaderError(f"format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "auto":
        fmt = detect_format(document)
    if fmt == "nq-html":
        return _nq_document(question, document, paragraphs, name)
    return _text_document(question, document, paragraphs, name)


def _checked_paragraphs(paragraphs: Sequence[Sequence[int]], n: int, name: str) -> list[tuple[int, int]]:
    out = []
    for i, p in enumerate(paragraphs):
        if len(p) != 2 or not 0 <= p[0] < p[1] <= n:
            raise ReaderError(f"{name}: paragraph {i} {list(p)} is not a character range inside the document "
                              f"of {n} characters")
        out.append((int(p[0]), int(p[1])))
    return out


def _text_document(question: str, text: str, paragraphs, name: str) -> Document:
    paras = blank_line_paragraphs(text) if paragraphs is None else _checked_paragraphs(paragraphs, len(text), name)
    bounds = sorted({c for p in paras for c in p})
    byte_of = dict(zip(bounds, _char_to_byte(text, bounds)))
    cands = [Candidate(i, -1, -1, byte_of[s], byte_of[e]) for i, (s, e) in enumerate(paras)]
    return Document(text, QAExample(name, "tydi", "", question, cands, None, text=text), paras)


def _nq_document(question: str, text: str, paragraphs, name: str) -> Document:
    tokens = text.split(" ")
    starts, pos = [], 0
    for t in tokens:
        starts.append(pos)
        pos += len(t) + 1
    if paragraphs is None:
        cands = [Candidate(i, s, e, -1, -1, top) for i, (s, e, top) in enumerate(nq_candidates(tokens))]
        paras = [(starts[c.start_token], starts[c.end_token - 1] + len(tokens[c.end_token - 1])) for c in cands]
    else:  # whole tokens only: the units of an NQ document are its tokens
        paras = _checked_paragraphs(paragraphs, len(text), name)
        cands = [Candidate(i, bisect.bisect_right(starts, s) - 1, bisect.bisect_left(starts, e), -1, -1)
                 for i, (s, e) in enumerate(paras)]
    example = QAExample(name, "nq", "english", question, cands, None, tokens=tokens,
                        html=[is_html(t) for t in tokens])
    return Document(text, example, paras, token_starts=starts)


# ---------------------------------------------------------------------------
# the reader

def _answer(kind: str, score: float, text: str = "", start: int | None = None, end: int | None = None,
            paragraph: tuple[int, int] | None = None) -> dict:
    return {"answer": text, "start": start, "end": end, "score": float(score), "kind": kind,
            "paragraph": list(paragraph) if paragraph is not None else None}


class QAReader:
    """Answers questions on documents with a ``long_qa`` model (see the module docstring)."""

    def __init__(self, model, task, spec: TokenizerSpec, windows: WindowConfig, batch_size: int = 8,
                 use_cuda: bool = False) -> None:
        self.model = model.eval()
        self.task = task
        self.spec = spec
        self.tokenizer = build_tokenizer(spec)
        self.windows = windows
        self.batch_size = batch_size
        self.use_cuda = use_cuda
        self.global_tokens = str(getattr(task.cfg, "global_tokens", "question"))
        d = self.tokenizer.dictionary
        self.bos, self.eos, self.pad = d.bos(), d.eos(), d.pad()

    # -- public API --------------------------------------------------------

    def answer(self, question: str, document: str, top_k: int = 1, max_answer_len: int = 30,
               handle_impossible_answer: bool = False, format: str = "auto",
               paragraphs: Sequence[Sequence[int]] | None = None) -> dict | list[dict]:
        """The best answer (``top_k`` = 1: one dict) or the ``top_k`` best (a list of dicts).

        The first answer is ``predict_qa``'s: YES or NO when the document-level answer-type
        evidence says so, else the best span over all windows; the others are the next best
        spans by score. With ``handle_impossible_answer``, "no answer" (kind ``none``, score 0)
        takes its place in that order (first when every answer scores below 0)."""
        [result] = self.answer_batch([(question, document)], top_k, max_answer_len, handle_impossible_answer,
                                     format, [paragraphs])
        return result

    def answer_batch(self, pairs: Iterable[tuple[str, str]], top_k: int = 1, max_answer_len: int = 30,
                     handle_impossible_answer: bool = False, format: str = "auto",
                     paragraphs: Sequence[Sequence[Sequence[int]] | None] | None = None,
                     names: Sequence[str] | None = None) -> list[dict | list[dict]]:
        """``answer`` for every (question, document) pair, in order; windows of several
        documents share batches."""
        return list(self.iter_answers(pairs, top_k, max_answer_len, handle_impossible_answer, format,
                                      paragraphs, names))

    def iter_answers(self, pairs: Iterable[tuple[str, str]], top_k: int = 1, max_answer_len: int = 30,
                     handle_impossible_answer: bool = False, format: str = "auto",
                     paragraphs: Sequence[Sequence[Sequence[int]] | None] | None = None,
                     names: Sequence[str] | None = None) -> Iterator[dict | list[dict]]:
        """``answer_batch`` as a generator: each pair's answer as soon as its last window has run."""
        if top_k < 1 or max_answer_len < 1:
            raise ReaderError(f"top_k and max_answer_len must be >= 1, got {top_k}, {max_answer_len}")
        documents = self._documents(pairs, format, paragraphs, names)
        finished: list[Document] = []
        batch: list[tuple[Document, dict]] = []
        for doc, window in self._windows(documents, finished):
            batch.append((doc, window))
            if len(batch) == self.batch_size:
                self._run(batch, max_answer_len, top_k)
                batch = []
                while finished and finished[0].windows_left == 0:
                    yield self._finish(finished.pop(0), top_k, handle_impossible_answer)
        self._run(batch, max_answer_len, top_k)
        for doc in finished:
            yield self._finish(doc, top_k, handle_impossible_answer)

    # -- steps ---------------------------------------------------------------

    def _documents(self, pairs, fmt, paragraphs, names) -> Iterator[Document]:
        for row, (question, document) in enumerate(pairs):
            name = names[row] if names is not None else f"pair {row + 1}"
            doc = make_document(question, document, fmt, None if paragraphs is None else paragraphs[row], name)
            question_ids = self.tokenizer.encode(question)
            if len(question_ids) > self.windows.max_question_len:
                raise ReaderError(f"{name}: the question is {len(question_ids)} subwords, longer than the "
                                  f"{self.windows.max_question_len} a window holds (--max-question-len)")
            try:
                doc.tokens, doc.stats = prepare_example(doc.example, self.tokenizer, self.windows, name, 0, "document")
            except InputError as e:
                raise ReaderError(f"{name}: {e.message}") from None
            if doc.stats.unk_rate > 0.01:  # the preprocessing's --max-unk-rate default
                logger.warning(f"{name}: {100 * doc.stats.unk_rate:.1f}% of the document's subwords are <unk>: "
                               f"does {self.spec.dict_path} belong to the BPE?")
            doc.question_ids = question_ids
            yield doc

    def _windows(self, documents: Iterator[Document], finished: list[Document]) -> Iterator[tuple[Document, dict]]:
        """Every window of every document, built one at a time (``qa_windows.iter_windows``)."""
        for doc in documents:
            finished.append(doc)
            doc.windows_left = 1  # held open until its last window is built
            for window in iter_windows(doc.example, doc.tokens, doc.question_ids, self.bos, self.eos,
                                       self.windows, doc.stats):
                doc.windows_left += 1
                yield doc, window
            doc.windows_left -= 1

    def _run(self, batch: list[tuple[Document, dict]], max_answer_len: int, top_k: int) -> None:
        if not batch:
            return
        items = [{"id": i, "input_ids": torch.tensor(w["input_ids"], dtype=torch.long),
                  "unit_map": torch.tensor(w["unit_map"], dtype=torch.long),
                  "candidates": torch.tensor(w["candidates"], dtype=torch.long).view(-1, 3),
                  "labels": torch.tensor([i, w["window_index"], w["question_len"], -1, -1, -1, -1])}
                 for i, (_, w) in enumerate(batch)]
        sample = collate_windows(items, self.pad, self.global_tokens)
        unit_maps = [item["unit_map"] for item in items]
        for (doc, window), (_, result) in zip(batch, run_batch(self.model, sample, unit_maps, max_answer_len,
                                                                   self.use_cuda, top_k)):
            doc.results.append((window["window_index"], result))
            doc.windows_left -= 1

    def _finish(self, doc: Document, top_k: int, handle_impossible_answer: bool) -> dict | list[dict]:
        windows = [r for _, r in sorted(doc.results, key=lambda x: x[0])]
        pred = combine_windows(windows)
        if not logits_finite(pred, windows):
            raise ReaderError(f"{doc.example.example_id}: the model's logits are not finite (inf/NaN); "
                              f"with --fp16, run without it")
        answers = self._ranked(doc, windows, pred, top_k)
        if handle_impossible_answer:
            null = _answer("none", 0.0)
            at = next((i for i, a in enumerate(answers) if a["score"] < 0.0), len(answers))
            answers = (answers[:at] + [null] + answers[at:])[:top_k]
        if not answers:
            answers = [_answer("none", pred.short_score)]
        return answers[0] if top_k == 1 else answers

    def _ranked(self, doc: Document, windows: list[WindowResult], pred: ExamplePrediction,
                top_k: int) -> list[dict]:
        long_scores = candidate_best_scores(windows)
        answers = []
        if pred.yes_no != "NONE":
            paragraph = doc.paragraphs[pred.long_index] if pred.long_index >= 0 else None
            answers.append(_answer(pred.yes_no.lower(), pred.short_score, pred.yes_no.lower(), paragraph=paragraph))
        elif pred.unit_start >= 0:
            answers.append(self._span(doc, pred.unit_start, pred.unit_end, pred.short_score, long_scores))
        if top_k > 1:
            best: dict[tuple[int, int], float] = {}
            for w in windows:
                for score, first, last, _ in w.spans:
                    best[first, last] = max(best.get((first, last), -math.inf), score)
            best.pop((pred.unit_start, pred.unit_end), None)
            for (first, last), score in sorted(best.items(), key=lambda x: (-x[1], x[0]))[:top_k - len(answers)]:
                answers.append(self._span(doc, first, last, score, long_scores))
        return answers

    def _span(self, doc: Document, first: int, last: int, score: float, long_scores: dict[int, float]) -> dict:
        start, end = doc.unit_chars(first, last)
        containing = [i for i, (s, e) in enumerate(doc.paragraphs) if s <= start and end <= e]
        # the paragraph the model scores best among those holding the span (the innermost on ties)
        paragraph = max(containing, key=lambda i: (long_scores.get(i, -math.inf), doc.paragraphs[i][0]),
                        default=None)
        return _answer("span", score, doc.text[start:end], start, end,
                       doc.paragraphs[paragraph] if paragraph is not None else None)


def window_config(task, max_length: int | None = None, doc_stride: int | None = None,
                  max_question_len: int | None = None) -> WindowConfig:
    """The windows the reader cuts: as given, else the recipes' training windows (the
    preprocessing defaults) with the length capped at the checkpoint's positions."""
    positions = int(task.max_positions())
    cfg = WindowConfig(
        max_length=max_length or min(DEFAULT_WINDOWS.max_length, positions),
        doc_stride=doc_stride or DEFAULT_WINDOWS.doc_stride,
        max_question_len=max_question_len or DEFAULT_WINDOWS.max_question_len)
    try:
        cfg.check()
    except ValueError as e:
        raise ReaderError(f"window settings: {e}") from None
    if cfg.max_length > positions:
        raise ReaderError(f"--max-length {cfg.max_length} is longer than the checkpoint's {positions} positions")
    return cfg


@contextlib.contextmanager
def _dictionary_dir(dict_path: str) -> Iterator[str]:
    """A directory with ``dict.txt`` (what the ``long_qa`` task loads): the file's own when it is
    named so, else a temporary one."""
    if os.path.basename(dict_path) == "dict.txt":
        yield os.path.dirname(os.path.abspath(dict_path))
        return
    tmp = tempfile.mkdtemp(prefix="pf_reader_dict.")
    try:
        shutil.copyfile(dict_path, os.path.join(tmp, "dict.txt"))
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_reader(model_name_or_path: str, checkpoint_file: str | None = None, dict_path: str | None = None,
                sentencepiece_model: str | None = None, encoder_json: str | None = None,
                vocab_bpe: str | None = None, max_length: int | None = None, doc_stride: int | None = None,
                max_question_len: int | None = None, batch_size: int = 8, cpu: bool = False,
                fp16: bool = False) -> QAReader:
    """A ``QAReader`` from a ``long_qa`` checkpoint file or directory (``checkpoint_file`` in it,
    else the first of ``CHECKPOINT_NAMES``); the dictionary and BPE files as given or found
    beside it (``tokenizer_spec``). Raises ``ReaderError`` with one line for the user."""
    if checkpoint_file and os.path.isdir(model_name_or_path):
        checkpoint = resolve_checkpoint(os.path.join(model_name_or_path, checkpoint_file))
    else:
        checkpoint = resolve_checkpoint(model_name_or_path)
    try:
        state = read_checkpoint(checkpoint)
        check_task(checkpoint, state, "long_qa")  # before looking for its files
        spec = tokenizer_spec(os.path.dirname(os.path.abspath(checkpoint)), dict_path, sentencepiece_model,
                              encoder_json, vocab_bpe)
        with _dictionary_dir(spec.dict_path) as data:
            models, _cfg, task = load_for_inference(checkpoint, {"data": data}, "long_qa", state)
    except CheckpointError as e:
        raise ReaderError(str(e)) from None
    model = models[0]
    use_cuda = torch.cuda.is_available() and not cpu
    if use_cuda:
        model = model.cuda()
        if fp16:
            model = model.half()
    elif fp16:
        logger.warning("--fp16 needs CUDA; running in fp32 on the CPU")
    windows = window_config(task, max_length, doc_stride, max_question_len)
    return QAReader(model, task, spec, windows, batch_size, use_cuda)
