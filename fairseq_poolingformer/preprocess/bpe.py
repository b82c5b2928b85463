"""Encode text files line by line with GPT-2 BPE or sentencepiece (and decode back).

Backends:

``--bpe gpt2 --encoder-json E --vocab-bpe V``
    Each line becomes the space-separated GPT-2 token ids, exactly what Fairseq's
    ``examples/roberta/multiprocessing_bpe_encoder.py`` writes (``line.strip()`` then
    ``get_encoder(E, V).encode``), so ``fairseq-preprocess --srcdict dict.txt --tgtdict
    dict.txt`` with BART's ``dict.txt`` binarizes it. The files are read from the given
    paths; nothing is ever downloaded.

``--bpe sentencepiece --sentencepiece-model M``
    Each line becomes space-separated sentencepiece pieces (``▁the ▁model``); binarize
    with ``fairseq-preprocess --joined-dictionary``. With ``--sentencepiece-train
    --vocab-size N`` the model is first trained on ``--train-inputs`` (default: the
    ``--inputs``) and written to M (plus M's ``.vocab``), with ``hard_vocab_limit=False``
    so that tiny data works, and byte fallback (unseen characters become byte pieces, not
    ``<unk>``; ``--no-byte-fallback`` to turn off). ``--write-dict D`` writes a Fairseq ``dict.txt`` holding every
    piece of the model, to binarize with ``--srcdict D --tgtdict D`` (a joined dictionary
    that also covers pieces unseen in the training split). Documents are one long line each, so training sees them in
    chunks of ``--train-chunk-words`` words (sentencepiece skips "sentences" longer than
    ``max_sentence_length`` bytes), sampled to at most ``--train-max-sentences``.

``--decode``
    The inverse: BPE lines (ids or pieces) back to text.

``--truncate-lines N --inputs F...``
    Cut every line of already encoded files to its first ``N - 1`` tokens (a model with
    ``N`` target positions: the tokens + ``</s>``), in place and atomically, and print how
    many lines were cut per file (``recipes/arxiv/binarize.sh --truncate-target N`` does
    it for the train and valid targets).

Lines are streamed through ``--workers`` processes, in order. An empty line is an error
(``file:line``; Fairseq would otherwise make an empty example) unless ``--keep-empty``.
All ``--outputs`` are written atomically together: complete, or none.

Usage::

    python -m fairseq_poolingformer.preprocess.bpe --bpe gpt2 --encoder-json encoder.json --vocab-bpe vocab.bpe \\
        --inputs text/train.source text/train.target --outputs bpe/train.source bpe/train.target
    python -m fairseq_poolingformer.preprocess.bpe --bpe sentencepiece --sentencepiece-train --vocab-size 8000 \\
        --sentencepiece-model bpe/spm.model --inputs text/train.source text/train.target \\
        --outputs bpe/train.source bpe/train.target
    # the Fairseq dict.txt of an existing sentencepiece model, nothing else (e.g. for fairseq_poolingformer.preprocess.tydi)
    python -m fairseq_poolingformer.preprocess.bpe --bpe sentencepiece --sentencepiece-model spm.model --write-dict dict.txt
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import sys
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

from fairseq_poolingformer.preprocess.common import InputError, atomic_outputs, iter_lines, parallel_map

# A backend is a picklable tuple: ("gpt2", encoder_json, vocab_bpe) or ("sentencepiece", model_path).
Backend = tuple


def check_gpt2_files(encoder_json: str, vocab_bpe: str) -> None:
    """Raise naming the file when ``encoder_json`` / ``vocab_bpe`` are missing, not what they should
    be (a JSON object of token -> id; the merges list, ``#version`` first), or swapped."""
    for path in (encoder_json, vocab_bpe):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"GPT-2 BPE file not found: {path}")
    enc_error = _json_object_error(encoder_json)
    if enc_error is None and _json_object_error(vocab_bpe) is None:
        raise ValueError(f"--encoder-json {encoder_json} and --vocab-bpe {vocab_bpe} are both JSON files: "
                         "vocab.bpe is GPT-2's list of merges")
    if enc_error is not None:
        if _json_object_error(vocab_bpe) is None:
            raise ValueError(f"GPT-2 BPE files look swapped: --encoder-json {encoder_json} is not JSON and "
                             f"--vocab-bpe {vocab_bpe} is: pass encoder.json as --encoder-json and vocab.bpe "
                             "as --vocab-bpe")
        raise ValueError(f"{encoder_json}: not a GPT-2 encoder.json ({enc_error})")


