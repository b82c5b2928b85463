"""Ask a long document a question: a ``long_qa`` checkpoint as a reader (docs/qa.md).

    from fairseq_poolingformer.qa import load_reader
    reader = load_reader("checkpoints/nq")            # model.pt / checkpoint_best.pt + dict.txt + BPE
    reader.answer("who is the mother?", open("doc.txt", encoding="utf-8", newline="").read())
    # {'answer': 'Tracy McConnell', 'start': 1412, 'end': 1427, 'score': 7.3, 'kind': 'span',
    #  'paragraph': [1302, 1788]}

A document goes through the QA preprocessing's own steps (``fairseq_poolingformer.preprocess``:
``qa_tokenize``, ``qa_windows``) and the predictions' own window decoding (``qa.scores``) and document-level
combination (``qa.combine``): the answer and its score are those ``qa.predict`` writes for the same document
preprocessed as an NQ / TyDi record. Windows are built one at a time and run in batches of
``batch_size``, so a document of any length needs memory for its subwords, not its windows.

Documents (``qa.documents``): plain text, NQ-style HTML, or ``format="auto"``;
``paragraphs=[(start, end), ...]`` (character offsets) gives the paragraphs instead.

Every answer is a dict: ``answer`` (the text; ``"yes"`` / ``"no"`` / ``""`` for the other kinds),
``start`` / ``end`` (character offsets into the document as given, ``document[start:end] ==
answer``; ``None`` unless a span), ``score`` (log-odds against no answer, the predictions'
scale: above 0 the model prefers this answer to none), ``kind`` (``span``, ``yes``, ``no``,
``none``) and ``paragraph`` (``[start, end]`` of the paragraph it lies in, or of the chosen
paragraph for yes / no; ``None`` when the document has none).
"""
from __future__ import annotations

import logging
import math
import os
from typing import Iterable, Iterator, Sequence

import torch

from fairseq_poolingformer.inference.checkpoint import (INFERENCE_ATTENTION, TOOL_ADVICE, check_task, checkpoint_config,
                                                        load_for_inference, read_checkpoint)
from fairseq_poolingformer.inference.device import place
from fairseq_poolingformer.inference.dictionary import dictionary_dir
from fairseq_poolingformer.inference.errors import CheckpointError
from fairseq_poolingformer.inference.files import DICT_NAME, SPM_NAMES, check_dictionary, find_bpe, resolve_checkpoint
from fairseq_poolingformer.preprocess.common import MAX_UNK_RATE, InputError
from fairseq_poolingformer.preprocess.qa_tokenize import TokenizerSpec, build_tokenizer
from fairseq_poolingformer.preprocess.qa_windows import WindowConfig, iter_windows, prepare_example
from fairseq_poolingformer.qa.combine import ExamplePrediction, candidate_best_scores, combine_windows, logits_finite
from fairseq_poolingformer.qa.documents import Document, make_document
from fairseq_poolingformer.qa.errors import ReaderError
from fairseq_poolingformer.qa.scores import WindowResult, run_batch
from fairseq_poolingformer.tasks.long_qa import collate_windows

logger = logging.getLogger(__name__)

__all__ = ["ReaderError", "QAReader", "load_reader"]

DEFAULT_WINDOWS = WindowConfig()   # what the recipes preprocess (and train) with: 4096 / 1568 / 64
BPE_FLAGS = {"sentencepiece_model": "--sentencepiece-model", "encoder_json": "--encoder-json",
             "vocab_bpe": "--vocab-bpe"}


def tokenizer_spec(model_dir: str, dict_path: str | None = None, sentencepiece_model: str | None = None,
                   encoder_json: str | None = None, vocab_bpe: str | None = None) -> TokenizerSpec:
    """The QA tokenizer's files: as given, else beside the checkpoint (``inference.files``);
    a file that is not what it should be raises the floor's ``CheckpointError``."""
    dict_path = dict_path or os.path.join(model_dir, DICT_NAME)
    if not os.path.isfile(dict_path):
        raise ReaderError(f"dictionary not found: {dict_path} (pass --dict)")
    check_dictionary(dict_path)
    bpe = find_bpe(model_dir, None, sentencepiece_model, encoder_json, vocab_bpe)
    if bpe is None:
        raise ReaderError(
            f"no BPE for the reader: none given and none beside the checkpoint in {model_dir} (looked for "
            f"{' or '.join(SPM_NAMES)}, or encoder.json + vocab.bpe); pass --sentencepiece-model, or "
            f"--encoder-json and --vocab-bpe")
    bpe.check(model_dir, BPE_FLAGS)
    return TokenizerSpec(bpe.kind, dict_path, sentencepiece_model=bpe.sentencepiece_model,
                         encoder_json=bpe.encoder_json, vocab_bpe=bpe.vocab_bpe)


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
            if doc.stats.unk_rate > MAX_UNK_RATE:  # the preprocessing's --max-unk-rate default
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


