"""fairseq-train killed at any moment resumes (fairseq_poolingformer.checkpoints).

A tiny Poolingformer-BART (the model and data of test_cli_summarization) trains with a save
every 2 updates, epoch checkpoints and checkpoint_best/last copies. The run is killed with
SIGKILL again and again, inside saves and copies (``PF_FAULT_INJECT`` makes the process kill
itself after writing half of the file) and at random moments, and the same command is
restarted each time. Every restart must resume from no more than one save interval before the
kill, every checkpoint on disk must be complete or absent after every kill, and the run must
end at the same update and data position as an uninterrupted one, with no ``*.tmp`` left.
The stock Fairseq copy, killed the same way, leaves a truncated checkpoint (the failure fixed),
and a truncated checkpoint_last.pt makes training resume from the newest intact file with one
warning line.

Runs are children of a fork server (tests/forkserver.py) that imported Fairseq once: a child
runs ``fairseq_cli.train.cli_main()`` (what the ``fairseq-train`` script runs) with the test's
arguments, in its own process, and saves 5-8 s of imports per start.
"""

import os
import random
import re
import shutil
import signal
import struct
import time
import zipfile
from fnmatch import fnmatch
from pathlib import Path
from typing import List, Optional

import pytest
import torch

from fairseq_poolingformer import checkpoints
from forkserver import ForkServer
from test_cli_summarization import N_TRAIN, N_VALID, TRAIN, _env, _example, _json_logs

INTERVAL = 2  # --save-interval-updates
MAX_UPDATE = 16  # 37 examples in batches of 8: 5 updates an epoch, so epoch ends at 5, 10, 15
TRAIN_ARGS = [a for a in TRAIN if a != "--no-epoch-checkpoints"] + [
    "--save-interval-updates", str(INTERVAL), "--keep-interval-updates", "2",
    "--keep-last-epochs", "1", "--max-update", str(MAX_UPDATE),
]
# The kills, in order. A string is PF_FAULT_INJECT: the process kills itself halfway through
# its N-th checkpoint save / copy (counted from its own start), or the first one onto a file
# matching the pattern; every kind of checkpoint file is hit, by torch.save and by copy. A
# pair (n, delay): SIGKILL from outside `delay` seconds after the run logged its n-th update,
# a random moment inside the next update or save. Counting updates, not seconds since the
# first one, keeps every later kill reachable however fast the machine trains (a run that
# got too far would finish before a "copy:3" could strike).
_rng = random.Random(8)


def _random_kill() -> tuple:
    return _rng.randint(1, 2), _rng.uniform(0, 0.03)


KILLS = ["save:1", "copy:checkpoint_best.pt", _random_kill(), "copy:checkpoint_last.pt",
         "save:checkpoint[0-9].pt", _random_kill(), "save:checkpoint_*_*.pt", "copy:3",
         _random_kill(), "copy:checkpoint_last.pt"]
