"""QA windows JSONL -> Fairseq binarized split for the ``long_qa`` task.

Input (one split, written by the QA preprocessing; contract in ``docs/qa_data_format.md``):
``<split>.windows.jsonl(.gz)``, ``<split>.examples.jsonl(.gz)`` and the model's ``dict.txt``.

Output, in ``--destdir`` (everything ``long_qa`` and ``predict_qa`` read)::

    dict.txt                         copy of the model dictionary
    <split>.input_ids.{bin,idx}      mmap indexed dataset: one item per window, dictionary indices
    <split>.unit_map.{bin,idx}       mmap indexed dataset (int32): per position the index into the
                                     example's "units", -1 for question / special tokens
    <split>.candidates.{bin,idx}     mmap indexed dataset (int32): per window its candidates flattened
                                     row-major from a (K, 3) array [cand_list_pos, start_pos, end_pos]
                                     (window positions, inclusive); K may be 0
    <split>.labels.npy               int64 (N, 7), one row per window, columns LABEL_COLUMNS:
                                     example_row, window_index, question_len, answer_type,
                                     start_position, end_position, long_position; the last four
                                     are -1 for a window of an unlabelled example (blind test
                                     sets: a window without the label fields)
    <split>.examples.jsonl           the examples, one compact JSON object a line; example_row r
                                     of labels.npy is line r + 1 of this file (records as given:
                                     NQ units stay in their compact form, read them with
                                     fairseq_poolingformer.preprocess.qa_units.example_units)

Window i of the split is item i of every indexed dataset and row i of labels.npy.
Both inputs are streamed (a window is parsed, checked and written, then dropped); only a few
integers per example are kept in memory. Any bad record is an error naming file, line and
field (the windows are produced by our own preprocessing, so a bad one is a bug upstream,
never something to skip silently); outputs are written under temporary names and renamed
together only when the whole split succeeded.

Usage::

    python -m fairseq_poolingformer.preprocess.qa_binarize --windows out/dev.windows.jsonl \
        --examples out/dev.examples.jsonl --dict dict.txt --split dev --destdir data-bin/nq
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from fairseq.data import Dictionary
from fairseq.data.indexed_dataset import MMapIndexedDatasetBuilder, best_fitting_int_dtype

from fairseq_poolingformer.preprocess.common import InputError, atomic_outputs, iter_jsonl, iter_lines, parse_jsonl_line
from fairseq_poolingformer.preprocess.common import parallel_map, require
from fairseq_poolingformer.preprocess.qa_tokenize import load_dictionary
from fairseq_poolingformer.preprocess.qa_units import example_units

LABEL_COLUMNS = (
    "example_row", "window_index", "question_len", "answer_type",
    "start_position", "end_position", "long_position",
)
NUM_ANSWER_TYPES = 5  # 0 null, 1 short/minimal, 2 long-only/passage-only, 3 yes, 4 no
DATASETS = ("nq", "tydi")


def output_paths(destdir: str, split: str) -> dict[str, str]:
    """Final output paths of one split (key -> path)."""
    p = os.path.join(destdir, split)
    return {
        "input_ids.bin": f"{p}.input_ids.bin", "input_ids.idx": f"{p}.input_ids.idx",
        "unit_map.bin": f"{p}.unit_map.bin", "unit_map.idx": f"{p}.unit_map.idx",
        "candidates.bin": f"{p}.candidates.bin", "candidates.idx": f"{p}.candidates.idx",
        "labels": f"{p}.labels.npy",
        "examples": f"{p}.examples.jsonl",
        "dict": os.path.join(destdir, "dict.txt"),
    }


# ---------------------------------------------------------------------------
# examples

LABEL_FIELDS = ("answer_type", "start_position", "end_position", "long_position")
UNLABELLED = [-1, -1, -1, -1]   # label columns of a window without labels


@dataclass
class ExampleInfo:
    row: int
    num_units: int
    num_candidates: int
    labelled: bool | None   # None: the record has no "annotations" field (an optional addition)


def check_example(record: dict, path: str, line: int) -> tuple[str, int, int, bool | None]:
    """Validate one examples record; return (example_id, num_units, num_candidates, labelled):
    labelled is False for ``"annotations": null`` (unlabelled), None when the field is absent."""
    example_id = require(record, "example_id", str, path, line)
    dataset = require(record, "dataset", str, path, line)
    if dataset not in DATASETS:
        raise InputError(path, line, "dataset", f"expected one of {DATASETS}, got {dataset!r}")
    require(record, "language", str, path, line)
    require(record, "question", str, path, line)
    units = example_units(record, path, line)  # explicit [[start, end], ...] or NQ's compact form
    candidates = require(record, "candidates", list, path, line, item_type=dict)
    for i, cand in enumerate(candidates):
        for key in ("index", "start_token", "end_token", "start_byte", "end_byte"):
            value = cand.get(key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InputError(path, line, f"candidates[{i}].{key}", f"expected integer, got {value!r}")
    if "annotations" not in record:
        return example_id, len(units), len(candidates), None
    annotations = record["annotations"]
    if annotations is not None and not isinstance(annotations, list):
        raise InputError(path, line, "annotations", f"expected a list or null, got {annotations!r}")
    return example_id, len(units), len(candidates), annotations is not None


# ---------------------------------------------------------------------------
# windows

def _int_list(record: dict, field: str, path: str, line: int) -> list[int]:
    value = require(record, field, list, path, line, item_type=int)
    return value


def parse_window(item: tuple[str, int, bytes]) -> tuple[str, int, dict]:
    """Parse and check one window line on its own (runs in worker processes).

    Returns (example_id, line, arrays) where arrays holds numpy arrays ready to write.
    Checks that need the example (unit and candidate counts) are done by the caller.
    """
    path, line, raw = item
    record = parse_jsonl_line(path, line, raw)
    example_id = require(record, "example_id", str, path, line)
    window_index = require(record, "window_index", int, path, line)
    input_ids = _int_list(record, "input_ids", path, line)
    n = len(input_ids)
    if n == 0:
        raise InputError(path, line, "input_ids", "empty window")
    question_len = require(record, "question_len", int, path, line)
    if not 1 <= question_len <= n:
        raise InputError(path, line, "question_len", f"{question_len} not in [1, {n}] (window length {n})")
    unit_map = _int_list(record, "unit_map", path, line)
    if len(unit_map) != n:
        raise InputError(path, line, "unit_map", f"length {len(unit_map)} != len(input_ids) {n}")
    if min(unit_map) < -1:
        raise InputError(path, line, "unit_map", f"index {min(unit_map)} < -1")
    if any(u != -1 for u in unit_map[:question_len]):
        raise InputError(path, line, "unit_map", "question positions must map to -1")
    raw_cands = require(record, "candidates", list, path, line, item_type=list)
    cands = np.zeros((len(raw_cands), 3), dtype=np.int64)
    for i, c in enumerate(raw_cands):
        if len(c) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) for v in c):
            raise InputError(path, line, f"candidates[{i}]", f"expected [cand_list_pos, start_pos, end_pos], got {c!r}")
        if c[0] < 0 or not (0 <= c[1] <= c[2] < n):
            raise InputError(path, line, f"candidates[{i}]",
                             f"{c!r}: need cand_list_pos >= 0 and 0 <= start_pos <= end_pos < {n}")
        cands[i] = c
    labelled = any(f in record for f in LABEL_FIELDS)
    arrays = {
        "input_ids": np.asarray(input_ids, dtype=np.int64),
        "unit_map": np.asarray(unit_map, dtype=np.int32),
        "candidates": cands.astype(np.int32).reshape(-1),
        "labels": [window_index, question_len] + (_labels(record, path, line, n, question_len, len(raw_cands))
                                                  if labelled else UNLABELLED),
        "max_cand_pos": int(cands[:, 0].max()) if len(cands) else -1,
    }
    return example_id, line, arrays


def _labels(record: dict, path: str, line: int, n: int, question_len: int, n_cands: int) -> list[int]:
    """[answer_type, start_position, end_position, long_position] of a labelled window, checked."""
    answer_type = require(record, "answer_type", int, path, line)
    if not 0 <= answer_type < NUM_ANSWER_TYPES:
        raise InputError(path, line, "answer_type", f"{answer_type} not in [0, {NUM_ANSWER_TYPES})")
    start = require(record, "start_position", int, path, line)
    end = require(record, "end_position", int, path, line)
    if not 0 <= start <= end < n:
        raise InputError(path, line, "start_position/end_position",
                         f"({start}, {end}): need 0 <= start <= end < {n}")
    if answer_type == 1 and start < question_len:
        raise InputError(path, line, "start_position",
                         f"short answer starts at {start}, inside the question (question_len {question_len})")
    long_position = require(record, "long_position", int, path, line)
    if not -1 <= long_position < n_cands:
        raise InputError(path, line, "long_position",
                         f"{long_position} not in [-1, {n_cands}) (number of window candidates)")
    return [answer_type, start, end, long_position]


def _raw_windows(path: str) -> Iterator[tuple[str, int, bytes]]:
    for line, raw in iter_lines(path):
        if raw.strip():
            yield path, line, raw


# ---------------------------------------------------------------------------
# main

def binarize_split(windows_path: str, examples_path: str, dict_path: str, destdir: str, split: str,
                   workers: int = 1, progress: bool = True) -> dict:
    """Binarize one split; return a summary dict (counts). Writes all outputs or none."""
    dictionary = load_dictionary(dict_path)
    vocab_size, pad = len(dictionary), dictionary.pad()
    paths = output_paths(destdir, split)
    keys = list(paths)
    summary: dict = {"split": split, "examples": 0, "windows": 0, "unlabelled_windows": 0, "answer_types": Counter(),
                     "windows_per_example_max": 0, "max_window_length": 0}
    with atomic_outputs([paths[k] for k in keys]) as tmp_list:
        tmp = dict(zip(keys, tmp_list))
        # examples: validate, copy compactly, remember (row, #units, #candidates) per id
        info: dict[str, ExampleInfo] = {}
        with open(tmp["examples"], "w", encoding="utf-8") as out:
            for line, record in iter_jsonl(examples_path):
                example_id, n_units, n_cands, labelled = check_example(record, examples_path, line)
                if example_id in info:
                    raise InputError(examples_path, line, "example_id", f"duplicate example_id {example_id!r}")
                info[example_id] = ExampleInfo(len(info), n_units, n_cands, labelled)
                out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        summary["examples"] = len(info)

        builders = {
            "input_ids": MMapIndexedDatasetBuilder(tmp["input_ids.bin"], dtype=best_fitting_int_dtype(vocab_size)),
            "unit_map": MMapIndexedDatasetBuilder(tmp["unit_map.bin"], dtype=np.int32),
            "candidates": MMapIndexedDatasetBuilder(tmp["candidates.bin"], dtype=np.int32),
        }
        labels: list[list[int]] = []
        windows_per_example: Counter = Counter()
        for example_id, line, arrays in parallel_map(parse_window, _raw_windows(windows_path), workers=workers,
                                                    chunksize=8, desc=f"binarize {split}", progress=progress):
            ex = info.get(example_id)
            if ex is None:
                raise InputError(windows_path, line, "example_id", f"{example_id!r} not in {examples_path}")
            ids = arrays["input_ids"]
            if ids.min() < 0 or ids.max() >= vocab_size:
                raise InputError(windows_path, line, "input_ids",
                                 f"index out of the dictionary range [0, {vocab_size}) of {dict_path}")
            if (ids == pad).any():
                raise InputError(windows_path, line, "input_ids", f"contains the padding index {pad}")
            if arrays["unit_map"].max() >= ex.num_units:
                raise InputError(windows_path, line, "unit_map",
                                 f"index {arrays['unit_map'].max()} >= number of units {ex.num_units} of the example")
            if arrays["max_cand_pos"] >= ex.num_candidates:
                raise InputError(windows_path, line, "candidates",
                                 f"cand_list_pos {arrays['max_cand_pos']} >= number of candidates "
                                 f"{ex.num_candidates} of the example")
            labelled = arrays["labels"][2] >= 0   # answer_type; -1 = no labels
            if ex.labelled is not None and labelled != ex.labelled:
                raise InputError(windows_path, line, "answer_type",
                                 "labels present but the example is unlabelled (\"annotations\": null)"
                                 if labelled else
                                 f"no labels (answer_type, start_position, end_position, long_position) "
                                 f"but the example has annotations in {examples_path}")
            for key in builders:
                builders[key].add_item(torch.from_numpy(arrays[key]))
            labels.append([ex.row] + arrays["labels"])
            windows_per_example[example_id] += 1
            if labelled:
                summary["answer_types"][arrays["labels"][2]] += 1
            else:
                summary["unlabelled_windows"] += 1
            summary["max_window_length"] = max(summary["max_window_length"], len(ids))
        for key, builder in builders.items():
            builder.finalize(tmp[f"{key}.idx"])
        label_array = np.asarray(labels, dtype=np.int64).reshape(-1, len(LABEL_COLUMNS))
        with open(tmp["labels"], "wb") as f:
            np.save(f, label_array)
        shutil.copyfile(dict_path, tmp["dict"])
        summary["windows"] = len(labels)
        summary["windows_per_example_max"] = max(windows_per_example.values(), default=0)
        summary["examples_without_windows"] = len(info) - len(windows_per_example)
    summary["answer_types"] = {str(k): v for k, v in sorted(summary["answer_types"].items())}
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", required=True, help="<split>.windows.jsonl(.gz)")
    parser.add_argument("--examples", required=True, help="<split>.examples.jsonl(.gz)")
    parser.add_argument("--dict", required=True, help="the model's fairseq dict.txt")
    parser.add_argument("--split", required=True, help="split name of the outputs (train, valid, dev, ...)")
    parser.add_argument("--destdir", required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        summary = binarize_split(args.windows, args.examples, args.dict, args.destdir, args.split,
                                 workers=args.workers, progress=not args.no_progress)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.split}: kept {summary['windows']} windows of {summary['examples']} examples "
          f"({summary['examples_without_windows']} examples without windows), skipped 0; "
          f"answer types {summary['answer_types']}, {summary['unlabelled_windows']} unlabelled windows "
          f"(predict only), longest window {summary['max_window_length']}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
