"""Run many short Python programs (``fairseq-train`` among them) without paying Fairseq's import
each time: a server process imports ``fairseq_cli.train`` once (5-8 s on the 2-core CI) and
``os.fork``s a child per request. A child is a separate process (its own pid, killable with
SIGKILL), starts from a state where only the imports happened, and runs the request's code
with its own ``sys.argv``, environment and log file; so ``fairseq-train ARGS`` in a child is
``fairseq_cli.train.cli_main()`` with ARGS, exactly what the console script runs.

Protocol (one JSON object per line): the test writes ``{"code", "argv", "env", "log"}``; the
server answers ``{"pid": P}`` when the child starts and ``{"status": S}`` (``os.waitpid``'s
status) when it ends.
"""

import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Dict, Optional, Sequence

TRAIN_CODE = "from fairseq_cli.train import cli_main\ncli_main()\n"


def _child(request: Dict) -> None:
    code = 1
    try:
        fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.environ.update(request["env"])
        sys.argv = list(request["argv"])
        exec(compile(request["code"], "<forkserver request>", "exec"), {"__name__": "__main__"})
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    import fairseq_cli.train  # noqa: F401  (the slow import, paid once)
    import torch._dynamo  # noqa: F401  (imported by the first optimizer step: 1-3 s a child)

    protocol = os.fdopen(os.dup(1), "w")
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        protocol.write(json.dumps({"pid": pid}) + "\n")
        protocol.flush()
        _, status = os.waitpid(pid, 0)
        protocol.write(json.dumps({"status": status}) + "\n")
        protocol.flush()


class Run:
    """One child: ``wait()`` for its end; ``kill()`` sends SIGKILL."""

    def __init__(self, server: "ForkServer", pid: int, log: Path):
        self.server, self.pid, self.log = server, pid, log
        self.status: Optional[int] = None

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float = 300) -> int:
        """The exit code, or -SIGNAL when a signal ended the child."""
        if self.status is None:
            try:
                self.status = self.server._read(timeout)["status"]
            except TimeoutError:
                self.kill()
                raise
        if os.WIFSIGNALED(self.status):
            return -os.WTERMSIG(self.status)
        return os.WEXITSTATUS(self.status)

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)  # the server reaps its children at once: no zombies
        except ProcessLookupError:
            return False
        return True

    def output(self) -> str:
        """The child's stdout and stderr so far ("" before it opened its log)."""
        try:
            return self.log.read_text()
        except FileNotFoundError:
            return ""


class ForkServer:
    """Start with ``ForkServer(env)``; ``start(code, argv, log)`` one child at a time."""

    def __init__(self, env: Dict[str, str], cwd: str):
        self.proc = subprocess.Popen(
            [sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=env, cwd=cwd,
        )
        self._pending = b""

    def _read(self, timeout: float) -> Dict:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"fork server: no answer within {timeout} s")
            data = os.read(fd, 4096)
            if not data:
                raise RuntimeError(f"fork server ended (exit code {self.proc.wait()})")
            self._pending += data
        line, _, self._pending = self._pending.partition(b"\n")
        return json.loads(line)

    def start(self, argv: Sequence[str], log: Path, env: Optional[Dict[str, str]] = None,
              code: str = TRAIN_CODE) -> Run:
        request = {"code": code, "argv": list(argv), "env": env or {}, "log": str(log)}
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        return Run(self, self._read(60)["pid"], Path(log))

    def run(self, argv: Sequence[str], log: Path, env: Optional[Dict[str, str]] = None,
            code: str = TRAIN_CODE) -> Run:
        run = self.start(argv, log, env, code)
        run.wait()
        return run

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


if __name__ == "__main__":
    serve()
