"""Per-window scores -> one document's answer (the paper's document-level combination).

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
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from fairseq_poolingformer.qa.scores import NO_TYPE, SHORT_TYPE, YES_TYPE, WindowResult

YES_NO = {YES_TYPE: "YES", NO_TYPE: "NO"}
NULL_SCORE = 0.0  # score of a null answer: a real answer scores its log-odds against null


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


def _has_nan(w: WindowResult) -> bool:
    return any(math.isnan(v) for v in (w.span_score, *w.type_logits, *w.candidate_scores.values()))


def logits_finite(pred: ExamplePrediction, windows: list[WindowResult]) -> bool:
    """False when an fp16 overflow (or a broken model) left inf / NaN in the example's scores."""
    return math.isfinite(pred.short_score) and math.isfinite(pred.long_score) and not any(map(_has_nan, windows))
