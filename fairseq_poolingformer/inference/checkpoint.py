"""Open a trained checkpoint for inference, with one readable line for the usual mistakes.

Every place where a checkpoint meets a dictionary (``recipes/arxiv/generate.sh``, the
summarization hub, the QA reader and predictions) goes through :func:`read_checkpoint` and
:func:`check_dictionaries`, so a checkpoint trained with another dictionary is reported as
such (both sizes, the data the checkpoint was trained on when it records it, what to do)
instead of torch's
``size mismatch for encoder.embed_tokens.weight`` traceback, and an unreadable file is named
with the reason instead of an unpickling traceback.

    models, cfg, task = load_for_inference("checkpoints/checkpoint_best.pt", {"data": "data-bin"})

The checkpoint is memory-mapped: its config and tensor shapes are read without reading the
weights (GBs for a fine-tuned large model with its optimizer state); the weights are read once,
when the model loads them.
"""

from __future__ import annotations

import os
import zipfile
from typing import Any, Dict, List, Optional, Tuple

import torch

from fairseq_poolingformer.inference.errors import CheckpointError
from fairseq_poolingformer.inference.files import not_a_dictionary

# (no `import fairseq_poolingformer`: Python loads the package, its registrations and compat's
# torch.load allow-list, before this module; importing it here would close an import cycle)


def _unreadable_reason(path: str, error: BaseException) -> str:
    if isinstance(error, OSError):
        return error.strerror or str(error)
    if not zipfile.is_zipfile(path):
        return "not a PyTorch checkpoint (no complete zip archive: cut short, or another kind of file)"
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def read_checkpoint(path: str) -> Dict[str, Any]:
    """The checkpoint's state (``cfg`` or ``args``, ``model``, ...) as Fairseq upgrades it, with
    memory-mapped tensors. Raises CheckpointError naming the file and why it cannot be read."""
    from fairseq import checkpoint_utils
    from omegaconf import OmegaConf

    try:
        state = torch.load(path, map_location="cpu", mmap=True)
        if "cfg" in state and state["cfg"] is not None:  # as Fairseq's load_checkpoint_to_cpu does
            state["cfg"] = OmegaConf.create(state["cfg"], flags={"allow_objects": True})
        return checkpoint_utils._upgrade_state_dict(state)  # Fairseq's upgrade of old checkpoints
    except Exception as e:  # noqa: BLE001  (any failure: the file is not a usable checkpoint)
        raise CheckpointError(f"cannot read checkpoint {path}: {_unreadable_reason(path, e)}") from None


def checkpoint_config(state: Dict[str, Any]):
    """The checkpoint's config as an OmegaConf object (old args-only checkpoints converted)."""
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    if state.get("args") is not None:
        return convert_namespace_to_omegaconf(state["args"])
    return state["cfg"]


def training_data(state: Dict[str, Any]) -> Optional[str]:
    """The data directory the checkpoint was trained on, when it records one."""
    cfg = checkpoint_config(state)
    data = getattr(cfg.task, "data", None) if cfg.get("task") is not None else None
    return str(data) if data else None


# an override for every tool that runs a checkpoint: the attention as --attention-impl auto (FlexAttention
# on CUDA, the eager path on the CPU) whatever the checkpoint was trained with; "flex" would run torch's
# unfused FlexAttention on the CPU (a T x T score matrix per head)
INFERENCE_ATTENTION = {"attention_impl": "auto"}


def override(state: Dict[str, Any], arg_overrides: Dict[str, Any]) -> None:
    """Applies ``arg_overrides`` to the state's config, as Fairseq's checkpoint loader does."""
    from fairseq.dataclass.utils import overwrite_args_by_name

    if state.get("args") is not None:
        for name, value in arg_overrides.items():
            setattr(state["args"], name, value)
    if state.get("cfg") is not None:
        overwrite_args_by_name(state["cfg"], arg_overrides)


def embedding_rows(model_state: Dict[str, torch.Tensor]) -> Dict[str, int]:
    """{"encoder"|"decoder": rows of its token embedding}: the size of the dictionary it was
    trained with (the tensors' shapes only; nothing is read)."""
    rows = {}
    for key, tensor in model_state.items():
        if key.endswith("embed_tokens.weight") and key.split(".")[0] in ("encoder", "decoder"):
            rows.setdefault(key.split(".")[0], int(tensor.shape[0]))
    return rows