def check_windows(cfg: WindowConfig, window: str | None = None) -> None:
    """ReaderError naming the flag unless every window holds a document part beside the longest
    question and ``doc_stride`` fits in a window: at most its document part with a one-subword
    question (``max_length - 4``). (With a longer question the step is the document part, as
    in the preprocessing: ``qa_windows``.) ``window``: how the message calls the window when
    the user gave no ``--max-length`` (e.g. "the checkpoint's 512-token window")."""
    for flag, value in (("--max-length", cfg.max_length), ("--doc-stride", cfg.doc_stride),
                        ("--max-question-len", cfg.max_question_len)):
        if value < 1:
            raise ReaderError(f"{flag} must be at least 1, got {value}")
    room = cfg.max_length - cfg.max_question_len - 3   # <s> question </s> ... </s>
    if room < 1:
        raise ReaderError(f"{window or f'--max-length {cfg.max_length}'} leaves no room for the document beside "
                          f"a --max-question-len {cfg.max_question_len} question (needs at least "
                          f"{cfg.max_question_len + 4})")
    if cfg.doc_stride > cfg.max_length - 4:
        window = window or f"a --max-length {cfg.max_length} window"
        raise ReaderError(f"--doc-stride {cfg.doc_stride} is longer than {window} holds of a document (at most "
                          f"{cfg.max_length - 4} subwords): give at most that")


def checkpoint_positions(state: dict) -> int:
    """The longest window a ``long_qa`` checkpoint takes (its task's ``max_positions``), from the
    state as ``read_checkpoint`` returns it (before the model is built)."""
    return int(checkpoint_config(state).task.max_positions)


def window_config(positions: int, max_length: int | None = None, doc_stride: int | None = None,
                  max_question_len: int | None = None) -> WindowConfig:
    """The windows the reader cuts for a checkpoint of ``positions`` positions: as given, else
    the recipes' training windows (the preprocessing defaults) fitted to the checkpoint: the
    length capped at its positions, and the stride scaled with the length (1568 of 4096:
    windows overlap by the same share). ReaderError naming the flag when they cannot work."""
    window = None
    if max_length is None:
        max_length = min(DEFAULT_WINDOWS.max_length, positions)
        whose = "the checkpoint's" if max_length == positions else "the default"
        window = f"{whose} {max_length}-token window"
    if max_question_len is None:
        max_question_len = DEFAULT_WINDOWS.max_question_len
    if doc_stride is None:
        share = DEFAULT_WINDOWS.doc_stride / DEFAULT_WINDOWS.max_length
        doc_stride = max(1, min(round(share * max_length), max_length - max_question_len - 3))
    cfg = WindowConfig(max_length=max_length, doc_stride=doc_stride, max_question_len=max_question_len)
    check_windows(cfg, window)
    if cfg.max_length > positions:
        raise ReaderError(f"--max-length {cfg.max_length} is longer than the checkpoint's {positions} positions")
    return cfg


def load_reader(model_name_or_path: str, checkpoint_file: str | None = None, dict_path: str | None = None,
                sentencepiece_model: str | None = None, encoder_json: str | None = None,
                vocab_bpe: str | None = None, max_length: int | None = None, doc_stride: int | None = None,
                max_question_len: int | None = None, batch_size: int = 8, cpu: bool = False,
                fp16: bool = False) -> QAReader:
    """A ``QAReader`` from a ``long_qa`` checkpoint file or directory (``checkpoint_file`` in it,
    else the first of ``inference.files.CHECKPOINT_NAMES``); the dictionary and BPE files as given or found
    beside it (``tokenizer_spec``). Raises ``ReaderError`` with one line for the user."""
    if batch_size < 1:
        raise ReaderError(f"--batch-size must be at least 1, got {batch_size}")
    try:
        checkpoint = resolve_checkpoint(model_name_or_path, checkpoint_file)
        state = read_checkpoint(checkpoint)
        check_task(checkpoint, state, "long_qa")  # before looking for its files
        windows = window_config(checkpoint_positions(state), max_length, doc_stride, max_question_len)
        spec = tokenizer_spec(os.path.dirname(os.path.abspath(checkpoint)), dict_path, sentencepiece_model,
                              encoder_json, vocab_bpe)
        with dictionary_dir(spec.dict_path, [DICT_NAME]) as data:
            models, _cfg, task = load_for_inference(checkpoint, {"data": data, **INFERENCE_ATTENTION}, None, state,
                                                    TOOL_ADVICE)  # (task checked above)
    except CheckpointError as e:
        raise ReaderError(str(e)) from None
    model, use_cuda = place(models[0], cpu, fp16)
    return QAReader(model, task, spec, windows, batch_size, use_cuda)
