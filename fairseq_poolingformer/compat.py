"""Fixes for what the pinned Fairseq (fairseq-fixed 0.12.3.1) gets wrong on torch >= 2.6.

Importing ``fairseq_poolingformer`` calls :func:`apply` once; every fix is idempotent, needs
no environment variable, and is tested in ``tests/test_compat.py``.

1. Checkpoint loading. torch >= 2.6 loads with
   ``weights_only=True`` by default, and every Fairseq checkpoint pickles an
   ``argparse.Namespace`` (``cfg.model`` of legacy-args models, ``args`` of old checkpoints),
   so ``fairseq-generate``, ``--restore-file``/resume and the hub interface fail with
   ``Unsupported global: GLOBAL argparse.Namespace``. :func:`allow_checkpoint_globals`
   allow-lists it (only that: tensors, dicts, lists and OrderedDicts are allowed already).
   Another class found in an older checkpoint can be added with
   ``allow_checkpoint_globals(SomeClass)``.

2. Distributed resume. On resume, rank 0 loads the checkpoint and sends it to the other ranks
   with ``fairseq.distributed.utils.broadcast_object``; the receivers ``torch.load`` those bytes
   with the same ``weights_only`` default and fail on the OmegaConf config inside them.
   :func:`trust_rank_zero_broadcasts` makes the receiving side load them with
   ``weights_only=False``: the bytes come from rank 0 of the same job over the process group,
   not from a file, so they are as trusted as the job itself.

3. The last partial batch (facebookresearch/fairseq issue #5036). ``data_utils.batch_by_size`` drops
   the final batch when its size is not a multiple of ``--required-batch-size-multiple``
   (default 8): training, validation and generation silently skip up to 7 examples, so
   ROUGE/F1 is computed on a subset. :func:`keep_last_partial_batch` wraps it so that the
   final batch is kept (as in Fairseq <= 0.12.2); all other batches are unchanged. Tasks need
   nothing else; :func:`check_every_index_batched` is there for tests of batch samplers.

4. The root logger. Importing Fairseq imports every model, and one of them
   (``fairseq/models/wav2vec/wav2vec2_classification.py``) calls
   ``logging.basicConfig(level=logging.DEBUG)``: any program that imports Fairseq before it
   configures logging itself then prints every library's DEBUG lines (2,000 lines of
   ``matplotlib.font_manager`` for one plot). :func:`root_logger_kept` puts the root logger's
   level and handlers back as they were before the import. Under ``fairseq-train`` and the
   other Fairseq tools, which configure logging before they import a plugin, it changes nothing.

5. Warnings about Fairseq's own code. On this stack every ``fairseq-train`` /
   ``fairseq-generate`` run prints about 20 lines of warnings that name no input and no option
   of the user's: Hydra's deprecations of the API Fairseq calls to build its config, torch's
   ``torch.cuda.amp.autocast`` deprecation in Fairseq's train step, and the DataLoader's
   ``pin_memory`` warning on a machine without a GPU (Fairseq's iterators always pin).
   :func:`silence_stack_warnings` filters exactly those (``STACK_WARNINGS``: category and the
   start of the message); every other warning still shows.

6. Repeated n-grams (facebookresearch/fairseq issues #4709 and #5206). ``--no-repeat-ngram-size``
   is done by a CUDA extension when it is built, else by ``NGramRepeatBlock._no_repeat_ngram``,
   which takes the n-gram to match from the *end of the token buffer*: at every step but the
   last that is padding, so nothing is ever blocked and summaries repeat trigrams the option
   was meant to forbid. :func:`block_repeated_ngrams` hands it only the tokens generated so far
   (``tokens[:, :step + 1]``); the CUDA extension, which reads ``step`` itself, is untouched.
"""

import argparse
import contextlib
import functools
import inspect
import io
import logging
import warnings
from typing import Any, Callable, Iterator, List, Sequence, Tuple

import numpy as np
import torch

logger = logging.getLogger(__name__)

_PATCH_MARK = "_poolingformer_compat"


# ---------------------------------------------------------------------------------------------
# 1. weights_only checkpoint loading
# ---------------------------------------------------------------------------------------------

