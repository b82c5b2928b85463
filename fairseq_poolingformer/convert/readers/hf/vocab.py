"""The HF tokenizer -> Fairseq's ``dict.txt`` plus ``encoder.json`` + ``vocab.bpe`` (GPT-2
byte-level BPE) or ``sentencepiece.bpe.model`` (XLM-R); ids equal the HF tokenizer's ids (see
:mod:`fairseq_poolingformer.convert.readers.hf`)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from typing import Dict, List, Optional

from fairseq_poolingformer.convert.core.errors import ConversionError
from fairseq_poolingformer.convert.readers.hf.directory import FAIRSEQ_SPECIALS, read_json


@dataclass
class HFVocabulary:
    """The HF tokenizer's vocabulary: ``tokens[i]`` is the token of id i (None: no token)."""

    kind: str  # "gpt2" (byte-level BPE) or "sentencepiece"
    tokens: List[Optional[str]]
    merges: List[str]  # gpt2: "a b" per line
    spm_model: Optional[str]  # sentencepiece: path of the model file
    source: str


def _tokens_by_id(pairs: Dict[str, int], source: str) -> List[Optional[str]]:
    tokens: List[Optional[str]] = [None] * (max(pairs.values()) + 1 if pairs else 0)
    for token, idx in pairs.items():
        if not isinstance(idx, int) or idx < 0:
            raise ConversionError(f"{source}: token {token!r} has id {idx!r}")
        if tokens[idx] is not None and tokens[idx] != token:
            raise ConversionError(f"{source}: id {idx} is both {tokens[idx]!r} and {token!r}")
        tokens[idx] = token
    return tokens


def _merge_line(merge, source: str) -> str:
    text = merge if isinstance(merge, str) else " ".join(merge)
    if len(text.split(" ")) != 2:
        raise ConversionError(f"{source}: merge {merge!r} is not two symbols")
    return text


def read_hf_vocabulary(directory: str) -> HFVocabulary:
    """The tokenizer of DIR: ``tokenizer.json`` (BPE or Unigram model, plus added tokens), else
    ``vocab.json`` + ``merges.txt``; a Unigram (sentencepiece) tokenizer also needs
    ``sentencepiece.bpe.model`` in DIR."""
    tok_json = os.path.join(directory, "tokenizer.json")
    vocab_json = os.path.join(directory, "vocab.json")
    spm_path = os.path.join(directory, "sentencepiece.bpe.model")
    if os.path.isfile(tok_json):
        data = read_json(tok_json)
        model = data.get("model") or {}
        mtype = model.get("type")
        if mtype == "BPE":
            pre_tokenizer = json.dumps(data.get("pre_tokenizer"))
            if "ByteLevel" not in pre_tokenizer:
                raise ConversionError(f"{tok_json}: a BPE tokenizer that is not byte-level (pre_tokenizer "
                                      f"{(data.get('pre_tokenizer') or {}).get('type')!r}); Fairseq's gpt2 BPE "
                                      "is GPT-2's byte-level BPE")
            if '"add_prefix_space": true' in pre_tokenizer:
                raise ConversionError(f"{tok_json}: the byte-level pre-tokenizer adds a prefix space; Fairseq's "
                                      "gpt2 BPE does not, so the ids would differ (BART/RoBERTa tokenizers do not)")
            tokens = _tokens_by_id(model.get("vocab") or {}, tok_json)
            merges = [_merge_line(m, tok_json) for m in model.get("merges") or []]
            kind = "gpt2"
        elif mtype == "Unigram":
            tokens = [entry[0] for entry in model.get("vocab") or []]
            merges, kind = [], "sentencepiece"
        else:
            raise ConversionError(f"{tok_json}: tokenizer model type {mtype!r} (expected BPE or Unigram)")
        for added in data.get("added_tokens") or []:
            idx, content = added.get("id"), added.get("content")
            while len(tokens) <= idx:
                tokens.append(None)
            if tokens[idx] not in (None, content):
                raise ConversionError(f"{tok_json}: added token {content!r} takes id {idx} of {tokens[idx]!r}")
            tokens[idx] = content
        source = tok_json
    elif os.path.isfile(vocab_json):
        tokens = _tokens_by_id(read_json(vocab_json), vocab_json)
        merges_path = os.path.join(directory, "merges.txt")
        if not os.path.isfile(merges_path):
            raise ConversionError(f"{directory}: vocab.json without merges.txt")
        with open(merges_path, encoding="utf-8") as f:
            merges = [_merge_line(line.rstrip("\n"), merges_path)
                      for line in f if line.strip() and not line.startswith("#version")]
        kind, source = "gpt2", vocab_json
    elif os.path.isfile(spm_path):
        tokens, merges, kind, source = _xlmr_tokens_from_spm(spm_path), [], "sentencepiece", spm_path
    else:
        raise ConversionError(f"{directory}: no tokenizer (looked for tokenizer.json, vocab.json + merges.txt, "
                              "sentencepiece.bpe.model)")
    if kind == "sentencepiece" and not os.path.isfile(spm_path):
        raise ConversionError(f"{directory}: a sentencepiece (Unigram) tokenizer but no sentencepiece.bpe.model: "
                              "Fairseq tokenizes with the sentencepiece model itself; copy it into the directory "
                              "(e.g. from the original xlm-roberta checkpoint)")
    for idx, special in enumerate(FAIRSEQ_SPECIALS):
        if idx >= len(tokens) or tokens[idx] != special:
            raise ConversionError(f"{source}: id {idx} is {tokens[idx] if idx < len(tokens) else None!r}, but "
                                  f"Fairseq dictionaries have {special} there")
    vocab = HFVocabulary(kind, tokens, merges, spm_path if kind == "sentencepiece" else None, source)
    if kind == "sentencepiece" and source != spm_path:  # pieces read from the model itself match it
        _check_spm_matches(vocab)
    return vocab