LOADED = re.compile(r"Loaded checkpoint (\S+) \(epoch \d+ @ (\d+) updates\)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ForkServer(_env(), cwd=str(tmp_path_factory.getbasetemp()))
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def data(server, tmp_path_factory) -> Path:
    """test_cli_summarization's synthetic data, binarized by fairseq-preprocess."""
    root = tmp_path_factory.mktemp("faults")
    rng = random.Random(0)
    for split, n in (("train", N_TRAIN), ("valid", N_VALID)):
        pairs = [_example(rng) for _ in range(n)]
        (root / f"{split}.source").write_text("".join(s + "\n" for s, _ in pairs))
        (root / f"{split}.target").write_text("".join(t + "\n" for _, t in pairs))
    argv = ["fairseq-preprocess", "--source-lang", "source", "--target-lang", "target",
            "--trainpref", str(root / "train"), "--validpref", str(root / "valid"),
            "--joined-dictionary", "--destdir", str(root / "bin"), "--workers", "1"]
    run = server.run(argv, root / "preprocess.log",
                     code="from fairseq_cli.preprocess import cli_main\ncli_main()\n")
    assert run.wait() == 0, run.output()[-3000:]
    return root / "bin"


def _train(server: ForkServer, data: Path, save: Path, log: Path, fault: str = ""):
    argv = ["fairseq-train", str(data), *TRAIN_ARGS, "--save-dir", str(save)]
    return server.start(argv, log, env={checkpoints.FAULT_ENV: fault})


def _kill_after_updates(run, updates: int, delay: float) -> None:
    deadline = time.monotonic() + 120
    while (run.output().count("| train_inner |") < updates and time.monotonic() < deadline
           and run.alive()):
        time.sleep(0.002)
    time.sleep(delay)
    assert run.alive(), f"the run ended before its kill:\n{run.output()[-2000:]}"
    run.kill()


def _loaded(log: str) -> Optional[int]:
    """The update the run resumed from (None: it started from scratch)."""
    found = LOADED.findall(log)
    return int(found[0][1]) if found else None


def _done(log: str, start: int) -> int:
    """Updates completed when the log ends (the last train_inner record)."""
    updates = [int(r["num_updates"]) for r in _json_logs(log) if "num_updates" in r and "loss" in r]
    return max([start, *updates])


def _intact(path: Path) -> bool:
    """Independent of the code under test: every zip member passes its CRC and it loads."""
    try:
        with zipfile.ZipFile(path) as archive:
            if archive.testzip() is not None:
                return False
        torch.load(path, map_location="cpu", weights_only=False)
        return True
    except Exception:
        return False


def _tmp_files(save: Path) -> List[str]:
    return sorted(p.name for p in save.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def reference(server, data, tmp_path_factory) -> Path:
    """The same command, never interrupted."""
    save = tmp_path_factory.mktemp("reference")
    run = _train(server, data, save, save / "train.log")
    assert run.wait() == 0, run.output()[-3000:]
    return save


def test_killed_anywhere_resumes_and_ends_like_an_uninterrupted_run(server, data, reference, tmp_path):
    save = tmp_path / "ckpt"
    progress = 0  # updates completed before the latest kill
    expect_stale = False
    killed_in = set()  # the files being written when PF_FAULT_INJECT struck
    for i, kill in enumerate(KILLS + [None]):
        fault = kill if isinstance(kill, str) else ""
        run = _train(server, data, save, tmp_path / f"run{i}.log", fault)
        if isinstance(kill, tuple):
            _kill_after_updates(run, *kill)
        code = run.wait()
        log = run.output()
        loaded = _loaded(log)
        resumed = 0 if loaded is None else loaded
        where = f"run {i} ({kill}):\n{log[-2500:]}"
        # resumed from no more than one save interval before the kill, never from the future
        assert progress - INTERVAL <= resumed <= progress, where
        assert ("stale temporary file(s)" in log) == expect_stale, where
        if kill is None:
            assert code == 0, where
            break
        assert code == -signal.SIGKILL, where
        if fault:  # killed where it was asked to, mid-write
            kind, _, which = fault.partition(":")
            struck = re.search(rf"SIGKILL during {kind} #(\d+) of (\S+)\.tmp after", log)
            assert struck, where
            name = Path(struck.group(2)).name
            assert struck.group(1) == which if which.isdigit() else fnmatch(name, which), where
            killed_in.add(re.sub(r"\d+", "N", name))
        progress = _done(log, resumed)
        # every checkpoint is complete or absent; a killed write leaves only its .tmp
        names = sorted(p.name for p in save.glob("checkpoint*.pt"))
        assert all(_intact(save / n) for n in names), (names, where)
        stale = _tmp_files(save)
        assert stale or not fault, where  # (a random kill may land in a save too)
        expect_stale = bool(stale)
    assert _done(log, resumed) == MAX_UPDATE
    assert _tmp_files(save) == []
    # killed while writing each kind of checkpoint file, by torch.save and by copy
    assert killed_in >= {"checkpoint_N_N.pt", "checkpointN.pt", "checkpoint_best.pt",
                         "checkpoint_last.pt"}, killed_in
    assert "cannot be read" not in "".join(p.read_text() for p in tmp_path.glob("run*.log"))
    # the same end state as the uninterrupted run: updates, data position, learning rate
    # (not bit-equal weights: stock Fairseq resumed from an end-of-epoch checkpoint already
    # differs from an uninterrupted run by ~1e-3, kill or no kill)
    ended, ref = (torch.load(d / "checkpoint_last.pt", map_location="cpu", weights_only=False)
                  for d in (save, reference))
    assert ended["optimizer_history"][-1]["num_updates"] == MAX_UPDATE
    assert ended["extra_state"]["train_iterator"] == ref["extra_state"]["train_iterator"]
    assert ended["optimizer_history"][-1]["lr_scheduler_state"] == \
        ref["optimizer_history"][-1]["lr_scheduler_state"]


def test_truncated_last_checkpoint_falls_back_to_the_newest_intact(server, data, reference, tmp_path):
    save = tmp_path / "ckpt"
    shutil.copytree(reference, save)
    last = save / "checkpoint_last.pt"
    blob = last.read_bytes()
    last.write_bytes(blob[: len(blob) // 2])  # what the stock copy leaves when killed
    (save / "checkpoint_9_99.pt.tmp").write_bytes(blob[:1000])  # an interrupted save
    # checkpoint_best.pt and checkpoint_4_16.pt both hold the last update: the later-written wins
    newest = max(("checkpoint_best.pt", f"checkpoint_4_{MAX_UPDATE}.pt"),
                 key=lambda name: (save / name).stat().st_mtime)
    argv = ["fairseq-train", str(data), *TRAIN_ARGS, "--save-dir", str(save),
            "--max-update", str(MAX_UPDATE + 2)]
    run = server.run(argv, tmp_path / "train.log")
    log = run.output()
    assert run.wait() == 0, log[-3000:]
    warnings = [line for line in log.splitlines() if "| WARNING |" in line and "checkpoint" in line]
    assert len(warnings) == 1, warnings
    assert warnings[0].endswith(
        f"| WARNING | fairseq_poolingformer.checkpoints | checkpoint {last} cannot be read "
        f"(truncated or not a checkpoint ({len(blob) // 2} bytes, no zip directory)); resuming "
        f"from {save / newest} ({MAX_UPDATE} updates), the newest intact checkpoint in {save}"
    ), warnings[0]
    assert LOADED.search(log).groups() == (str(save / newest), str(MAX_UPDATE))
    assert f"removed 1 stale temporary file(s) of an interrupted checkpoint save from {save}: " \
           "checkpoint_9_99.pt.tmp" in log
    assert _done(log, 0) == MAX_UPDATE + 2 and _intact(last) and _tmp_files(save) == []


KILL_MID_COPY = """
import os, signal, sys
src, dst = sys.argv[1:3]
if sys.argv[3] == "stock":
    from fairseq.file_io import PathManager  # what checkpoint_utils.save_checkpoint copies with
    send = os.sendfile  # shutil.copyfile's system call on Linux: die after half the bytes
    def sendfile(out_fd, in_fd, offset, count):
        send(out_fd, in_fd, offset, os.path.getsize(src) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
    os.sendfile = sendfile
else:
    import fairseq_poolingformer  # noqa: F401  (PF_FAULT_INJECT=copy:1 kills after half)
    from fairseq.checkpoint_utils import PathManager
PathManager.copy(src, dst, overwrite=True)
"""


@pytest.mark.parametrize("copy", ["stock", "patched"])
def test_copy_killed_midway(server, reference, tmp_path, copy):
    """The failure the patch removes: the stock copy killed halfway leaves a truncated
    checkpoint_last.pt that Fairseq cannot load; the patched copy leaves the old file whole."""
    src, dst = tmp_path / "checkpoint_1_2.pt", tmp_path / "checkpoint_last.pt"
    shutil.copy(reference / f"checkpoint_4_{MAX_UPDATE}.pt", src)
    shutil.copy(reference / "checkpoint3.pt", dst)  # the previous checkpoint_last (update 15)
    before = dst.read_bytes()
    run = server.run(["-", str(src), str(dst), copy], tmp_path / "copy.log", code=KILL_MID_COPY,
                     env={checkpoints.FAULT_ENV: "copy:1"})
    assert run.wait() == -signal.SIGKILL, run.output()
    if copy == "stock":
        assert dst.stat().st_size == src.stat().st_size // 2
        with pytest.raises(RuntimeError, match="PytorchStreamReader failed reading zip archive"):
            torch.load(dst, map_location="cpu")
    else:
        assert dst.read_bytes() == before
        assert _tmp_files(tmp_path) == ["checkpoint_last.pt.tmp"]


# ---------------------------------------------------------------------------------------------
# in-process units
# ---------------------------------------------------------------------------------------------


def _save(path: Path, updates: int) -> None:
    torch.save({"model": {"w": torch.arange(4.0)}, "optimizer_history": [{"num_updates": updates}]}, path)


def test_resume_file_picks_the_most_updates_among_intact_files(tmp_path, caplog):
    for name, updates in (("checkpoint_last.pt", 9), ("checkpoint_1_6.pt", 6),
                          ("checkpoint_2_8.pt", 8), ("checkpoint_best.pt", 7)):
        _save(tmp_path / name, updates)
    last = tmp_path / "checkpoint_last.pt"
    assert checkpoints.resume_file(str(last), str(tmp_path)) == str(last)  # readable: kept
    assert checkpoints.resume_file(str(tmp_path / "nope.pt"), str(tmp_path)) == str(tmp_path / "nope.pt")
    last.write_bytes(last.read_bytes()[:-100])
    # flip a byte of checkpoint_2_8's tensor data: torch.load would not notice, the CRC does
    newer = tmp_path / "checkpoint_2_8.pt"
    with zipfile.ZipFile(newer) as archive:
        info = next(i for i in archive.infolist() if "/data/" in i.filename)
    blob = bytearray(newer.read_bytes())
    name_len, extra_len = struct.unpack_from("<HH", blob, info.header_offset + 26)  # local header
    blob[info.header_offset + 30 + name_len + extra_len] ^= 0xFF
    newer.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="fails its CRC check"):
        checkpoints.check_checkpoint(str(newer))
    with caplog.at_level("WARNING", logger="fairseq_poolingformer.checkpoints"):
        chosen = checkpoints.resume_file(str(last), str(tmp_path))
    assert chosen == str(tmp_path / "checkpoint_best.pt")  # 7 updates > 6; 8 is corrupt
    assert [r.getMessage() for r in caplog.records] == [
        f"checkpoint {last} cannot be read (truncated or not a checkpoint "
        f"({last.stat().st_size} bytes, no zip directory)); resuming from {chosen} (7 updates), "
        f"the newest intact checkpoint in {tmp_path}"
    ]


def test_missing_last_checkpoint_beside_intact_ones_resumes_only_when_asked(tmp_path, caplog):
    """A kill during the first save leaves checkpoint_E_U.pt but no checkpoint_last.pt."""
    last = tmp_path / "checkpoint_last.pt"
    assert checkpoints.resume_file(str(last), str(tmp_path), missing_means_interrupted=True) == str(last)
    _save(tmp_path / "checkpoint_1_2.pt", 2)
    assert checkpoints.resume_file(str(last), str(tmp_path)) == str(last)  # a first launch
    with caplog.at_level("WARNING", logger="fairseq_poolingformer.checkpoints"):
        chosen = checkpoints.resume_file(str(last), str(tmp_path), missing_means_interrupted=True)
    assert chosen == str(tmp_path / "checkpoint_1_2.pt")
    assert [r.getMessage() for r in caplog.records] == [
        f"no checkpoint_last.pt in {tmp_path}, but intact checkpoints are there (a run killed during "
        f"its first save): resuming from {chosen} (2 updates)"]


def test_killed_before_the_first_checkpoint_last_resumes_from_the_saved_update(server, data, reference, tmp_path):
    """fairseq-train itself: checkpoint_last.pt absent, checkpoint_E_U.pt intact -> resumes there,
    not from update 0 (Fairseq alone would call this a first launch)."""
    save = tmp_path / "ckpt"
    save.mkdir()
    first = min(reference.glob("checkpoint_*_*.pt"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    shutil.copy(first, save / first.name)
    run = server.run(["fairseq-train", str(data), *TRAIN_ARGS, "--save-dir", str(save)], tmp_path / "train.log")
    log = run.output()
    assert run.wait() == 0, log[-3000:]
    assert f"no checkpoint_last.pt in {save}, but intact checkpoints are there" in log
    assert _loaded(log) == int(first.stem.rsplit("_", 1)[1])


def test_nothing_intact_is_an_error_naming_the_file(tmp_path):
    last = tmp_path / "checkpoint_last.pt"
    last.write_bytes(b"")
    (tmp_path / "checkpoint_best.pt").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(checkpoints.CheckpointUnreadableError,
                       match=re.escape(f"cannot resume from {last}: truncated or not a checkpoint "
                                       f"(0 bytes, no zip directory); no other intact checkpoint "
                                       f"in {tmp_path}")):
        checkpoints.resume_file(str(last), str(tmp_path))


class _Unpicklable:
    def __reduce__(self):
        raise ValueError("cannot pickle this")


def test_atomic_save_error_keeps_the_old_file(tmp_path):
    path = tmp_path / "checkpoint_last.pt"
    _save(path, 3)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="cannot pickle this"):
        checkpoints.atomic_save({"model": {}, "bad": _Unpicklable()}, str(path))
    assert path.read_bytes() == before and _tmp_files(tmp_path) == []
    checkpoints.atomic_save({"optimizer_history": [{"num_updates": 4}]}, str(path))
    assert checkpoints.check_checkpoint(str(path)) == 4


def test_patches_are_applied_once():
    from fairseq import checkpoint_utils
    from fairseq.trainer import Trainer

    patched = (checkpoint_utils.torch_persistent_save, checkpoint_utils.PathManager,
               Trainer.load_checkpoint)
    checkpoints.apply()
    assert (checkpoint_utils.torch_persistent_save, checkpoint_utils.PathManager,
            Trainer.load_checkpoint) == patched
    assert not getattr(checkpoint_utils.torch_persistent_save.__wrapped__, "_poolingformer_checkpoints", False)
    assert not getattr(Trainer.load_checkpoint.__wrapped__, "_poolingformer_checkpoints", False)
    from fairseq.file_io import PathManager

    assert checkpoint_utils.PathManager.__mro__[1] is PathManager  # others keep the stock copy


@pytest.mark.parametrize("sendfile", ["kernel", "unsupported", "fails midway"])
def test_atomic_copy_is_byte_exact(tmp_path, monkeypatch, sendfile):
    src, dst = tmp_path / "checkpoint_1_2.pt", tmp_path / "checkpoint_last.pt"
    data = random.Random(1).randbytes(3 * (1 << 20) + 7)  # several chunks and a tail
    src.write_bytes(data)
    dst.write_bytes(b"old")
    real, calls = os.sendfile, []

    def flaky(out_fd, in_fd, offset, count):
        calls.append(offset)
        if sendfile == "unsupported" or len(calls) > 1:
            raise OSError(22, "Invalid argument")
        return real(out_fd, in_fd, offset, 1000)

    if sendfile != "kernel":
        monkeypatch.setattr(os, "sendfile", flaky)
    checkpoints.atomic_copy(str(src), str(dst))
    assert dst.read_bytes() == data and _tmp_files(tmp_path) == []
