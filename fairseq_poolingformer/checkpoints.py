"""Checkpoints that survive a kill: atomic writes and copies, resume from the newest intact file.

Why. ``fairseq-train`` saves one checkpoint with ``checkpoint_utils.torch_persistent_save``
(``X.pt.tmp`` then a rename, never fsynced) and then, in ``checkpoint_utils.save_checkpoint``,
copies it onto ``checkpoint_best.pt`` / ``checkpoint_last.pt`` with ``PathManager.copy``, which
truncates the destination and writes it in place. A kill during that copy leaves a truncated
``checkpoint_last.pt``; the next start dies in ``torch.load`` (``PytorchStreamReader failed
reading zip archive``) although an intact ``checkpoint_E_U.pt`` lies beside it; and the
``*.pt.tmp`` of a kill during ``torch.save`` is never removed.

What importing the package changes (:func:`apply`; idempotent; local paths only, remote
``PathManager`` paths and ``--write-checkpoints-asynchronously`` keep Fairseq's behaviour):

1. ``checkpoint_utils.torch_persistent_save``: :func:`atomic_write` (``X.pt.tmp`` in the same
   directory, fsync the file, ``os.replace``, fsync the directory).
2. ``checkpoint_utils.PathManager``: the same class with ``copy`` replaced by
   :func:`atomic_copy` (same steps). Only ``checkpoint_utils`` sees it; ``fairseq.file_io``'s
   ``PathManager`` is untouched.
3. ``Trainer.load_checkpoint`` (called once, when ``fairseq-train`` starts) first removes
   stale ``*.pt.tmp`` files from ``--save-dir`` (one INFO line), then, if the file to resume
   from exists but cannot be read, resumes from the newest intact checkpoint of ``--save-dir``
   instead (one WARNING line, see :func:`resume_file`). The same when ``checkpoint_last.pt``
   is absent but intact checkpoints are in ``--save-dir`` (a kill during the run's first save;
   not with ``--no-last-checkpoints`` or a ``--restore-file``). Not for ``--finetune-from-model``
   or ``--continue-once``: a broken pretrained model is an error, as before.

"Intact" means: a zip archive whose members all pass their CRC check (``torch.load`` does not
check them) and whose pickle loads, giving the update count that orders the candidates.

Test hook: ``PF_FAULT_INJECT=KIND:WHICH[,KIND:WHICH]`` (KIND ``save`` or ``copy``; WHICH a
number N, the N-th such operation of the process, or a file-name pattern such as
``checkpoint_last.pt`` or ``checkpoint[0-9].pt``, the first one onto a matching file) makes
that checkpoint save or copy write half of the file and then SIGKILL its own process, so that
tests can kill a run at an exact point. Nothing sets it outside the tests.
"""

import fnmatch
import logging
import os
import re
import signal
import sys
import zipfile
from typing import Any, BinaryIO, Callable, Dict, List, Optional, Tuple

import torch

logger = logging.getLogger(__name__)

_PATCH_MARK = "_poolingformer_checkpoints"
TMP_SUFFIX = ".tmp"
_CHUNK = 1 << 20  # bytes per read/write when copying


class CheckpointUnreadableError(RuntimeError):
    """The checkpoint to resume from cannot be read and no intact one can replace it."""


# ---------------------------------------------------------------------------------------------
# fault injection (tests only)
# ---------------------------------------------------------------------------------------------

FAULT_ENV = "PF_FAULT_INJECT"
_fault_counts: Dict[str, int] = {}


def _fault_due(kind: str, path: str) -> bool:
    """Count one ``kind`` operation onto ``path``; True when ``PF_FAULT_INJECT`` asks to die
    during it."""
    spec = os.environ.get(FAULT_ENV, "")
    if not spec:
        return False
    _fault_counts[kind] = _fault_counts.get(kind, 0) + 1
    for item in spec.split(","):
        name, _, which = item.strip().partition(":")
        if name != kind:
            continue
        if which.isdigit() and int(which) == _fault_counts[kind]:
            return True
        if not which.isdigit() and fnmatch.fnmatchcase(os.path.basename(path), which):
            return True
    return False