def _json_object_error(path: str) -> str | None:
    """``None`` when ``path`` holds one JSON object, else what is wrong with it."""
    with open(path, "rb") as f:
        head = f.read(64).lstrip()
        if not head.startswith(b"{"):
            return f"expected a JSON object, the file starts with {head[:16]!r}"
        f.seek(0)
        try:
            value = json.loads(f.read().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return f"invalid JSON: {e}"
    return None if isinstance(value, dict) else "expected a JSON object"


def gpt2_backend(encoder_json: str, vocab_bpe: str) -> Backend:
    check_gpt2_files(encoder_json, vocab_bpe)
    return ("gpt2", os.path.abspath(encoder_json), os.path.abspath(vocab_bpe))


def sentencepiece_backend(model_path: str) -> Backend:
    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"sentencepiece model not found: {model_path}")
    return ("sentencepiece", os.path.abspath(model_path))


@functools.lru_cache(maxsize=4)
def _load(backend: Backend):
    """Load a backend once per process (each worker loads it on first use)."""
    if backend[0] == "gpt2":
        from fairseq.data.encoders.gpt2_bpe_utils import get_encoder
        return get_encoder(backend[1], backend[2])
    if backend[0] == "sentencepiece":
        import sentencepiece as spm
        return spm.SentencePieceProcessor(model_file=backend[1])
    raise ValueError(f"unknown BPE backend {backend[0]!r}")


def encode_line(backend: Backend, text: str) -> str:
    """One line of text -> one line of space-separated GPT-2 ids or sentencepiece pieces."""
    text = text.strip()
    if backend[0] == "gpt2":
        return " ".join(map(str, _load(backend).encode(text)))
    return " ".join(_load(backend).encode(text, out_type=str))


def decode_line(backend: Backend, line: str) -> str:
    """Inverse of ``encode_line``."""
    tokens = line.split()
    if backend[0] == "gpt2":
        return _load(backend).decode([int(t) for t in tokens])
    return _load(backend).decode_pieces(tokens)


def _work(backend: Backend, decode: bool, keep_empty: bool,
          item: tuple[str, int, bytes]) -> tuple[str, str | InputError]:
    """Worker: ``(path, line_no, raw)`` -> ``(path, encoded line or the InputError)``."""
    path, line_no, raw = item
    return path, _work_line(backend, decode, keep_empty, path, line_no, raw)


def _work_line(backend: Backend, decode: bool, keep_empty: bool, path: str, line_no: int,
               raw: bytes) -> str | InputError:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return InputError(path, line_no, "<line>", f"invalid UTF-8 byte 0x{raw[e.start:e.start + 1].hex()} "
                          f"at byte offset {e.start}", reason="non_utf8")
    if not text.strip() and not keep_empty:
        return InputError(path, line_no, "<line>", "empty line (would become an empty example; "
                          "use --keep-empty to keep it)", reason="empty_line")
    try:
        return decode_line(backend, text) if decode else encode_line(backend, text)
    except (ValueError, KeyError) as e:  # e.g. a non-integer or unknown id when decoding GPT-2
        return InputError(path, line_no, "<line>", f"cannot {'decode' if decode else 'encode'}: {e!r}",
                          reason="bad_token")


@dataclass
class FileStats:
    path: str
    lines: int = 0
    tokens: int = 0
    max_tokens: int = 0

    def summary(self) -> str:
        mean = self.tokens / max(self.lines, 1)
        return (f"{self.path}: {self.lines} lines, {self.tokens} tokens "
                f"(mean {mean:.1f}, max {self.max_tokens} per line)")


