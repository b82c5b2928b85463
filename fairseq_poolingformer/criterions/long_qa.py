"""Criterion ``long_qa``: sum of four cross-entropies over the QA heads' logits.

For a batch of windows (layout in ``tasks/long_qa.py``) the model returns, through its QA head
(``models/poolingformer_roberta.py``: ``LongQAHead``)::

    start, end   (B, T)    span logits (padding positions at -1e9)
    long         (B, K+1)  "no candidate" (column 0, from <s>) then one logit per candidate
    answer_type  (B, 5)    null, short, long-only, yes, no

loss = CE(start) + CE(end) + CE(long) + CE(answer_type), summed over windows; ``sample_size``
is the number of windows, and the logged ``loss`` is per window in base 2 (Fairseq's habit).
Logged accuracies: ``span_acc`` (start and end both right), ``long_acc``, ``type_acc``.

At validation (``--report-f1``, default on) an *approximate, window-level* F1 is logged too:
a short answer is predicted when the type head says "short" (the span is the best document
span of at most ``--max-answer-len`` subwords), a long answer when the long head prefers a
candidate to "no candidate"; a prediction counts as right when it equals the window's gold.
It tracks training progress only: the numbers to report come from the official NQ / TyDi QA
evaluation scripts run on ``predict_qa``'s output.

A batch holding windows without labels (answer_type -1: a blind test split) is a ``ValueError``.
"""

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass

from fairseq_poolingformer.tasks.long_qa import QA_HEAD_NAME

SHORT_TYPE = 1
NEG = -1e9


@dataclass
class LongQACriterionConfig(FairseqDataclass):
    max_answer_len: int = field(default=30, metadata={"help": "longest short answer (subwords) for F1 decoding"})
    report_f1: bool = field(default=True, metadata={"help": "log approximate window-level F1 at validation"})


def best_spans(start_logits: torch.Tensor, end_logits: torch.Tensor, allowed: torch.Tensor,
               max_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best span per row with start <= end < start + max_len, both ends in ``allowed``.

    start_logits, end_logits: (B, T) float; allowed: (B, T) bool.
    Returns (score, start, end), each (B,): score = start_logit + end_logit of the best span,
    -inf (and start = end = 0) for a row with no allowed position.
    """
    B, T = start_logits.shape
    s = start_logits.float().masked_fill(~allowed, -math.inf)
    e = end_logits.float().masked_fill(~allowed, -math.inf)
    e_pad = F.pad(e, (0, max_len - 1), value=-math.inf)           # (B, T + L - 1)
    ends = e_pad.unfold(1, max_len, 1)                             # (B, T, L): e[i + l]
    scores = s.unsqueeze(-1) + ends                                # (B, T, L)
    best, flat = scores.reshape(B, -1).max(dim=1)                  # (B,)
    start = torch.div(flat, max_len, rounding_mode="floor")
    end = start + flat % max_len
    none = torch.isinf(best)
    return best, start.masked_fill(none, 0), end.masked_fill(none, 0)


def _f1_from_meters(name: str):
    def f1(meters) -> float:
        # after distributed reduction the sums may be tensors
        tp, pred, gold = (float(meters[f"_{name}_{part}"].sum) for part in ("tp", "pred", "gold"))
        return round(200.0 * tp / (pred + gold), 2) if pred + gold else 0.0
    return f1


@register_criterion("long_qa", dataclass=LongQACriterionConfig)
class LongQACriterion(FairseqCriterion):
    def __init__(self, task, max_answer_len: int = 30, report_f1: bool = True) -> None:
        super().__init__(task)
        self.max_answer_len = max_answer_len
        self.report_f1 = report_f1

    def forward(self, model, sample, reduce: bool = True):
        target = sample["target"]
        unlabelled = int((target["answer_type"] < 0).sum())
        if unlabelled:
            raise ValueError(
                f"long_qa: {unlabelled} of {target['answer_type'].numel()} windows in this batch have no labels "
                f"(a split preprocessed from records without annotations, e.g. a blind test set): it can be "
                f"predicted with python -m fairseq_poolingformer.qa.predict, not trained or validated on")
        logits = model(**sample["net_input"], qa_head=QA_HEAD_NAME)[0]
        losses = {
            name: F.cross_entropy(logits[name].float(), target[key], reduction="sum")
            for name, key in (("start", "start"), ("end", "end"), ("long", "long"), ("answer_type", "answer_type"))
        }
        loss = sum(losses.values())
        bsz = target["start"].numel()
        with torch.no_grad():
            start_hat = logits["start"].argmax(-1)
            end_hat = logits["end"].argmax(-1)
            long_hat = logits["long"].argmax(-1)
            type_hat = logits["answer_type"].argmax(-1)
            logging_output = {
                "loss": loss.data,
                "start_loss": losses["start"].data, "end_loss": losses["end"].data,
                "long_loss": losses["long"].data, "type_loss": losses["answer_type"].data,
                "ntokens": sample["ntokens"], "nsentences": bsz, "sample_size": bsz,
                "span_correct": ((start_hat == target["start"]) & (end_hat == target["end"])).sum().item(),
                "long_correct": (long_hat == target["long"]).sum().item(),
                "type_correct": (type_hat == target["answer_type"]).sum().item(),
            }
            if self.report_f1 and not model.training:
                logging_output.update(self.f1_counts(logits, sample))
        return loss, bsz, logging_output

    def f1_counts(self, logits: dict, sample: dict) -> dict:
        """True positives / predicted / gold counts of short and long answers in this batch."""
        target = sample["target"]
        _, s_hat, e_hat = best_spans(logits["start"], logits["end"], sample["doc_mask"], self.max_answer_len)
        short_pred = logits["answer_type"].argmax(-1) == SHORT_TYPE
        short_gold = target["answer_type"] == SHORT_TYPE
        short_tp = short_pred & short_gold & (s_hat == target["start"]) & (e_hat == target["end"])
        long_hat = logits["long"].argmax(-1)
        long_pred, long_gold = long_hat > 0, target["long"] > 0
        long_tp = long_pred & long_gold & (long_hat == target["long"])
        return {
            "short_tp": short_tp.sum().item(), "short_pred": short_pred.sum().item(),
            "short_gold": short_gold.sum().item(),
            "long_tp": long_tp.sum().item(), "long_pred": long_pred.sum().item(),
            "long_gold": long_gold.sum().item(),
        }

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        def total(key):
            return sum(log.get(key, 0) for log in logging_outputs)

        sample_size = total("sample_size")
        ntokens = total("ntokens")
        metrics.log_scalar("loss", total("loss") / max(sample_size, 1) / math.log(2), sample_size, round=3)
        for name in ("start_loss", "end_loss", "long_loss", "type_loss"):
            metrics.log_scalar(name, total(name) / max(sample_size, 1) / math.log(2), sample_size, round=3)
        metrics.log_scalar("ntokens", ntokens, round=0)
        if sample_size > 0:
            for name in ("span", "long", "type"):
                metrics.log_scalar(f"{name}_acc", 100.0 * total(f"{name}_correct") / sample_size,
                                   sample_size, round=1)
        for name in ("short", "long"):
            if not any(f"{name}_gold" in log for log in logging_outputs):
                continue
            # corpus-level F1 over the whole validation run: sum the counts, derive F1 at the end
            for part in ("tp", "pred", "gold"):
                metrics.log_scalar_sum(f"_{name}_{part}", total(f"{name}_{part}"))
            metrics.log_derived(f"{name}_f1", _f1_from_meters(name))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
