"""Run a ``long_qa`` checkpoint over every window of a split and write official-format predictions.

    python -m fairseq_poolingformer.predict_qa --checkpoint ckpt/checkpoint_best.pt \
        --data-dir data-bin/nq --split valid --format nq --output preds.json

Per window (all windows of the split, none dropped), from the QA head's logits:
- span: the best span with start <= end < start + ``--max-answer-len`` (30) whose two ends are
  document subwords;
- long answer / passage: every candidate in the window;
- answer type: the five type logits (null, short, long only, yes, no).

Per example (every example of ``<split>.examples.jsonl``, in its order), the windows combine
at the **document** level, as in the paper ("the answer type is predicted by the document
representation"):

- the answer-type evidence of type t is its margin over null, maxed over the example's windows:
  ``E_t = max_w (type_logit_w[t] - type_logit_w[null])`` for t in {short, yes, no};
- the short / minimal answer is YES or NO when ``E_yes`` or ``E_no`` is the largest of the three
  (the short answer is then empty, as the official formats require), else the best span over
  all windows (ties go to the span);
- the long answer / passage is the candidate with the best score over all windows.

Scores (the rule the official scorers' threshold sweep relies on). Every score is the natural
log-odds of the written answer against the null answer, under the head that chose it, so real
answers of every kind rank on one scale and a null answer scores 0 (``NULL_SCORE``):
- span: ``(start[i] + end[j]) - (start[<s>] + end[<s>])``, best over windows;
- YES / NO: ``E_yes`` / ``E_no`` above;
- long answer / passage: ``long[c] - long[no candidate]``, best over windows.
A real answer thus scores above a null one exactly by its margin over null (below it when the
model prefers null); nothing is thresholded here: ``nq_eval.py`` / ``tydi_eval.py`` sweep the
threshold over these scores. Spans map back through ``unit_map`` and the example's ``units``
(explicit spans, or NQ's compact form ``"units": null, "num_units": N``: unit i is token i).

Outputs, exactly the official formats:
- ``--format nq``: one JSON object ``{"predictions": [...]}`` (NQ ``nq_eval.py``), each with
  ``example_id`` (int), ``long_answer`` {start_token, end_token, start_byte, end_byte},
  ``long_answer_score``, ``short_answers`` [{same four}], ``short_answers_score``,
  ``yes_no_answer`` ("NONE" / "YES" / "NO"); -1 offsets for a null answer.
- ``--format tydi``: JSONL (TyDi QA ``tydi_eval.py``), one line per example with
  ``example_id`` (int, as in the official files), ``language``, ``passage_answer_index``,
  ``passage_answer_score``, ``minimal_answer`` {start_byte_offset, end_byte_offset},
  ``minimal_answer_score``, ``yes_no_answer``.
Splits without gold (blind test sets, preprocessed from records without ``annotations``) are
predicted the same way: one entry per example.

Next to the output, ``<output stem>.report.json`` (also logged) counts examples and windows,
short answers by kind (span / YES / NO / null), long answers, and the predicted spans that are
exactly ``--max-answer-len`` subwords long (a gold answer longer than the limit can only come
out cut to it). Final numbers come from the official scripts, not from the criterion's
approximate window-level F1.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from fairseq_poolingformer.criterions.long_qa import best_spans
from fairseq_poolingformer.load import CheckpointError, load_for_inference
from fairseq_poolingformer.tasks.long_qa import QA_HEAD_NAME
from fairseq_poolingformer.preprocess.common import atomic_outputs
from fairseq_poolingformer.preprocess.qa_units import example_units

logger = logging.getLogger("fairseq_poolingformer.predict_qa")

NULL_TYPE, SHORT_TYPE, YES_TYPE, NO_TYPE = 0, 1, 3, 4   # answer types of the QA head
YES_NO = {YES_TYPE: "YES", NO_TYPE: "NO"}
NULL_SCORE = 0.0  # score of a null answer: a real answer scores its log-odds against null


# ---------------------------------------------------------------------------
# per window

@dataclass
class WindowResult:
    """What one window contributes to its example's prediction."""
    span_score: float            # best span's log-odds against the <s> span; -inf: no document subword
    unit_start: int              # index into the example's units (-1 when no span)
    unit_end: int
    type_logits: list[float]     # (5,) null, short, long only, yes, no
    candidate_scores: dict[int, float] = field(default_factory=dict)  # cand_list_pos -> score
    span_len: int = 0            # subwords in the best span (0 when none)
    # with top_k > 1: the window's top_k spans, best first, as (score, unit_start, unit_end, span_len)
    spans: list[tuple[float, int, int, int]] = field(default_factory=list)

    def type_margin(self, answer_type: int) -> float:
        """Log-odds of ``answer_type`` against null in this window's answer-type head."""
        return self.type_logits[answer_type] - self.type_logits[NULL_TYPE]


