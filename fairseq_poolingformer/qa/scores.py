"""Windows -> batches -> per-window scores: a ``long_qa`` model over windows of documents.

Per window (all windows of the split, none dropped), from the QA head's logits:
- span: the best span with start <= end < start + ``--max-answer-len`` (30) whose two ends are
  document subwords;
- long answer / passage: every candidate in the window;
- answer type: the five type logits (null, short, long only, yes, no).

The windows come from a binarized split (:func:`predict_windows`) or from the reader, which
cuts them from raw documents (``qa.reader``); both run them through :func:`run_batch`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from fairseq import utils as fairseq_utils

from fairseq_poolingformer.criterions.long_qa import best_spans
from fairseq_poolingformer.tasks.long_qa import QA_HEAD_NAME

NULL_TYPE, SHORT_TYPE, YES_TYPE, NO_TYPE = 0, 1, 3, 4   # answer types of the QA head


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
    the reader (``qa.reader``). unit_maps: B tensors (T_b,)."""
    if use_cuda:
        sample = fairseq_utils.move_to_cuda(sample)
    with torch.no_grad():
        logits = model(**sample["net_input"], qa_head=QA_HEAD_NAME)[0]
    sample["doc_mask"] = sample["doc_mask"].to(logits["start"].device)
    return list(zip(sample["labels"].tolist(), window_results(logits, sample, unit_maps, max_answer_len, top_k)))