def _items(paths: Sequence[str]) -> Iterator[tuple[str, int, bytes]]:
    for path in paths:
        for line_no, raw in iter_lines(path):
            yield path, line_no, raw


def process_files(backend: Backend, inputs: Sequence[str], outputs: Sequence[str], workers: int = 1,
                  decode: bool = False, keep_empty: bool = False, progress: bool = True) -> list[FileStats]:
    """Encode (or decode) ``inputs[i]`` -> ``outputs[i]`` line by line; all outputs or none.

    Raises ``InputError`` naming file and line at the first bad line. Stats count output tokens.
    """
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} inputs but {len(outputs)} outputs")
    _load(backend)  # fail early, in this process, on a bad model file; forked workers inherit it
    stats = {path: FileStats(path) for path in inputs}
    if len(stats) != len(inputs):
        raise ValueError("the same input file is given twice")
    worker = functools.partial(_work, backend, decode, keep_empty)
    with atomic_outputs(outputs) as temps:
        files = {path: open(tmp, "w", encoding="utf-8", newline="\n") for path, tmp in zip(inputs, temps)}
        try:
            with contextlib.closing(parallel_map(
                    worker, _items(inputs), workers=workers, chunksize=8,
                    desc=f"{'decode' if decode else 'encode'} {backend[0]}", progress=progress)) as results:
                for path, result in results:
                    if isinstance(result, InputError):
                        raise result
                    files[path].write(result + "\n")
                    s = stats[path]
                    n = len(result.split()) if not decode else len(result)
                    s.lines, s.tokens, s.max_tokens = s.lines + 1, s.tokens + n, max(s.max_tokens, n)
        finally:
            for f in files.values():
                f.close()
    return list(stats.values())


def truncate_lines(path: str, positions: int) -> tuple[int, int]:
    """Cut each line of ``path`` to ``positions - 1`` tokens, in place; return ``(cut, lines)``."""
    if positions < 2:
        raise ValueError(f"--truncate-lines needs at least 2 positions (tokens + </s>), got {positions}")
    keep = positions - 1
    cut = lines = 0
    with atomic_outputs([path]) as (tmp,):
        with open(tmp, "w", encoding="utf-8", newline="\n") as out:
            for line_no, raw in iter_lines(path):
                tokens = raw.split()
                if len(tokens) > keep:
                    tokens, cut = tokens[:keep], cut + 1
                out.write(b" ".join(tokens).decode("utf-8", errors="surrogateescape") + "\n")
                lines += 1
    return cut, lines


# ----------------------------------------------------------------------------- sentencepiece training

def _chunks(paths: Sequence[str], chunk_words: int) -> Iterator[str]:
    """Stream training "sentences": each line cut into pieces of at most ``chunk_words`` words."""
    for path in paths:
        for line_no, raw in iter_lines(path):
            try:
                words = raw.decode("utf-8").split()
            except UnicodeDecodeError as e:
                raise InputError(path, line_no, "<line>", f"invalid UTF-8 byte at byte offset {e.start}",
                                 reason="non_utf8") from None
            for i in range(0, len(words), chunk_words):
                yield " ".join(words[i:i + chunk_words])


def _reservoir(items: Iterable[str], k: int, seed: int) -> list[str]:
    """Uniform sample of at most ``k`` items in one streaming pass (order kept)."""
    rng = random.Random(seed)
    sample: list[tuple[int, str]] = []
    for i, item in enumerate(items):
        if len(sample) < k:
            sample.append((i, item))
        else:
            j = rng.randint(0, i)
            if j < k:
                sample[j] = (i, item)
    return [item for _, item in sorted(sample)]


