"""Task ``long_qa``: long-document QA (Natural Questions, TyDi QA) over binarized windows.

Reads the split written by ``fairseq_poolingformer/preprocess/qa_binarize.py`` (layout documented there): one item
per window ``<s> question </s> document span </s>``. A batch is right-padded (our attention
gives the same output for left or right padding, and Fairseq's learned positions count from
the first real token either way; right padding keeps the label positions valid as they are).

Batch layout (``sample``)::

    id                          (B,)       dataset indices (window rows)
    net_input.src_tokens        (B, T)     padded with the dictionary's pad index
    net_input.global_mask       (B, T)     True for global tokens: the first question_len
                                           positions (<s> question </s>) by default
    net_input.candidate_spans   (B, K, 2)  inclusive window positions of each candidate
    net_input.candidate_mask    (B, K)     True for real candidates (K = most in the batch)
    target.answer_type          (B,)       0 null, 1 short, 2 long-only, 3 yes, 4 no; -1 unlabelled
    target.start, target.end    (B,)       inclusive span positions (0/0 = <s> = no span)
    target.long                 (B,)       1 + index of the gold candidate, 0 = "no candidate"
    doc_mask                    (B, T)     True where the position is a document subword
    candidate_index             (B, K)     position in the example's "candidates" list, -1 pad
    labels                      (B, 7)     the rows of <split>.labels.npy (for prediction)

Fairseq drops the last batch of a split when its size is not a multiple of
``--required-batch-size-multiple`` (see ``compat``, fix 3); this dataset gives the left-over
windows a batch of their own instead, so every window is trained on, validated and predicted.
"""

import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from fairseq.data import Dictionary, FairseqDataset, data_utils
from fairseq.data.indexed_dataset import MMapIndexedDataset
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, MISSING, OmegaConf, open_dict

logger = logging.getLogger(__name__)

LABEL_COLUMNS = (
    "example_row", "window_index", "question_len", "answer_type",
    "start_position", "end_position", "long_position",
)  # same order as fairseq_poolingformer/preprocess/qa_binarize.py writes them
QA_HEAD_NAME = "long_qa"
GLOBAL_TOKEN_CHOICES = ChoiceEnum(["question", "first", "none"])


# ---------------------------------------------------------------------------
# dataset

