"""Run a ``long_qa`` checkpoint over every window of a split and write official-format predictions.

    python -m fairseq_poolingformer.predict_qa --checkpoint ckpt/checkpoint_best.pt \
        --data-dir data-bin/nq --split dev --format nq --output preds.json

Per window (all windows of the split, none dropped), from the QA head's logits:
- short / minimal answer: the best span with start <= end < start + ``--max-answer-len`` (30)
  whose two ends are document subwords; its score is start + end logit minus the <s>
  ("no span") start + end logit;
- long answer / passage: each candidate in the window scores its logit minus the
  "no candidate" logit;
- answer type: the five type logits.
Per example (every example of ``<split>.examples.jsonl``, in its order), windows combine as:
the short answer is the best-scoring span over all windows; the long answer is the candidate
with the best score over all windows; the yes/no answer is YES / NO when the answer-type head of
the window holding the best span predicts yes / no (the short answer is then empty, as in the
official formats). Spans map back through ``unit_map`` and the example's ``units`` (explicit
spans, or NQ's compact form ``"units": null, "num_units": N``: unit i is token i).

Outputs, exactly the official formats:
- ``--format nq``: one JSON object ``{"predictions": [...]}`` (NQ ``nq_eval.py``), each with
  ``example_id`` (int), ``long_answer`` {start_token, end_token, start_byte, end_byte},
  ``long_answer_score``, ``short_answers`` [{same four}], ``short_answers_score``,
  ``yes_no_answer`` ("NONE" / "YES" / "NO"); -1 offsets for a null answer.
- ``--format tydi``: JSONL (TyDi QA ``tydi_eval.py``), one line per example with
  ``example_id`` (int, as in the official files), ``language``, ``passage_answer_index``,
  ``passage_answer_score``, ``minimal_answer`` {start_byte_offset, end_byte_offset},
  ``minimal_answer_score``, ``yes_no_answer``.
Every answer is written with its score, never thresholded: the official scripts choose the
score thresholds. Final numbers come from those scripts, not from the criterion's
approximate window-level F1.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

import fairseq_poolingformer  # noqa: F401  (registers the model, task and criterion)
from fairseq_poolingformer.criterions.long_qa import best_spans
from fairseq_poolingformer.tasks.long_qa import QA_HEAD_NAME
from preprocess.qa_units import example_units

logger = logging.getLogger("fairseq_poolingformer.predict_qa")

YES_TYPE, NO_TYPE = 3, 4
YES_NO = {YES_TYPE: "YES", NO_TYPE: "NO"}
NULL_SCORE = 0.0  # score written with a null answer (scores of real answers are finite floats)


# ---------------------------------------------------------------------------
# per window

@dataclass
class WindowResult:
    """What one window contributes to its example's prediction."""
    span_score: float            # -inf when the window has no document subword
    unit_start: int              # index into the example's units (-1 when no span)
    unit_end: int
    type_logits: list[float]     # (5,)
    candidate_scores: dict[int, float] = field(default_factory=dict)  # cand_list_pos -> score


def window_results(logits: dict[str, torch.Tensor], sample: dict[str, Any], unit_maps: list[torch.Tensor],
                   max_answer_len: int) -> list[WindowResult]:
    """Decode one batch of head logits into one WindowResult per window (batch order)."""
    start, end = logits["start"].float(), logits["end"].float()          # (B, T)
    best, s_hat, e_hat = best_spans(start, end, sample["doc_mask"], max_answer_len)
    null = start[:, 0] + end[:, 0]                                       # (B,) the <s> span
    long_logits = logits["long"].float()                                 # (B, K + 1)
    cand_scores = long_logits[:, 1:] - long_logits[:, :1]                # (B, K)
    results = []
    for b in range(start.shape[0]):
        unit_map = unit_maps[b]
        has_span = not math.isinf(best[b].item())
        scores = {}
        for k in range(cand_scores.shape[1]):
            pos = int(sample["candidate_index"][b, k])
            if pos >= 0:
                scores[pos] = max(scores.get(pos, -math.inf), cand_scores[b, k].item())
        results.append(WindowResult(
            span_score=(best[b] - null[b]).item() if has_span else -math.inf,
            unit_start=int(unit_map[s_hat[b]]) if has_span else -1,
            unit_end=int(unit_map[e_hat[b]]) if has_span else -1,
            type_logits=logits["answer_type"][b].float().tolist(),
            candidate_scores=scores,
        ))
    return results


# ---------------------------------------------------------------------------
# per example