def train_sentencepiece(inputs: Sequence[str], model_path: str, vocab_size: int, model_type: str = "unigram",
                        character_coverage: float = 1.0, chunk_words: int = 64, max_sentences: int = 1_000_000,
                        threads: int = 1, seed: int = 1, byte_fallback: bool = True) -> str:
    """Train a sentencepiece model on text files; write ``model_path`` and its ``.vocab`` atomically.

    ``byte_fallback`` (unigram/bpe): characters unseen in training become UTF-8 byte pieces
    (``<0xE9>``) instead of ``<unk>``, so valid/test text never maps to unknown tokens; it
    needs ``vocab_size`` above ~260 + the number of distinct characters.
    """
    import sentencepiece as spm

    if not model_path.endswith(".model"):
        raise ValueError(f"--sentencepiece-model must end in .model, got {model_path}")
    vocab_path = model_path[: -len(".model")] + ".vocab"
    sentences = _reservoir(_chunks(inputs, chunk_words), max_sentences, seed)
    if not sentences:
        raise InputError(inputs[0], 0, "<file>", "no text to train sentencepiece on", reason="empty_file")
    with atomic_outputs([model_path, vocab_path]) as (tmp_model, tmp_vocab):
        prefix = tmp_model[: -len(".tmp")] + ".spm"  # trainer writes prefix.model / prefix.vocab
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences), model_prefix=prefix, vocab_size=vocab_size,
                model_type=model_type, character_coverage=character_coverage, hard_vocab_limit=False,
                max_sentence_length=1 << 16, num_threads=max(1, threads), minloglevel=2,
                byte_fallback=byte_fallback and model_type in ("unigram", "bpe"))
            os.replace(prefix + ".model", tmp_model)
            os.replace(prefix + ".vocab", tmp_vocab)
        finally:
            for leftover in (prefix + ".model", prefix + ".vocab"):
                if os.path.exists(leftover):
                    os.remove(leftover)
    return model_path


def write_fairseq_dict(model_path: str, dict_path: str) -> int:
    """Write a Fairseq ``dict.txt`` ("piece 1" lines) with every normal piece of a sentencepiece model.

    Control and unknown pieces (``<unk>``, ``<s>``, ``</s>``) are left out: Fairseq's
    Dictionary adds its own. Using this file as ``--srcdict`` and ``--tgtdict`` gives a
    joined dictionary that covers every piece the model can emit, so no valid/test piece
    becomes ``<unk>`` just because it was rare in training. Returns the number of pieces.
    """
    sp = _load(sentencepiece_backend(model_path))
    # A piece holding whitespace (e.g. "\r") cannot survive Fairseq's whitespace tokenization of
    # BPE lines, and would break the "piece count" line format: leave it out.
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())
              if not (sp.is_control(i) or sp.is_unknown(i))]
    pieces = [piece for piece in pieces if piece and not any(ch.isspace() for ch in piece)]
    with atomic_outputs([dict_path]) as (tmp,):
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            for piece in pieces:
                f.write(f"{piece} 1\n")
    return len(pieces)