CHECKPOINT_GLOBALS: List[type] = [argparse.Namespace]


def allow_checkpoint_globals(*extra: Any) -> None:
    """Allow-list ``argparse.Namespace`` (and ``extra``) for ``torch.load(weights_only=True)``."""
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is None:  # torch < 2.4 loads with weights_only=False anyway
        return
    add_safe_globals([*CHECKPOINT_GLOBALS, *extra])  # a set inside torch: adding twice is a no-op


# ---------------------------------------------------------------------------------------------
# 2. objects broadcast from rank 0 (distributed resume)
# ---------------------------------------------------------------------------------------------


def _load_trusted_bytes(buffer: torch.Tensor) -> Any:
    """Unpickle what ``torch.save`` wrote on rank 0 of this job (full pickle, not weights_only)."""
    return torch.load(io.BytesIO(buffer.cpu().numpy().tobytes()), map_location="cpu", weights_only=False)


def _broadcast_object_trusted(
    obj: Any, src_rank: int, group: object, dist_device: torch.device
) -> Any:
    """Drop-in for ``fairseq.distributed.utils._broadcast_object_slow``: same wire format
    (a length tensor, then the ``torch.save`` bytes), trusted load on the receiving ranks."""
    from fairseq.distributed import utils as dist_utils

    if dist_utils.get_rank(group) == src_rank:
        stream = io.BytesIO()
        torch.save(obj, stream)
        payload = torch.frombuffer(bytearray(stream.getbuffer()), dtype=torch.uint8).to(dist_device)
        length = torch.tensor([payload.numel()], dtype=torch.long, device=dist_device)
        dist_utils.broadcast(length, src=src_rank, group=group)
        dist_utils.broadcast(payload, src=src_rank, group=group)
        return obj
    length = torch.zeros(1, dtype=torch.long, device=dist_device)
    dist_utils.broadcast(length, src=src_rank, group=group)
    payload = torch.empty(int(length.item()), dtype=torch.uint8, device=dist_device)
    dist_utils.broadcast(payload, src=src_rank, group=group)
    return _load_trusted_bytes(payload)


def trust_rank_zero_broadcasts() -> None:
    """Make ``fairseq.distributed.utils.broadcast_object`` work for checkpoint states."""
    from fairseq.distributed import utils as dist_utils

    current = dist_utils._broadcast_object_slow
    if getattr(current, _PATCH_MARK, False):
        return
    setattr(_broadcast_object_trusted, _PATCH_MARK, True)
    _broadcast_object_trusted.__wrapped__ = current  # type: ignore[attr-defined]  # the stock one
    dist_utils._broadcast_object_slow = _broadcast_object_trusted


# ---------------------------------------------------------------------------------------------
# 3. the last partial batch
# ---------------------------------------------------------------------------------------------


def _keep_tail(batch_by_size: Callable[..., List[np.ndarray]]) -> Callable[..., List[np.ndarray]]:
    signature = inspect.signature(batch_by_size)

    @functools.wraps(batch_by_size)
    def batch_by_size_keeping_tail(indices: Any, *args: Any, **kwargs: Any) -> List[np.ndarray]:
        if not isinstance(indices, np.ndarray):  # may be an iterator: read it once
            indices = np.fromiter(indices, dtype=np.int64, count=-1)
        batches = list(batch_by_size(indices, *args, **kwargs))
        bound = signature.bind(indices, *args, **kwargs)
        if bound.arguments.get("fixed_shapes") is not None:
            return batches  # fixed shapes skip leftovers by design
        n_kept = sum(len(b) for b in batches)
        if n_kept == len(indices):
            return batches
        kept = np.concatenate(batches) if batches else indices[:0]
        if not np.array_equal(kept, indices[:n_kept]):
            raise RuntimeError(
                "batch_by_size: batches are not consecutive slices of the indices; "
                "fairseq_poolingformer.compat.keep_last_partial_batch cannot restore the "
                f"{len(indices) - n_kept} dropped indices"
            )
        batches.append(np.array(indices[n_kept:], dtype=np.int64))  # (n_dropped,)
        return batches

    setattr(batch_by_size_keeping_tail, _PATCH_MARK, True)
    return batch_by_size_keeping_tail