def _die(kind: str, path: str, written: int, total: int) -> None:
    """SIGKILL this process (what ``kill -9`` does), saying where first."""
    print(f"{FAULT_ENV}: SIGKILL during {kind} #{_fault_counts[kind]} of {path} "
          f"after {written} of {total} bytes", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


# ---------------------------------------------------------------------------------------------
# atomic files
# ---------------------------------------------------------------------------------------------


def fsync_dir(directory: str) -> None:
    """Make a rename in ``directory`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Create ``path`` complete or not at all: ``write`` fills ``path + '.tmp'``, which is
    fsynced and renamed onto ``path``; the directory is fsynced. On error the temporary is
    removed and ``path`` keeps its old content."""
    tmp = path + TMP_SUFFIX
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(os.path.dirname(path))


def _write_checkpoint(obj: Any, f: BinaryIO, path: str) -> None:
    if not _fault_due("save", path):
        torch.save(obj, f)
        return
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getbuffer()
    f.write(data[: len(data) // 2])
    f.flush()
    os.fsync(f.fileno())
    _die("save", f.name, len(data) // 2, len(data))


def _transfer(source: BinaryIO, f: BinaryIO, count: int) -> int:
    """Copy the first ``count`` bytes of ``source`` into ``f`` (both at offset 0): in the
    kernel with ``os.sendfile`` where it works, as ``shutil.copyfile`` does; returns bytes."""
    done = 0
    f.flush()
    if hasattr(os, "sendfile"):
        try:
            while done < count:
                sent = os.sendfile(f.fileno(), source.fileno(), done, min(count - done, 1 << 30))
                if sent == 0:
                    break
                done += sent
        except OSError:  # not supported for these files: finish with reads and writes
            pass
    source.seek(done)
    f.seek(done)
    while done < count:
        chunk = source.read(min(_CHUNK, count - done))
        if not chunk:
            break
        f.write(chunk)
        done += len(chunk)
    return done


def _copy_bytes(src: str, f: BinaryIO, dst: str) -> None:
    total = os.path.getsize(src)
    count = total // 2 if _fault_due("copy", dst) else total
    with open(src, "rb") as source:
        written = _transfer(source, f, count)
    if count < total:
        f.flush()
        os.fsync(f.fileno())
        _die("copy", f.name, written, total)


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save(obj, path)``, atomically."""
    atomic_write(path, lambda f: _write_checkpoint(obj, f, path))


def atomic_copy(src: str, dst: str) -> None:
    """Copy ``src`` onto ``dst``, atomically."""
    atomic_write(dst, lambda f: _copy_bytes(src, f, dst))


# ---------------------------------------------------------------------------------------------
# reading checkpoints back
# ---------------------------------------------------------------------------------------------


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def check_checkpoint(path: str) -> int:
    """Return the update count stored in checkpoint ``path``; raise ``ValueError`` (saying
    why) if it cannot be read: truncated, a member failing its CRC, or a pickle that does not
    load."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        if bad is not None:
            raise ValueError(f"member {bad} fails its CRC check")
        kwargs: Dict[str, Any] = {"mmap": True}  # tensors are mapped, not read
    else:
        with open(path, "rb") as f:
            head = f.read(2)
        if head != b"\x80\x02":  # not torch's pre-1.6 pickle format either
            size = os.path.getsize(path)
            raise ValueError(f"truncated or not a checkpoint ({size} bytes, no zip directory)")
        kwargs = {}
    try:
        state = torch.load(path, map_location="cpu", **kwargs)
    except Exception as e:  # what fairseq's own load would die of
        raise ValueError(_first_line(e)) from e
    try:
        return int(state["optimizer_history"][-1]["num_updates"])
    except (KeyError, IndexError, TypeError, ValueError):
        return -1  # readable, but not written by fairseq-train: ranked last


def checkpoint_files(save_dir: str, suffix: str = "") -> List[str]:
    """The checkpoints Fairseq writes in ``save_dir`` (``checkpoint*{suffix}.pt``)."""
    pattern = re.compile(r"checkpoint.*" + re.escape(suffix) + r"\.pt")
    try:
        names = os.listdir(save_dir)
    except FileNotFoundError:
        return []
    return sorted(os.path.join(save_dir, n) for n in names if pattern.fullmatch(n))


def newest_intact(paths: List[str]) -> Optional[Tuple[str, int]]:
    """The readable checkpoint among ``paths`` with the most updates (then the newest mtime):
    ``(path, num_updates)``, or None."""
    found = []
    for path in paths:
        try:
            found.append((check_checkpoint(path), os.path.getmtime(path), path))
        except (ValueError, OSError):
            continue
    if not found:
        return None
    updates, _, path = max(found)
    return path, updates


def resume_file(path: str, save_dir: str, suffix: str = "", missing_means_interrupted: bool = False) -> str:
    """The checkpoint to resume from instead of ``path`` (``path`` itself when it is readable).
    Raises :class:`CheckpointUnreadableError` when ``path`` is unreadable and no other
    checkpoint in ``save_dir`` is intact.

    An absent ``path`` is kept (a first launch), unless ``missing_means_interrupted``: for
    ``checkpoint_last.pt``, which Fairseq writes at every save, an absent one beside intact
    checkpoints means the run was killed during its first save, after ``checkpoint_E_U.pt``
    was written and before the copy onto ``checkpoint_last.pt`` completed; resume from the
    newest intact checkpoint then, with one warning line, rather than from update 0."""
    if not os.path.isfile(path):
        if not missing_means_interrupted:
            return path
        found = newest_intact(checkpoint_files(save_dir, suffix))
        if found is None:
            return path
        fallback, updates = found
        logger.warning(f"no {os.path.basename(path)} in {save_dir}, but intact checkpoints are there (a run "
                       f"killed during its first save): resuming from {fallback} ({updates} updates)")
        return fallback
    try:
        check_checkpoint(path)
        return path
    except (ValueError, OSError) as e:
        reason = str(e)
    same = os.path.abspath(path)
    candidates = [p for p in checkpoint_files(save_dir, suffix) if os.path.abspath(p) != same]
    best = newest_intact(candidates)
    if best is None:
        raise CheckpointUnreadableError(
            f"cannot resume from {path}: {reason}; no other intact checkpoint in {save_dir} "
            "(move the file away to start from scratch)"
        )
    fallback, updates = best
    logger.warning(f"checkpoint {path} cannot be read ({reason}); resuming from {fallback} "
                   f"({updates} updates), the newest intact checkpoint in {save_dir}")
    return fallback


def remove_stale_temporaries(save_dir: str) -> List[str]:
    """Delete ``*.pt.tmp`` left in ``save_dir`` by a save that was killed; return their names."""
    try:
        names = sorted(n for n in os.listdir(save_dir) if n.endswith(".pt" + TMP_SUFFIX))
    except FileNotFoundError:
        return []
    removed = []
    for name in names:
        try:
            os.remove(os.path.join(save_dir, name))
            removed.append(name)
        except FileNotFoundError:
            continue
    if removed:
        logger.info(f"removed {len(removed)} stale temporary file(s) of an interrupted checkpoint "
                    f"save from {save_dir}: {', '.join(removed)}")
    return removed


# ---------------------------------------------------------------------------------------------
# patches
# ---------------------------------------------------------------------------------------------


def _is_local(path: str) -> bool:
    from fairseq.file_io import PathManager

    return not PathManager.path_requires_pathmanager(path)


def _patch_persistent_save() -> None:
    from fairseq import checkpoint_utils

    stock = checkpoint_utils.torch_persistent_save
    if getattr(stock, _PATCH_MARK, False):
        return

    def torch_persistent_save(obj: Any, filename: Any, async_write: bool = False) -> None:
        if async_write or not isinstance(filename, (str, os.PathLike)) \
                or not _is_local(os.fspath(filename)):
            return stock(obj, filename, async_write=async_write)
        atomic_save(obj, os.fspath(filename))

    torch_persistent_save.__doc__ = "Fairseq's torch_persistent_save, atomic for local files."
    torch_persistent_save.__wrapped__ = stock  # type: ignore[attr-defined]
    setattr(torch_persistent_save, _PATCH_MARK, True)
    checkpoint_utils.torch_persistent_save = torch_persistent_save


def _patch_copy() -> None:
    from fairseq import checkpoint_utils

    stock = checkpoint_utils.PathManager
    if getattr(stock, _PATCH_MARK, False):
        return

    class CheckpointPathManager(stock):  # type: ignore[misc, valid-type]
        """``fairseq.file_io.PathManager`` whose ``copy`` is atomic for local files."""

        @staticmethod
        def copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
            refused = os.path.exists(dst_path) and not overwrite
            if refused or not (_is_local(src_path) and _is_local(dst_path)):
                return stock.copy(src_path, dst_path, overwrite=overwrite)
            atomic_copy(src_path, dst_path)
            return True

    setattr(CheckpointPathManager, _PATCH_MARK, True)
    checkpoint_utils.PathManager = CheckpointPathManager


def _reads_checkpoint_itself(trainer: Any) -> bool:
    """Whether this rank reads the file (Trainer.load_checkpoint's rule); the others get
    rank 0's state by broadcast."""
    cfg = trainer.cfg
    return bool(
        trainer.data_parallel_rank == 0
        or cfg.checkpoint.load_checkpoint_on_all_dp_ranks
        or trainer.tpu
        or (trainer.is_fsdp and cfg.distributed_training.use_sharded_state)
        or getattr(cfg.model, "base_layers", 0) > 0
    )


def _patch_trainer_load() -> None:
    from fairseq.trainer import Trainer

    stock = Trainer.load_checkpoint
    if getattr(stock, _PATCH_MARK, False):
        return

    def load_checkpoint(self: Any, filename: str, *args: Any, **kwargs: Any) -> Any:
        ckpt = self.cfg.checkpoint
        local = isinstance(filename, str) and _is_local(filename) and _is_local(ckpt.save_dir)
        if local and self.should_save_checkpoint_on_current_rank:
            remove_stale_temporaries(ckpt.save_dir)
        pretrained = filename in (ckpt.finetune_from_model, getattr(ckpt, "continue_once", None))
        if local and not pretrained and _reads_checkpoint_itself(self):
            suffix = self.checkpoint_suffix or ""
            # Fairseq's default resume file, which it writes at every save (unless told not to)
            default_last = (ckpt.restore_file == "checkpoint_last.pt" and not ckpt.no_last_checkpoints
                            and os.path.abspath(filename)
                            == os.path.abspath(os.path.join(ckpt.save_dir, f"checkpoint_last{suffix}.pt")))
            filename = resume_file(filename, ckpt.save_dir, suffix, missing_means_interrupted=default_last)
        return stock(self, filename, *args, **kwargs)

    load_checkpoint.__doc__ = stock.__doc__
    load_checkpoint.__wrapped__ = stock  # type: ignore[attr-defined]
    setattr(load_checkpoint, _PATCH_MARK, True)
    Trainer.load_checkpoint = load_checkpoint


def apply() -> None:
    """Apply the three patches (idempotent); nothing when Fairseq is not installed."""
    try:
        import fairseq  # noqa: F401
    except ImportError:
        return
    _patch_persistent_save()
    _patch_copy()
    _patch_trainer_load()


apply()