@dataclass
class ExamplePrediction:
    long_index: int = -1          # position in the example's "candidates" list, -1 = null
    long_score: float = NULL_SCORE
    unit_start: int = -1          # short / minimal answer units (inclusive), -1 = null
    unit_end: int = -1
    short_score: float = NULL_SCORE
    yes_no: str = "NONE"


def combine_windows(windows: list[WindowResult]) -> ExamplePrediction:
    """Best span and best candidate over an example's windows (see the module docstring)."""
    pred = ExamplePrediction()
    with_span = [w for w in windows if not math.isinf(w.span_score)]
    if with_span:
        top = max(with_span, key=lambda w: w.span_score)
        answer_type = max(range(len(top.type_logits)), key=lambda t: top.type_logits[t])
        pred.short_score = top.span_score
        if answer_type in YES_NO:
            pred.yes_no = YES_NO[answer_type]
        else:
            pred.unit_start, pred.unit_end = top.unit_start, top.unit_end
    best: dict[int, float] = {}
    for w in windows:
        for pos, score in w.candidate_scores.items():
            best[pos] = max(best.get(pos, -math.inf), score)
    if best:
        pred.long_index = max(best, key=lambda p: (best[p], -p))
        pred.long_score = best[pred.long_index]
    return pred


def _int_id(example_id: str) -> int | str:
    """The official files use integer example ids; keep a non-numeric id as it is."""
    try:
        return int(example_id)
    except ValueError:
        return example_id


def unit_offsets(example: dict, pred: ExamplePrediction) -> tuple[int, int]:
    """Source offsets ``[start, end)`` of the predicted units ``unit_start..unit_end``: NQ token
    offsets, TyDi byte offsets (either form of the example's units, see ``preprocess.qa_units``)."""
    units = example_units(example)
    return units[pred.unit_start][0], units[pred.unit_end][1]


def nq_entry(example: dict, pred: ExamplePrediction) -> dict:
    """One NQ prediction. NQ units are document tokens, ``units[u] = [start_token, end_token)``;
    byte offsets come from the example's ``token_bytes`` (original format) or are -1
    (simplified format: the official script then compares token offsets)."""
    null = {"start_token": -1, "end_token": -1, "start_byte": -1, "end_byte": -1}
    long_answer = dict(null)
    if pred.long_index >= 0:
        cand = example["candidates"][pred.long_index]
        long_answer = {k: int(cand[k]) for k in ("start_token", "end_token", "start_byte", "end_byte")}
    short_answers = []
    if pred.unit_start >= 0:
        start_token, end_token = unit_offsets(example, pred)
        start_byte = end_byte = -1
        token_bytes = example.get("token_bytes")
        if token_bytes:
            start_byte, end_byte = token_bytes[start_token][0], token_bytes[end_token - 1][1]
            if start_byte < 0 or end_byte < 0:
                start_byte = end_byte = -1
        short_answers.append({"start_token": int(start_token), "end_token": int(end_token),
                              "start_byte": int(start_byte), "end_byte": int(end_byte)})
    return {
        "example_id": _int_id(example["example_id"]),
        "long_answer": long_answer,
        "long_answer_score": float(pred.long_score),
        "short_answers": short_answers,
        "short_answers_score": float(pred.short_score),
        "yes_no_answer": pred.yes_no,
    }


def tydi_entry(example: dict, pred: ExamplePrediction) -> dict:
    """One TyDi QA prediction. TyDi units are byte spans: ``units[u] = [start_byte, end_byte)``."""
    passage_index = int(example["candidates"][pred.long_index]["index"]) if pred.long_index >= 0 else -1
    start_byte = end_byte = -1
    if pred.unit_start >= 0:
        start_byte, end_byte = unit_offsets(example, pred)
    return {
        "example_id": _int_id(example["example_id"]),
        "language": example["language"],
        "passage_answer_index": passage_index,
        "passage_answer_score": float(pred.long_score),
        "minimal_answer": {"start_byte_offset": int(start_byte), "end_byte_offset": int(end_byte)},
        "minimal_answer_score": float(pred.short_score),
        "yes_no_answer": pred.yes_no,
    }


# ---------------------------------------------------------------------------
# running the model

