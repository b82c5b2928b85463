"""Subword tokenization for QA that keeps the map from every subword back to the document.

A document is a sequence of *units* with offsets in the original data:

* NQ: the document tokens (``units[i] == (i, i + 1)``, token offsets, end exclusive). Each
  token is tokenized on its own (as if preceded by a space), so every subword belongs to
  exactly one token; HTML tokens may be left without subwords (``skip`` mask).
* TyDi QA: UTF-8 byte spans of the plain text. The text is cut into *segments*: maximal runs
  of non-whitespace characters, further cut at given byte offsets (passage boundaries and,
  optionally, gold answer boundaries). Each segment is tokenized on its own; the units are
  the smallest character-aligned groups of its subwords (one subword, or several subwords
  that share a character, e.g. the byte pieces of one Thai or CJK character under GPT-2 BPE).
  Thai, Japanese or Chinese text without spaces is therefore split as finely as the
  tokenizer splits it, never coarser than a subword.

Two tokenizers, both mapped through the model's Fairseq ``Dictionary`` (``dict.txt``):

* ``gpt2``: fairseq's GPT-2 byte-level BPE (``get_encoder(encoder.json, vocab.bpe)``); a BPE id
  ``i`` is the dictionary symbol ``str(i)`` (RoBERTa).
* ``sentencepiece``: a sentencepiece model; a piece is its own dictionary symbol (XLM-R).
  Unknown runs (one ``<unk>`` covering several characters) are split into one subword per
  character so that no unit is coarser than a character.

Segments that start a word are tokenized with the word-start marker (GPT-2: leading space,
sentencepiece: the dummy ``\u2581`` prefix); segments cut inside a word are tokenized without it.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Iterator, Protocol, Sequence

from fairseq.data import Dictionary

from fairseq_poolingformer.preprocess.common import InputError

__all__ = [
    "TokenizerSpec",
    "SubwordTokenizer",
    "Gpt2BpeTokenizer",
    "SentencePieceTokenizer",
    "build_tokenizer",
    "get_tokenizer",
    "TokenizedDoc",
    "tokenize_tokens",
    "text_segments",
    "iter_text_segments",
    "tokenize_text",
    "utf8_char_starts",
]


# ---------------------------------------------------------------------------
# tokenizers

@dataclass(frozen=True)
class TokenizerSpec:
    """Everything needed to build a tokenizer in any process (picklable, hashable)."""
    kind: str                      # "gpt2" | "sentencepiece"
    dict_path: str
    encoder_json: str | None = None
    vocab_bpe: str | None = None
    sentencepiece_model: str | None = None


class SubwordTokenizer(Protocol):
    dictionary: Dictionary

    def encode(self, text: str) -> list[int]:
        """Dictionary indices of ``text`` tokenized as a whole (used for questions)."""

    def encode_segment(self, text: str, word_start: bool) -> tuple[list[int], list[tuple[int, int]]]:
        """Dictionary indices and ``[start, end)`` UTF-8 byte spans (relative to ``text``) of
        each subword of a whitespace-free segment; a span may be empty (a bare marker)."""


class Gpt2BpeTokenizer:
    """GPT-2 byte-level BPE ids mapped through a RoBERTa-style dictionary."""

    def __init__(self, encoder_json: str, vocab_bpe: str, dictionary: Dictionary) -> None:
        from fairseq.data.encoders.gpt2_bpe_utils import get_encoder

        from fairseq_poolingformer.preprocess.bpe import check_gpt2_files

        check_gpt2_files(encoder_json, vocab_bpe)
        self.bpe = get_encoder(encoder_json, vocab_bpe)
        self.dictionary = dictionary
        # number of bytes of each BPE token (its byte-level string has one char per byte)
        self._nbytes = {i: len(s) for s, i in self.bpe.encoder.items()}
        self._index: dict[int, int] = {}

    def _to_dict(self, bpe_id: int) -> int:
        idx = self._index.get(bpe_id)
        if idx is None:
            idx = self._index[bpe_id] = self.dictionary.index(str(bpe_id))
        return idx

    def encode(self, text: str) -> list[int]:
        return [self._to_dict(i) for i in self.bpe.encode(text)]

    def encode_segment(self, text: str, word_start: bool) -> tuple[list[int], list[tuple[int, int]]]:
        shift = 1 if word_start else 0  # the leading space is a byte of the first token
        bpe_ids = self.bpe.encode(" " + text if word_start else text)
        ids, spans, pos = [], [], -shift
        for i in bpe_ids:
            end = pos + self._nbytes[i]
            ids.append(self._to_dict(i))
            spans.append((max(pos, 0), max(end, 0)))
            pos = end
        return ids, spans


class SentencePieceTokenizer:
    """Sentencepiece pieces mapped through an XLM-R-style dictionary (one symbol per piece)."""

    def __init__(self, model_path: str, dictionary: Dictionary) -> None:
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_file=model_path)
        self.sp_inner = self._without_dummy_prefix(model_path)  # for segments cut inside a word
        self.dictionary = dictionary
        self._index: dict[str, int] = {}

    @staticmethod
    def _without_dummy_prefix(model_path: str):
        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2

        proto = sentencepiece_model_pb2.ModelProto()
        with open(model_path, "rb") as f:
            proto.ParseFromString(f.read())
        proto.normalizer_spec.add_dummy_prefix = False
        return spm.SentencePieceProcessor(model_proto=proto.SerializeToString())

    def _to_dict(self, piece: str) -> int:
        idx = self._index.get(piece)
        if idx is None:
            idx = self._index[piece] = self.dictionary.index(piece)
        return idx

    def encode(self, text: str) -> list[int]:
        return [self._to_dict(p) for p in self.sp.encode(text, out_type=str)]

    def encode_segment(self, text: str, word_start: bool) -> tuple[list[int], list[tuple[int, int]]]:
        sp = self.sp if word_start else self.sp_inner
        proto = sp.encode(text, return_type="proto")
        raw = text.encode("utf-8")
        unk = sp.unk_id()
        ids, spans = [], []
        for p in proto.pieces:
            if p.id == unk and p.end - p.begin > 0:
                # one subword per character of an unknown run (so units stay <= 1 character)
                pos = p.begin
                for ch in raw[p.begin:p.end].decode("utf-8"):
                    n = len(ch.encode("utf-8"))
                    ids.append(self._to_dict(ch))
                    spans.append((pos, pos + n))
                    pos += n
            else:
                ids.append(self._to_dict(p.piece))
                spans.append((p.begin, p.end))
        return ids, spans


def load_dictionary(path: str) -> Dictionary:
    """Fairseq's ``Dictionary.load``; a file that is not a dict.txt (an encoder.json, a
    sentencepiece model, ...) is an InputError naming its first bad line, not the whole line."""
    try:
        return Dictionary.load(path)
    except (ValueError, RuntimeError, UnicodeDecodeError) as e:
        with open(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                token, _, count = raw.decode("utf-8", "replace").rstrip("\n").rpartition(" ")
                if not token or not count.lstrip("#").replace("fairseq:overwrite", "").strip().isdigit():
                    preview = raw[:40].decode("utf-8", "replace")
                    raise InputError(path, number, "dict", f"not a Fairseq dict.txt line ('<token> <count>'): "
                                     f"{preview!r}{'...' if len(raw) > 40 else ''}", reason="bad_dict") from None
        raise InputError(path, 0, "dict", f"not a usable Fairseq dict.txt: {str(e)[:200]}",
                         reason="bad_dict") from None


def build_tokenizer(spec: TokenizerSpec) -> SubwordTokenizer:
    """Load the dictionary and the tokenizer files named by ``spec`` (never downloads)."""
    dictionary = load_dictionary(spec.dict_path)
    if spec.kind == "gpt2":
        if not spec.encoder_json or not spec.vocab_bpe:
            raise ValueError("gpt2 BPE needs --encoder-json and --vocab-bpe")
        return Gpt2BpeTokenizer(spec.encoder_json, spec.vocab_bpe, dictionary)
    if spec.kind == "sentencepiece":
        if not spec.sentencepiece_model:
            raise ValueError("sentencepiece needs --sentencepiece-model")
        return SentencePieceTokenizer(spec.sentencepiece_model, dictionary)
    raise ValueError(f"unknown tokenizer kind {spec.kind!r} (gpt2 or sentencepiece)")


_CACHE: dict[TokenizerSpec, SubwordTokenizer] = {}


def get_tokenizer(spec: TokenizerSpec) -> SubwordTokenizer:
    """``build_tokenizer`` once per process (worker processes call this for every record)."""
    tok = _CACHE.get(spec)
    if tok is None:
        tok = _CACHE[spec] = build_tokenizer(spec)
    return tok


# ---------------------------------------------------------------------------
# tokenized document

@dataclass
class TokenizedDoc:
    """Document subwords and their map back to units.

    ``units[u]``: ``(start, end)`` source offsets of unit ``u`` (NQ tokens or TyDi bytes), sorted
    and disjoint. ``ids[k]``: dictionary index of subword ``k``; ``unit_of[k]``: its unit
    (non-decreasing in ``k``). Units may have no subword (e.g. dropped HTML tokens).
    """
    units: list[tuple[int, int]]
    ids: list[int] = field(default_factory=list)
    unit_of: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._starts = [s for s, _ in self.units]
        self._ends = [e for _, e in self.units]

    def unit_range(self, start: int, end: int, contained: bool = True) -> tuple[int, int]:
        """Units ``[u0, u1)`` inside source span ``[start, end)`` (``contained``) or overlapping it."""
        if contained:
            return bisect.bisect_left(self._starts, start), bisect.bisect_right(self._ends, end)
        return bisect.bisect_right(self._ends, start), bisect.bisect_left(self._starts, end)

    def subword_span(self, start: int, end: int, contained: bool = True) -> tuple[int, int] | None:
        """Inclusive subword indices ``(first, last)`` of source span ``[start, end)``, or None
        when no subword falls in it."""
        u0, u1 = self.unit_range(start, end, contained)
        if u0 >= u1:
            return None
        first = bisect.bisect_left(self.unit_of, u0)
        last = bisect.bisect_left(self.unit_of, u1) - 1
        return (first, last) if first <= last else None

    def source_span(self, first: int, last: int) -> tuple[int, int]:
        """Source offsets ``[start, end)`` covered by subwords ``first..last`` (inclusive)."""
        return self.units[self.unit_of[first]][0], self.units[self.unit_of[last]][1]


def tokenize_tokens(tokens: Sequence[str], tokenizer: SubwordTokenizer,
                    skip: Sequence[bool] | None = None) -> TokenizedDoc:
    """NQ: one unit per token; tokens with ``skip[i]`` (and empty tokens) get no subwords."""
    doc = TokenizedDoc([(i, i + 1) for i in range(len(tokens))])
    for i, token in enumerate(tokens):
        if (skip is not None and skip[i]) or not token.strip():
            continue  # skipped (HTML) or empty tokens have no subwords
        ids, _ = tokenizer.encode_segment(token, word_start=True)
        doc.ids.extend(ids)
        doc.unit_of.extend([i] * len(ids))
    return doc


# ---------------------------------------------------------------------------
# plain text (TyDi QA)

_NON_SPACE = re.compile(r"\S+")


def utf8_char_starts(text: str) -> list[int]:
    """Byte offset of every character of ``text``, plus the total byte length at the end."""
    starts = [0] * (len(text) + 1)
    pos = 0
    for i, ch in enumerate(text):
        starts[i] = pos
        c = ord(ch)
        pos += 1 if c < 0x80 else 2 if c < 0x800 else 3 if c < 0x10000 else 4
    starts[-1] = pos
    return starts


def text_segments(text: str, cuts: Sequence[int] = ()) -> list[tuple[int, int, bool]]:
    """Split ``text`` into whitespace-free segments ``(start_byte, end_byte, word_start)``.

    Segments are the runs of non-whitespace characters, cut again at every byte offset in
    ``cuts`` that falls strictly inside a run (offsets must be character boundaries).
    ``word_start`` is False for the pieces after a cut.
    """
    return list(iter_text_segments(text, cuts))


def iter_text_segments(text: str, cuts: Sequence[int] = ()) -> Iterator[tuple[int, int, bool]]:
    """``text_segments`` one at a time (a long document's segments are never all held)."""
    cut_list = sorted(set(cuts))
    char, byte = 0, 0  # byte offset of character `char` (counted as we go: no per-character table)
    for m in _NON_SPACE.finditer(text):
        b0 = byte + len(text[char:m.start()].encode("utf-8"))
        b1 = b0 + len(m.group().encode("utf-8"))
        char, byte = m.end(), b1
        i = bisect.bisect_right(cut_list, b0)
        start, word_start = b0, True
        while i < len(cut_list) and cut_list[i] < b1:
            yield start, cut_list[i], word_start
            start, word_start = cut_list[i], False
            i += 1
        yield start, b1, word_start


def _group_units(seg: bytes, spans: list[tuple[int, int]]) -> tuple[list[list[int]], list[int]]:
    """Merge subword byte spans of one segment into character-aligned units.

    Returns (units as [start, end] relative byte offsets, unit of each subword or -1 when
    the segment has no non-empty subword). Empty spans join the next unit (or the last).
    """
    def char_floor(b: int) -> int:
        while 0 < b < len(seg) and (seg[b] & 0xC0) == 0x80:
            b -= 1
        return b

    def char_ceil(b: int) -> int:
        while 0 < b < len(seg) and (seg[b] & 0xC0) == 0x80:
            b += 1
        return b

    units: list[list[int]] = []
    unit_of = [-1] * len(spans)
    pending: list[int] = []
    for k, (b, e) in enumerate(spans):
        if e <= b:
            pending.append(k)
            continue
        s, t = char_floor(b), char_ceil(e)
        if units and s < units[-1][1]:
            units[-1][1] = max(units[-1][1], t)
        else:
            units.append([s, t])
        for p in pending:
            unit_of[p] = len(units) - 1
        pending.clear()
        unit_of[k] = len(units) - 1
    for p in pending:
        unit_of[p] = len(units) - 1  # stays -1 when there is no unit at all
    return units, unit_of


def tokenize_text(text: str, tokenizer: SubwordTokenizer, cuts: Sequence[int] = ()) -> TokenizedDoc:
    """TyDi: tokenize plain text; units are UTF-8 byte spans (see module docstring)."""
    raw = text.encode("utf-8")
    units: list[tuple[int, int]] = []
    ids: list[int] = []
    unit_of: list[int] = []
    for b0, b1, word_start in iter_text_segments(text, cuts):
        seg = raw[b0:b1]
        seg_ids, spans = tokenizer.encode_segment(seg.decode("utf-8"), word_start)
        seg_units, seg_unit_of = _group_units(seg, spans)
        base = len(units)
        units.extend((b0 + s, b0 + e) for s, e in seg_units)
        for i, u in zip(seg_ids, seg_unit_of):
            if u >= 0:
                ids.append(i)
                unit_of.append(base + u)
    return TokenizedDoc(units, ids, unit_of)
