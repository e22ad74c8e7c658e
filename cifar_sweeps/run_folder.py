"""The run folder: writable before anything is written, and used by one process at a time.

`RunFolderCheck` is a Hydra callback (conf/train.yaml, `hydra.callbacks`): before Hydra writes its
`.hydra/` files and log into `hydra.run.dir` (or a sweep into `hydra.sweep.dir`), a folder that cannot
be written (read-only, not yours, a full disk) is said in one line instead of Hydra's traceback.

Two processes resuming the same folder would both train and both write its checkpoint and record.
`RunFolderLock` holds a POSIX record lock (`fcntl.lockf`) on `RUN_DIR/.run.lock` while a run uses its
folder:

- the kernel drops it when the holder exits, however it exits (kill -9 included), so a crash never
  leaves a stale lock behind;
- POSIX locks are the ones network filesystems share between machines (NFS through its lock
  manager, Lustre, GPFS), unlike `flock`, which some of them keep per machine;
- the file says who holds it (host, pid, since when), so the second process can name the first.

A sweep job may wait for the lock: a retried trial whose dead-declared parent job is still finishing
its epoch gets the folder once the parent notices it was replaced and stops.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from .errors import RunFolderError, exit_with, unwritable

LOCK_FILE = ".run.lock"


class RunFolderLock:
    def __init__(self, run_dir: Path, wait_s: float = 0.0, poll_s: float = 1.0):
        self.path = Path(run_dir) / LOCK_FILE
        self.wait_s, self.poll_s = wait_s, poll_s
        self.fd: int | None = None

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "another process"
        except OSError:
            return "another process"

    def __enter__(self) -> "RunFolderLock":
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise unwritable(self.path.parent, e) from None
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EACCES, errno.EAGAIN):
                    os.close(self.fd)
                    raise unwritable(self.path, e) from None
                if time.monotonic() >= deadline:
                    holder = self.holder()
                    os.close(self.fd)
                    self.fd = None
                    raise RunFolderError(f"{self.path.parent} is in use by {holder}; wait until that run ends (or "
                                         "stop it), or use another hydra.run.dir") from None
                time.sleep(self.poll_s)
        since = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()} on {socket.gethostname()} since {since}\n".encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass
            fcntl.lockf(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def check_writable(folder: Path) -> None:
    """Create `folder` and a file in it (removed again), or raise the one-line RunFolderError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise unwritable(folder, e) from None


class RunFolderCheck(Callback):
    """Hydra turns an exception raised in a callback into a warning and goes on, so the error is said here
    and the process exits (SystemExit is not caught)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.check(Path(str(config.hydra.run.dir)))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.check(Path(str(config.hydra.sweep.dir)))

    @staticmethod
    def check(folder: Path) -> None:
        try:
            check_writable(folder)
        except RunFolderError as e:
            exit_with(e)