class LongQADataset(FairseqDataset):
    """Windows of one binarized split (see the module docstring for the batch layout)."""

    def __init__(self, prefix: str, pad_idx: int, shuffle: bool = False, seed: int = 1,
                 global_tokens: str = "question") -> None:
        self.prefix = prefix
        self.input_ids = _load_indexed(f"{prefix}.input_ids")
        self.unit_map = _load_indexed(f"{prefix}.unit_map")
        self.candidates = _load_indexed(f"{prefix}.candidates")
        labels_path = f"{prefix}.labels.npy"
        if not os.path.exists(labels_path):
            raise FileNotFoundError(f"long_qa: missing {labels_path} (run fairseq_poolingformer/preprocess/qa_binarize.py)")
        self.labels = np.load(labels_path)  # (N, 7) int64
        n = len(self.input_ids)
        if self.labels.shape != (n, len(LABEL_COLUMNS)) or len(self.unit_map) != n or len(self.candidates) != n:
            raise ValueError(f"long_qa: {prefix}.*: inconsistent split (input_ids {n}, unit_map "
                             f"{len(self.unit_map)}, candidates {len(self.candidates)}, labels {self.labels.shape})")
        self.sizes = np.asarray(self.input_ids.sizes, dtype=np.int64)
        self.pad_idx = pad_idx
        self.shuffle = shuffle
        self.seed = seed
        self.global_tokens = global_tokens
        self.epoch = 1

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "id": index,
            "input_ids": self.input_ids[index].long(),              # (T,)
            "unit_map": self.unit_map[index].long(),                # (T,)
            "candidates": self.candidates[index].long().view(-1, 3),  # (K, 3)
            "labels": torch.from_numpy(self.labels[index]),         # (7,)
        }

    def collater(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return collate_windows(samples, self.pad_idx, self.global_tokens)

    def num_tokens(self, index: int) -> int:
        return int(self.sizes[index])

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        return self.sizes[indices]

    def size(self, index: int) -> int:
        return int(self.sizes[index])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def ordered_indices(self) -> np.ndarray:
        """Shuffled (training) or in order, then stably sorted by length."""
        if self.shuffle:
            with data_utils.numpy_seed(self.seed, self.epoch):
                order = np.random.permutation(len(self))
        else:
            order = np.arange(len(self), dtype=np.int64)
        return order[np.argsort(self.sizes[order], kind="mergesort")]

    def batch_by_size(self, indices, max_tokens=None, max_sentences=None, required_batch_size_multiple=1):
        """Fairseq's batching, but the windows of a dropped partial last batch get their own batch."""
        batches = super().batch_by_size(indices, max_tokens=max_tokens, max_sentences=max_sentences,
                                        required_batch_size_multiple=required_batch_size_multiple)
        return restore_dropped(indices, batches)

    @property
    def supports_prefetch(self) -> bool:
        return False


def collate_windows(samples: list[dict[str, Any]], pad_idx: int, global_tokens: str = "question") -> dict[str, Any]:
    """A batch of windows (items as ``LongQADataset.__getitem__`` returns them; layout in the
    module docstring). Shared by the dataset and the reader (``fairseq_poolingformer.qa.reader``)."""
    if len(samples) == 0:
        return {}
    bsz = len(samples)
    T = max(len(s["input_ids"]) for s in samples)
    K = max(max(len(s["candidates"]) for s in samples), 1)
    src_tokens = torch.full((bsz, T), pad_idx, dtype=torch.long)
    global_mask = torch.zeros(bsz, T, dtype=torch.bool)
    doc_mask = torch.zeros(bsz, T, dtype=torch.bool)
    cand_spans = torch.zeros(bsz, K, 2, dtype=torch.long)
    cand_mask = torch.zeros(bsz, K, dtype=torch.bool)
    cand_index = torch.full((bsz, K), -1, dtype=torch.long)
    labels = torch.stack([s["labels"] for s in samples])  # (B, 7)
    for b, s in enumerate(samples):
        n = len(s["input_ids"])
        src_tokens[b, :n] = s["input_ids"]
        q = int(labels[b, 2])
        if global_tokens == "question":
            global_mask[b, :q] = True
        elif global_tokens == "first":
            global_mask[b, 0] = True
        doc_mask[b, :n] = s["unit_map"] >= 0
        k = len(s["candidates"])
        if k:
            cand_index[b, :k] = s["candidates"][:, 0]
            cand_spans[b, :k] = s["candidates"][:, 1:]
            cand_mask[b, :k] = True
    return {
        "id": torch.tensor([s["id"] for s in samples], dtype=torch.long),
        "nsentences": bsz,
        "ntokens": int(sum(len(s["input_ids"]) for s in samples)),
        "net_input": {
            "src_tokens": src_tokens,
            "global_mask": global_mask,
            "candidate_spans": cand_spans,
            "candidate_mask": cand_mask,
        },
        "target": {
            "answer_type": labels[:, 3].clone(),
            "start": labels[:, 4].clone(),
            "end": labels[:, 5].clone(),
            "long": labels[:, 6] + 1,
        },
        "doc_mask": doc_mask,
        "candidate_index": cand_index,
        "labels": labels,
    }


def restore_dropped(indices: np.ndarray, batches: list) -> list:
    """Append one batch with every index of ``indices`` that no batch holds (keeps order)."""
    n_batched = sum(len(b) for b in batches)
    if n_batched == len(indices):
        return batches
    batched = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
    left = np.asarray(indices)[~np.isin(indices, batched)]
    if len(left):
        batches = list(batches) + [left.astype(np.int64)]
    return batches


def _load_indexed(prefix: str) -> MMapIndexedDataset:
    if not MMapIndexedDataset.exists(prefix):
        raise FileNotFoundError(f"long_qa: missing {prefix}.bin/.idx (run fairseq_poolingformer/preprocess/qa_binarize.py)")
    return MMapIndexedDataset(prefix)


# ---------------------------------------------------------------------------
# task

@dataclass
class LongQAConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help": "directory written by fairseq_poolingformer/preprocess/qa_binarize.py"})
    max_positions: int = field(default=4096, metadata={"help": "longest window (tokens) the task accepts"})
    global_tokens: GLOBAL_TOKEN_CHOICES = field(
        default="question",
        metadata={"help": "which tokens get global attention: the question (<s> question </s>, "
                          "as in the paper), only <s>, or none"})
    no_shuffle: bool = field(default=False, metadata={"help": "do not shuffle training windows"})
    seed: int = II("common.seed")


@register_task("long_qa", dataclass=LongQAConfig)
class LongQATask(FairseqTask):
    """Span / passage / answer-type QA over long documents, one window per item."""

    cfg: LongQAConfig

    def __init__(self, cfg: LongQAConfig, dictionary: Dictionary) -> None:
        super().__init__(cfg)
        self.dictionary = dictionary

    @classmethod
    def load_dictionary(cls, filename: str) -> Dictionary:
        """The model dictionary plus ``<mask>``, as RoBERTa / XLM-R checkpoints have it."""
        dictionary = Dictionary.load(filename)
        dictionary.add_symbol("<mask>")
        return dictionary

    @classmethod
    def setup_task(cls, cfg: LongQAConfig, **kwargs) -> "LongQATask":
        path = os.path.join(cfg.data, "dict.txt")
        if not os.path.exists(path):
            raise FileNotFoundError(f"long_qa: missing {path} (run fairseq_poolingformer/preprocess/qa_binarize.py)")
        dictionary = cls.load_dictionary(path)
        logger.info(f"[long_qa] dictionary: {len(dictionary)} types")
        return cls(cfg, dictionary)

    def load_dataset(self, split: str, combine: bool = False, **kwargs) -> LongQADataset:
        dataset = LongQADataset(
            os.path.join(self.cfg.data, split), self.dictionary.pad(),
            shuffle=(split == "train" and not self.cfg.no_shuffle), seed=self.cfg.seed,
            global_tokens=str(self.cfg.global_tokens))
        unlabelled = int((dataset.labels[:, 3] < 0).sum())
        logger.info(f"[long_qa] {split}: {len(dataset)} windows"
                    + (f", {unlabelled} without labels (predict only)" if unlabelled else ""))
        self.datasets[split] = dataset
        return dataset

    def build_model(self, cfg, from_checkpoint: bool = False):
        from fairseq import models

        with open_dict(cfg) if OmegaConf.is_config(cfg) else contextlib.ExitStack():
            if getattr(cfg, "max_positions", None) is None:
                cfg.max_positions = self.cfg.max_positions
        model = models.build_model(cfg, self, from_checkpoint)
        if not hasattr(model, "register_qa_head"):
            raise ValueError(f"long_qa: model {type(model).__name__} has no register_qa_head(); "
                             f"use --arch poolingformer_roberta_* (or another model with QA heads)")
        model.register_qa_head(QA_HEAD_NAME)
        return model

    def max_positions(self) -> int:
        return self.cfg.max_positions

    @property
    def source_dictionary(self) -> Dictionary:
        return self.dictionary

    @property
    def target_dictionary(self) -> Dictionary:
        return self.dictionary