def top_spans(start: torch.Tensor, end: torch.Tensor, allowed: torch.Tensor, max_len: int,
              k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` best spans per row under ``best_spans``'s rule (start <= end < start + max_len,
    both ends allowed). start, end: (B, T) float; allowed: (B, T) bool. Returns (score, start,
    end), each (B, k), best first; score -inf where a row has fewer than k spans."""
    B, T = start.shape
    s = start.float().masked_fill(~allowed, -math.inf)
    e = torch.nn.functional.pad(end.float().masked_fill(~allowed, -math.inf), (0, max_len - 1), value=-math.inf)
    scores = (s.unsqueeze(-1) + e.unfold(1, max_len, 1)).reshape(B, -1)  # (B, T * L)
    best, flat = scores.topk(min(k, scores.shape[1]), dim=1)             # (B, k)
    first = torch.div(flat, max_len, rounding_mode="floor")
    return best, first, first + flat % max_len


def window_results(logits: dict[str, torch.Tensor], sample: dict[str, Any], unit_maps: list[torch.Tensor],
                   max_answer_len: int, top_k: int = 1) -> list[WindowResult]:
    """Decode one batch of head logits into one WindowResult per window (batch order).

    logits: start, end (B, T); long (B, K + 1); answer_type (B, 5). sample: doc_mask (B, T),
    candidate_index (B, K). unit_maps: B tensors (T_b,). With ``top_k`` > 1 each result also
    lists its ``top_k`` best spans (the best one is the same either way).
    """
    start, end = logits["start"].float(), logits["end"].float()          # (B, T)
    best, s_hat, e_hat = best_spans(start, end, sample["doc_mask"], max_answer_len)
    alternatives = top_spans(start, end, sample["doc_mask"], max_answer_len, top_k) if top_k > 1 else None
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
        spans = []
        if alternatives is not None:
            for score, first, last in zip(*(t[b].tolist() for t in alternatives)):
                if not math.isinf(score):
                    spans.append((score - null[b].item(), int(unit_map[first]), int(unit_map[last]), last - first + 1))
        results.append(WindowResult(
            span_score=(best[b] - null[b]).item() if has_span else -math.inf,
            unit_start=int(unit_map[s_hat[b]]) if has_span else -1,
            unit_end=int(unit_map[e_hat[b]]) if has_span else -1,
            type_logits=logits["answer_type"][b].float().tolist(),
            candidate_scores=scores,
            span_len=int(e_hat[b] - s_hat[b]) + 1 if has_span else 0,
            spans=spans,
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
    span_len: int = 0             # subwords of the predicted span (0: no span)


def answer_type_evidence(windows: list[WindowResult]) -> dict[int, float]:
    """Document-level evidence ``E_t = max_w margin_w(t)`` for t in short, yes, no."""
    return {t: max(w.type_margin(t) for w in windows) for t in (SHORT_TYPE, YES_TYPE, NO_TYPE)}


def candidate_best_scores(windows: list[WindowResult]) -> dict[int, float]:
    """Each candidate's (long answer / passage) best score over the windows that hold it."""
    best: dict[int, float] = {}
    for w in windows:
        for pos, score in w.candidate_scores.items():
            best[pos] = max(best.get(pos, -math.inf), score)
    return best


def combine_windows(windows: list[WindowResult]) -> ExamplePrediction:
    """One example's prediction from all its windows (rules in the module docstring)."""
    pred = ExamplePrediction()
    if not windows:
        return pred
    evidence = answer_type_evidence(windows)
    kind = max((SHORT_TYPE, YES_TYPE, NO_TYPE), key=lambda t: evidence[t])  # ties: the span
    with_span = [w for w in windows if not math.isinf(w.span_score)]
    if kind in YES_NO:
        pred.yes_no, pred.short_score = YES_NO[kind], evidence[kind]
    elif with_span:
        top = max(with_span, key=lambda w: w.span_score)
        pred.unit_start, pred.unit_end, pred.short_score = top.unit_start, top.unit_end, top.span_score
        pred.span_len = top.span_len
    best = candidate_best_scores(windows)
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
    offsets, TyDi byte offsets (either form of the example's units, see ``fairseq_poolingformer.preprocess.qa_units``)."""
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
    for sample in itr:
        if not sample:
            continue
        unit_maps = [dataset.unit_map[i].long() for i in sample["id"].tolist()]
        for row, result in run_batch(model, sample, unit_maps, max_answer_len, use_cuda):
            by_example.setdefault(row[0], []).append((row[1], result))
            seen += 1
    if seen != len(dataset):
        raise RuntimeError(f"predict_qa: ran {seen} of {len(dataset)} windows of {split}")
    return by_example


def run_batch(model, sample: dict[str, Any], unit_maps: list[torch.Tensor], max_answer_len: int = 30,
              use_cuda: bool = False, top_k: int = 1) -> list[tuple[list[int], WindowResult]]:
    """One batch of windows (``long_qa``'s collater layout) through ``model`` (in eval mode):
    ``(labels row, WindowResult)`` per window, batch order. Shared by ``predict_windows`` and
    the reader (``fairseq_poolingformer.reader``). unit_maps: B tensors (T_b,)."""
    if use_cuda:
        sample = _to_cuda(sample)
    with torch.no_grad():
        logits = model(**sample["net_input"], qa_head=QA_HEAD_NAME)[0]
    sample["doc_mask"] = sample["doc_mask"].to(logits["start"].device)
    return list(zip(sample["labels"].tolist(), window_results(logits, sample, unit_maps, max_answer_len, top_k)))


def _to_cuda(sample: Any) -> Any:
    if torch.is_tensor(sample):
        return sample.cuda()
    if isinstance(sample, dict):
        return {k: _to_cuda(v) for k, v in sample.items()}
    return sample


@dataclass
class PredictionReport:
    """What a prediction run wrote: counts by answer kind, and spans cut at the length limit."""
    examples: int = 0
    windows: int = 0
    examples_without_windows: int = 0
    short: Counter = field(default_factory=Counter)   # span / YES / NO / null
    long: Counter = field(default_factory=Counter)    # answer / null
    max_answer_len: int = 0
    spans_at_max_answer_len: int = 0

    def add(self, pred: ExamplePrediction, n_windows: int) -> None:
        self.examples += 1
        self.windows += n_windows
        self.examples_without_windows += n_windows == 0
        kind = pred.yes_no if pred.yes_no != "NONE" else ("span" if pred.unit_start >= 0 else "null")
        self.short[kind] += 1
        self.long["answer" if pred.long_index >= 0 else "null"] += 1
        self.spans_at_max_answer_len += pred.span_len == self.max_answer_len

    def to_dict(self) -> dict:
        return {"examples": self.examples, "windows": self.windows,
                "examples_without_windows": self.examples_without_windows,
                "short_answers": {k: self.short[k] for k in ("span", "YES", "NO", "null")},
                "long_answers": {k: self.long[k] for k in ("answer", "null")},
                "max_answer_len": self.max_answer_len,
                "spans_at_max_answer_len": self.spans_at_max_answer_len}

    def summary(self) -> str:
        s, lg = self.short, self.long
        return (f"{self.examples} predictions ({self.windows} windows, {self.examples_without_windows} examples "
                f"without windows); short answers: {s['span']} spans, {s['YES']} YES, {s['NO']} NO, "
                f"{s['null']} null; long answers: {lg['answer']}, null {lg['null']}; "
                f"{self.spans_at_max_answer_len} predicted spans are --max-answer-len {self.max_answer_len} "
                f"subwords long (longer answers are cut to it)")


def _has_nan(w: WindowResult) -> bool:
    return any(math.isnan(v) for v in (w.span_score, *w.type_logits, *w.candidate_scores.values()))


def logits_finite(pred: ExamplePrediction, windows: list[WindowResult]) -> bool:
    """False when an fp16 overflow (or a broken model) left inf / NaN in the example's scores."""
    return math.isfinite(pred.short_score) and math.isfinite(pred.long_score) and not any(map(_has_nan, windows))


def report_path(output: str) -> str:
    """``preds.json`` -> ``preds.report.json`` (next to the predictions)."""
    return os.path.splitext(output)[0] + ".report.json"


def write_predictions(examples_path: str, by_example: dict[int, list[tuple[int, WindowResult]]],
                      fmt: str, output: str, max_answer_len: int = 30) -> PredictionReport:
    """Combine windows per example and write the official format and its report, together or
    not at all. Every example gets one entry (null answers when it has no window)."""
    entries = []
    report = PredictionReport(max_answer_len=max_answer_len)
    for row, example in enumerate(iter_examples(examples_path)):
        if example.get("dataset", fmt) != fmt:
            raise ValueError(f"predict_qa: {examples_path}:{row + 1}: dataset {example.get('dataset')!r} "
                             f"cannot be written in --format {fmt}")
        windows = [r for _, r in sorted(by_example.get(row, []), key=lambda x: x[0])]
        pred = combine_windows(windows)
        if not logits_finite(pred, windows):
            raise ValueError(f"predict_qa: {examples_path}:{row + 1}: example {example['example_id']}: the model's "
                             f"logits are not finite (inf/NaN; scores {pred.short_score}, {pred.long_score}); "
                             f"with --fp16, run without it; nothing written")
        report.add(pred, len(windows))
        entries.append(nq_entry(example, pred) if fmt == "nq" else tydi_entry(example, pred))
    unknown = sorted(set(by_example) - set(range(len(entries))))
    if unknown:
        raise ValueError(f"predict_qa: windows point at example rows {unknown[:5]} but {examples_path} "
                         f"has {len(entries)} examples (binaries and examples file of different runs?)")

    with atomic_outputs([output, report_path(output)]) as (tmp_output, tmp_report):
        with open(tmp_output, "w", encoding="utf-8") as f:
            if fmt == "nq":
                json.dump({"predictions": entries}, f, ensure_ascii=False)
                f.write("\n")
            else:
                for entry in entries:
                    f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        with open(tmp_report, "w", encoding="utf-8") as f:
            json.dump({"predictions": output, "format": fmt, **report.to_dict()}, f, indent=2)
            f.write("\n")
    return report


def load_model(checkpoint: str, data_dir: str, use_cuda: bool = False, fp16: bool = False):
    models, _cfg, task = load_for_inference(checkpoint, {"data": data_dir}, "long_qa")
    model = models[0]
    if use_cuda:
        model = model.cuda()
    if fp16 and use_cuda:
        model = model.half()
    return model, task


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write NQ / TyDi QA predictions in the official formats.")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data-dir", required=True, help="directory written by fairseq_poolingformer/preprocess/qa_binarize.py")
    parser.add_argument("--split", default="valid",
                        help="split name given to qa_binarize (recipes: valid, or test for a blind test set)")
    parser.add_argument("--format", choices=("nq", "tydi"), required=True)
    parser.add_argument("--output", required=True, help="NQ: a .json file; TyDi: a .jsonl file")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per batch")
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--max-answer-len", type=int, default=30,
                        help="longest short answer, in subwords (the report counts predicted spans of this length)")
    parser.add_argument("--cpu", action="store_true", help="run on CPU even when CUDA is available")
    parser.add_argument("--fp16", action="store_true", help="half precision (CUDA only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")

    examples_path = os.path.join(args.data_dir, f"{args.split}.examples.jsonl")
    if not os.path.exists(examples_path):
        parser.error(f"{examples_path} not found (run fairseq_poolingformer/preprocess/qa_binarize.py for split {args.split!r})")
    first = next(iter_examples(examples_path), {})
    if first.get("dataset", args.format) != args.format:
        parser.error(f"{examples_path} holds {first.get('dataset')!r} examples; use --format {first.get('dataset')}")
    use_cuda = torch.cuda.is_available() and not args.cpu
    try:
        model, task = load_model(args.checkpoint, args.data_dir, use_cuda, args.fp16)
    except CheckpointError as e:
        parser.exit(1, f"predict_qa: {e}\n")
    task.load_dataset(args.split)
    by_example = predict_windows(model, task, args.split, args.max_answer_len, args.batch_size,
                                 args.max_tokens, use_cuda)
    try:
        report = write_predictions(examples_path, by_example, args.format, args.output, args.max_answer_len)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    logger.info(f"wrote {report.summary()} to {args.output} (report: {report_path(args.output)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