# ----------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fairseq_poolingformer.preprocess.bpe", description=__doc__.split("\n\n")[0])
    p.add_argument("--bpe", choices=["gpt2", "sentencepiece"],
                   help="the BPE (required unless --truncate-lines)")
    p.add_argument("--inputs", nargs="+", default=[],
                   help="text files, one example per line (optional with --write-dict alone)")
    p.add_argument("--outputs", nargs="+", default=[], help="one output per input")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--decode", action="store_true", help="BPE lines -> text instead")
    p.add_argument("--keep-empty", action="store_true", help="encode empty lines instead of failing")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--truncate-lines", type=int, metavar="N", default=None,
                   help="instead: cut each line of the --inputs (encoded files) to N-1 tokens, in place")
    g = p.add_argument_group("gpt2")
    g.add_argument("--encoder-json", help="GPT-2 encoder.json")
    g.add_argument("--vocab-bpe", help="GPT-2 vocab.bpe")
    s = p.add_argument_group("sentencepiece")
    s.add_argument("--sentencepiece-model", help="model to use (written there with --sentencepiece-train)")
    s.add_argument("--sentencepiece-train", action="store_true", help="train the model first")
    s.add_argument("--vocab-size", type=int, default=8000, help="target size (a soft limit)")
    s.add_argument("--write-dict", default=None,
                   help="also write a Fairseq dict.txt with every piece of the model (use as --srcdict/--tgtdict)")
    s.add_argument("--train-inputs", nargs="+", default=None, help="training text (default: --inputs)")
    s.add_argument("--model-type", choices=["unigram", "bpe", "char", "word"], default="unigram")
    s.add_argument("--character-coverage", type=float, default=1.0)
    s.add_argument("--no-byte-fallback", action="store_true",
                   help="map unseen characters to <unk> instead of UTF-8 byte pieces")
    s.add_argument("--train-chunk-words", type=int, default=64)
    s.add_argument("--train-max-sentences", type=int, default=1_000_000)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.truncate_lines is not None:
        return _truncate_main(parser, args)
    if args.bpe is None:
        parser.error("--bpe is required")
    if len(args.inputs) != len(args.outputs):
        parser.error(f"{len(args.inputs)} --inputs but {len(args.outputs)} --outputs")
    if args.write_dict and args.bpe != "sentencepiece":
        parser.error("--write-dict writes the dictionary of a sentencepiece model: use --bpe sentencepiece "
                     "(GPT-2 BPE models use the released dict.txt of RoBERTa / BART)")
    if not args.inputs and not args.write_dict:
        parser.error("nothing to do: give --inputs and --outputs (and/or --write-dict DICT)")
    if args.sentencepiece_train and not (args.train_inputs or args.inputs):
        parser.error("--sentencepiece-train needs --train-inputs or --inputs")
    try:
        if args.bpe == "gpt2":
            if not (args.encoder_json and args.vocab_bpe):
                parser.error("--bpe gpt2 needs --encoder-json and --vocab-bpe (files are never downloaded)")
            backend = gpt2_backend(args.encoder_json, args.vocab_bpe)
        else:
            if not args.sentencepiece_model:
                parser.error("--bpe sentencepiece needs --sentencepiece-model")
            if args.sentencepiece_train:
                train_sentencepiece(args.train_inputs or args.inputs, args.sentencepiece_model, args.vocab_size,
                                    model_type=args.model_type, character_coverage=args.character_coverage,
                                    chunk_words=args.train_chunk_words, max_sentences=args.train_max_sentences,
                                    threads=args.workers, byte_fallback=not args.no_byte_fallback)
                print(f"trained sentencepiece model: {args.sentencepiece_model}", file=sys.stderr)
            backend = sentencepiece_backend(args.sentencepiece_model)
            if args.write_dict:
                n = write_fairseq_dict(args.sentencepiece_model, args.write_dict)
                print(f"wrote Fairseq dictionary: {args.write_dict} ({n} pieces)", file=sys.stderr)
        stats = process_files(backend, args.inputs, args.outputs, workers=args.workers, decode=args.decode,
                              keep_empty=args.keep_empty, progress=not args.no_progress) if args.inputs else []
    except (InputError, OSError, RuntimeError, ValueError) as e:
        print(f"error: {e}; no output written", file=sys.stderr)
        return 1
    unit = "characters" if args.decode else "tokens"
    for s in stats:
        print(f"{args.bpe}: {s.summary()}".replace(" tokens", f" {unit}"), file=sys.stderr)
    return 0


def _truncate_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if not args.inputs or args.outputs:
        parser.error("--truncate-lines cuts the --inputs in place: give --inputs only")
    if args.truncate_lines < 2:
        parser.error("--truncate-lines needs at least 2 (tokens + </s>)")
    for path in args.inputs:
        try:
            cut, lines = truncate_lines(path, args.truncate_lines)
        except OSError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"truncated {cut} of {lines} lines of {path} to {args.truncate_lines - 1} tokens "
              f"(+ </s> = {args.truncate_lines} positions)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