def _spm_processor(path: str):
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor()
    if not sp.Load(path):
        raise ConversionError(f"{path}: cannot load the sentencepiece model")
    return sp


def _xlmr_tokens_from_spm(path: str) -> List[Optional[str]]:
    """XLM-R's convention: specials at 0-3, then sentencepiece id i (i >= 3) at i + 1, <mask> last."""
    sp = _spm_processor(path)
    return list(FAIRSEQ_SPECIALS) + [sp.IdToPiece(i) for i in range(3, sp.GetPieceSize())] + ["<mask>"]


def _check_spm_matches(vocab: HFVocabulary) -> None:
    """Each HF piece (ids 4 ...) must be a piece of the sentencepiece model, so that Fairseq's
    sentencepiece BPE (pieces -> dict.txt) gives the HF ids."""
    sp = _spm_processor(vocab.spm_model)
    for idx, token in enumerate(vocab.tokens[4:], start=4):
        if token is None or token == "<mask>":
            continue
        if sp.PieceToId(token) == sp.unk_id() and token != sp.IdToPiece(sp.unk_id()):
            raise ConversionError(f"{vocab.spm_model}: HF token {token!r} (id {idx} in {vocab.source}) is not "
                                  "a piece of this sentencepiece model: wrong model for this tokenizer?")


def dictionary_symbols(vocab: HFVocabulary, rows: int, with_mask_row: bool) -> List[str]:
    """The ``dict.txt`` symbols for ids 4 .. rows - 1 (``rows - 2`` when the task adds <mask>)."""
    if len(vocab.tokens) > rows:
        extra = [t for t in vocab.tokens[rows:] if t is not None]
        raise ConversionError(f"{vocab.source}: {len(vocab.tokens)} token ids but the model embeds {rows} rows "
                              f"(tokens without a row: {extra[:5]})")
    last = rows if with_mask_row else rows - 1
    if not with_mask_row:
        mask = vocab.tokens[rows - 1] if rows - 1 < len(vocab.tokens) else None
        if mask != "<mask>":
            raise ConversionError(f"{vocab.source}: the last id {rows - 1} is {mask!r}, expected <mask> "
                                  "(RoBERTa / XLM-R tasks add <mask> as the last symbol)")
    symbols = []
    for idx in range(4, last):
        token = vocab.tokens[idx] if idx < len(vocab.tokens) else None
        if vocab.kind == "gpt2":
            symbols.append(str(idx))  # encoder.json maps the token to idx: see readers/hf/__init__.py
        elif token is None or any(c.isspace() for c in token):
            # a row without a token, or a piece holding whitespace ("\r"): neither Fairseq (which
            # splits BPE output on whitespace) nor HF (WhitespaceSplit) ever produces it, and a
            # dict.txt line cannot hold it: a placeholder keeps the rows aligned
            symbols.append(f"madeupword{idx:06d}")
        else:
            symbols.append(token)
    return symbols


def write_tokenizer_files(vocab: HFVocabulary, rows: int, with_mask_row: bool, directory: str) -> List[str]:
    """Write dict.txt plus encoder.json + vocab.bpe (gpt2) or sentencepiece.bpe.model into
    ``directory``; returns the paths (dict.txt first)."""
    symbols = dictionary_symbols(vocab, rows, with_mask_row)
    if len(set(symbols)) != len(symbols):
        dup = sorted({s for s in symbols if symbols.count(s) > 1})[:5]
        raise ConversionError(f"{vocab.source}: tokens {dup} appear twice; a Fairseq dictionary needs unique symbols")
    paths = [os.path.join(directory, "dict.txt")]
    with open(paths[0], "w", encoding="utf-8") as f:
        f.writelines(f"{s} 1\n" for s in symbols)
    if vocab.kind == "gpt2":
        encoder = {t: i for i, t in enumerate(vocab.tokens) if t is not None}
        paths.append(os.path.join(directory, "encoder.json"))
        with open(paths[-1], "w", encoding="utf-8") as f:
            json.dump(encoder, f)  # ASCII (\u escapes): fairseq opens it with the locale encoding
        paths.append(os.path.join(directory, "vocab.bpe"))
        with open(paths[-1], "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "".join(m + "\n" for m in vocab.merges))
    else:
        paths.append(os.path.join(directory, "sentencepiece.bpe.model"))
        shutil.copyfile(vocab.spm_model, paths[-1])
    return paths