def iter_examples(path: str) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def predict_windows(model, task, split: str, max_answer_len: int = 30, max_sentences: int | None = 8,
                    max_tokens: int | None = None,
                    use_cuda: bool = False) -> dict[int, list[tuple[int, WindowResult]]]:
    """Run ``model`` over every window of ``split``; return {example_row: [(window_index, result)]}."""
    dataset = task.dataset(split)
    itr = task.get_batch_iterator(dataset=dataset, max_tokens=max_tokens, max_sentences=max_sentences,
                                  max_positions=task.max_positions(), required_batch_size_multiple=1,
                                  ignore_invalid_inputs=False, disable_iterator_cache=True,
                                  ).next_epoch_itr(shuffle=False)
    by_example: dict[int, list[tuple[int, WindowResult]]] = {}
    seen = 0
    model.eval()
    with torch.no_grad():
        for sample in itr:
            if not sample:
                continue
            if use_cuda:
                sample = _to_cuda(sample)
            net_input = sample["net_input"]
            logits = model(**net_input, qa_head=QA_HEAD_NAME)[0]
            ids = sample["id"].tolist()
            unit_maps = [dataset.unit_map[i].long() for i in ids]
            sample["doc_mask"] = sample["doc_mask"].to(logits["start"].device)
            for row, result in zip(sample["labels"].tolist(),
                                      window_results(logits, sample, unit_maps, max_answer_len)):
                by_example.setdefault(row[0], []).append((row[1], result))
            seen += len(ids)
    if seen != len(dataset):
        raise RuntimeError(f"predict_qa: ran {seen} of {len(dataset)} windows of {split}")
    return by_example


def _to_cuda(sample: Any) -> Any:
    if torch.is_tensor(sample):
        return sample.cuda()
    if isinstance(sample, dict):
        return {k: _to_cuda(v) for k, v in sample.items()}
    return sample


def write_predictions(examples_path: str, by_example: dict[int, list[tuple[int, WindowResult]]],
                      fmt: str, output: str) -> int:
    """Combine windows per example and write the official format atomically; return #examples."""
    entries = []
    for row, example in enumerate(iter_examples(examples_path)):
        if example.get("dataset", fmt) != fmt:
            raise ValueError(f"predict_qa: {examples_path}:{row + 1}: dataset {example.get('dataset')!r} "
                             f"cannot be written in --format {fmt}")
        windows = [r for _, r in sorted(by_example.get(row, []), key=lambda x: x[0])]
        pred = combine_windows(windows)
        entries.append(nq_entry(example, pred) if fmt == "nq" else tydi_entry(example, pred))
    tmp = f"{output}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            if fmt == "nq":
                json.dump({"predictions": entries}, f, ensure_ascii=False)
                f.write("\n")
            else:
                for entry in entries:
                    f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return len(entries)


def load_model(checkpoint: str, data_dir: str, use_cuda: bool = False, fp16: bool = False):
    from fairseq import checkpoint_utils

    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [checkpoint], arg_overrides={"data": data_dir})
    model = models[0]
    if use_cuda:
        model = model.cuda()
    if fp16 and use_cuda:
        model = model.half()
    return model, task


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write NQ / TyDi QA predictions in the official formats.")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data-dir", required=True, help="directory written by preprocess/qa_binarize.py")
    parser.add_argument("--split", default="valid", help="split name given to qa_binarize (recipes: valid)")
    parser.add_argument("--format", choices=("nq", "tydi"), required=True)
    parser.add_argument("--output", required=True, help="NQ: a .json file; TyDi: a .jsonl file")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per batch")
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--max-answer-len", type=int, default=30, help="longest short answer, in subwords")
    parser.add_argument("--cpu", action="store_true", help="run on CPU even when CUDA is available")
    parser.add_argument("--fp16", action="store_true", help="half precision (CUDA only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")

    examples_path = os.path.join(args.data_dir, f"{args.split}.examples.jsonl")
    if not os.path.exists(examples_path):
        parser.error(f"{examples_path} not found (run preprocess/qa_binarize.py for split {args.split!r})")
    first = next(iter_examples(examples_path), {})
    if first.get("dataset", args.format) != args.format:
        parser.error(f"{examples_path} holds {first.get('dataset')!r} examples; use --format {first.get('dataset')}")
    use_cuda = torch.cuda.is_available() and not args.cpu
    model, task = load_model(args.checkpoint, args.data_dir, use_cuda, args.fp16)
    task.load_dataset(args.split)
    by_example = predict_windows(model, task, args.split, args.max_answer_len, args.batch_size,
                                 args.max_tokens, use_cuda)
    n = write_predictions(examples_path, by_example, args.format, args.output)
    logger.info(f"wrote {n} predictions ({sum(len(v) for v in by_example.values())} windows) to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
