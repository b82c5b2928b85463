"""A question and a document as given -> the QA preprocessing's ``QAExample``, and its units
back to character offsets of the document.

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
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Sequence

from fairseq_poolingformer.preprocess.common import InputError
from fairseq_poolingformer.preprocess.nq import is_html
from fairseq_poolingformer.preprocess.qa_tokenize import TokenizedDoc
from fairseq_poolingformer.preprocess.qa_windows import Candidate, QAExample, WindowStats, check_text
from fairseq_poolingformer.qa.errors import ReaderError
from fairseq_poolingformer.qa.scores import WindowResult

FORMATS = ("auto", "text", "nq-html")
# NQ's long-answer candidates: paragraphs, tables, table rows, lists and list items
NQ_CANDIDATE_TAGS = frozenset({"P", "Table", "Tr", "Ul", "Ol", "Dl", "Li", "Dd", "Dt"})
_BLANK_LINES = re.compile(r"\n[^\S\n]*\n\s*")
_NQ_TAG_NAME = re.compile(r"^</?([A-Za-z]+)")


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