def _dictionary_files(data: str) -> str:
    names = sorted(n for n in os.listdir(data) if n.startswith("dict") and n.endswith(".txt")) \
        if os.path.isdir(data) else []
    return ", ".join(os.path.join(data, n) for n in names) or data


TRAINING_ADVICE = ("Binarize the data with the checkpoint's dictionary (binarize.sh --dict <the dict.txt it was "
                   "trained with>), or use a checkpoint trained with this one")
TOOL_ADVICE = "Give the dict.txt the checkpoint was trained with, or a checkpoint trained with this one"


def check_dictionaries(path: str, state: Dict[str, Any], task: Any, trained_on: Optional[str],
                       advice: str = TRAINING_ADVICE) -> None:
    """Raises CheckpointError when the task's dictionaries are not those the checkpoint was
    trained with (their sizes differ from its embeddings' rows); ``advice`` ends the message."""
    sides = {"encoder": task.source_dictionary, "decoder": task.target_dictionary}
    data = str(getattr(task.cfg, "data", "") or "")
    for side, rows in embedding_rows(state["model"]).items():
        dictionary = sides.get(side)
        if dictionary is None or len(dictionary) == rows:
            continue
        trained = f" (trained on {trained_on})" if trained_on else ""
        raise CheckpointError(
            f"checkpoint {path} was trained with a dictionary of {rows} symbols{trained}, but "
            f"{_dictionary_files(data)} gives {len(dictionary)}: not the same dictionary. "
            f"{advice}")


# what each task's checkpoints are for, in the words of an error message, and the tools that use them
TASK_USES = {"translation": "summarization (Poolingformer-BART)", "long_qa": "question answering (long_qa)"}
TASK_TOOLS = {"translation": "pf-summarize or generate.sh", "long_qa": "pf-answer or predict_qa"}


def check_task(path: str, state: Dict[str, Any], expected: str) -> None:
    """Raises CheckpointError when the checkpoint was trained for another task than ``expected``."""
    name = getattr(checkpoint_config(state).task, "_name", None)
    if name != expected:
        what = TASK_USES.get(name, f"task {name!r}")
        hint = f": use {TASK_TOOLS[name]}" if name in TASK_TOOLS else ""
        raise CheckpointError(f"checkpoint {path} is a {what} checkpoint, not a "
                              f"{TASK_USES.get(expected, expected)} one{hint}")


def open_checkpoint(path: str, arg_overrides: Dict[str, Any], task_name: Optional[str] = None,
                    state: Optional[Dict[str, Any]] = None,
                    advice: str = TRAINING_ADVICE) -> Tuple[Dict[str, Any], Any]:
    """(state, task) for ``path`` with ``arg_overrides`` applied, its dictionaries checked (and,
    with ``task_name``, the task it was trained for). ``state``: what :func:`read_checkpoint`
    returned for ``path``, when the caller has read it already (it is updated in place);
    ``advice``: what a dictionary of another size should make the user do."""
    from fairseq import tasks

    if state is None:
        if not os.path.isfile(path):
            raise CheckpointError(f"checkpoint not found: {path}")
        state = read_checkpoint(path)
    if task_name is not None:
        check_task(path, state, task_name)
    trained_on = training_data(state)
    override(state, arg_overrides)
    try:
        task = tasks.setup_task(checkpoint_config(state).task, from_checkpoint=True)
    except FileNotFoundError as e:  # the task's dictionary files
        raise CheckpointError(f"{e.filename or e}: not found (the data directory for {path})") from None
    except (ValueError, RuntimeError) as e:  # a dictionary that does not parse (or holds a word twice)
        raise not_a_dictionary(_dictionary_files(str(checkpoint_config(state).task.data)), e) from None
    check_dictionaries(path, state, task, trained_on, advice)
    return state, task


def load_for_inference(path: str, arg_overrides: Dict[str, Any], task_name: Optional[str] = None,
                       state: Optional[Dict[str, Any]] = None,
                       advice: str = TRAINING_ADVICE) -> Tuple[List[Any], Any, Any]:
    """Fairseq's ``load_model_ensemble_and_task`` for one checkpoint, after :func:`open_checkpoint`
    (``state``: the checkpoint as already read, so that it is not read twice)."""
    from fairseq import checkpoint_utils

    state, task = open_checkpoint(path, arg_overrides, task_name, state, advice)
    return checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides=arg_overrides,
                                                         task=task, state=state)