def keep_last_partial_batch() -> None:
    """Wrap ``fairseq.data.data_utils.batch_by_size`` so that no index is ever dropped."""
    from fairseq.data import data_utils

    if getattr(data_utils.batch_by_size, _PATCH_MARK, False):
        return
    data_utils.batch_by_size = _keep_tail(data_utils.batch_by_size)


def check_every_index_batched(
    batches: Sequence[Sequence[int]], indices: Sequence[int], where: str = "batch sampler"
) -> None:
    """Raise ``ValueError`` unless every index appears in exactly one batch."""
    seen = [int(i) for b in batches for i in b]
    expected = sorted(int(i) for i in indices)
    if sorted(seen) != expected:
        missing = sorted(set(expected) - set(seen))
        extra = len(seen) - len(set(seen))
        raise ValueError(
            f"{where}: {len(seen)} indices batched, expected {len(expected)}; "
            f"missing {missing[:10]}{'...' if len(missing) > 10 else ''}, duplicated {extra}"
        )


# ---------------------------------------------------------------------------------------------
# 4. the root logger Fairseq's import sets to DEBUG
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def root_logger_kept() -> Iterator[None]:
    """The root logger's level and handlers after the block as they were before it."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        yield
    finally:
        root.setLevel(level)
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)


# ---------------------------------------------------------------------------------------------
# 5. warnings about Fairseq's code, not the user's input
# ---------------------------------------------------------------------------------------------

# (category, regular expression matched at the start of the message)
STACK_WARNINGS: List[Tuple[type, str]] = [
    (UserWarning, r"hydra\.experimental\.(initialize|compose)\(\) is no longer experimental"),
    (UserWarning, r"\s*The version_base parameter is not specified"),
    (UserWarning, r"In '\w+': Usage of deprecated keyword in package header '# @package _group_'"),
    (UserWarning, r"\s*'config' is validated against ConfigStore schema with the same name"),
    (UserWarning, r"\s*The strict flag in the compose API is deprecated"),
    (FutureWarning, r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated"),
    (UserWarning, r"'pin_memory' argument is set as true but no accelerator is found"),
]


def silence_stack_warnings() -> None:
    """Ignore the ``STACK_WARNINGS`` (idempotent: ``filterwarnings`` does not add a filter twice)."""
    for category, message in STACK_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


# ---------------------------------------------------------------------------------------------
# 6. --no-repeat-ngram-size without the CUDA extension
# ---------------------------------------------------------------------------------------------


def _generated_only(no_repeat_ngram: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    @functools.wraps(no_repeat_ngram)
    def no_repeat_ngram_in_generated(self: Any, tokens: torch.Tensor, lprobs: torch.Tensor, bsz: int,
                                     beam_size: int, step: int) -> torch.Tensor:
        # tokens: (bsz * beam, max_len + 2), of which the first step + 1 are generated (bos first)
        return no_repeat_ngram(self, tokens[:, : step + 1], lprobs, bsz, beam_size, step)

    setattr(no_repeat_ngram_in_generated, _PATCH_MARK, True)
    return no_repeat_ngram_in_generated


def block_repeated_ngrams() -> None:
    """Make ``NGramRepeatBlock``'s Python path match n-grams in the generated tokens only."""
    from fairseq.ngram_repeat_block import NGramRepeatBlock

    if getattr(NGramRepeatBlock._no_repeat_ngram, _PATCH_MARK, False):
        return
    NGramRepeatBlock._no_repeat_ngram = _generated_only(NGramRepeatBlock._no_repeat_ngram)


# ---------------------------------------------------------------------------------------------


def apply() -> None:
    """Apply every fix (idempotent). Fairseq's fixes are skipped when Fairseq is not installed."""
    allow_checkpoint_globals()
    silence_stack_warnings()
    try:
        with root_logger_kept():  # the first import of Fairseq happens here
            import fairseq  # noqa: F401
    except ImportError:
        logger.debug("fairseq not importable: only the torch.load fix applied")
        return
    trust_rank_zero_broadcasts()
    keep_last_partial_batch()
    block_repeated_ngrams()


apply()
