"""Errors users see: each names the offending key, file or storage and how to fix it.

They are Hydra's `CompactHydraException`s, so wherever one is raised (a job, the sweeper, a launcher)
Hydra prints its message as one line instead of a traceback; `cifar_sweeps.train.main` does the same
for a single run.
"""

import errno
import os
import sys
from pathlib import Path

from typing import NoReturn

from hydra.errors import CompactHydraException


class UserError(CompactHydraException):
    """Something the user fixes (a value, a file, a server, a folder), said in one line."""


class ConfigError(UserError, ValueError):
    """A bad configuration value or input file, detected before any expensive work starts."""


class RunFolderError(UserError):
    """The run folder cannot be used as asked: it holds a finished run, another process holds it, or it
    cannot be written (full disk, read-only)."""


class StorageError(UserError):
    """The Optuna storage (SQLite file, PostgreSQL server) cannot be opened or used."""


FOLDER_KEYS = "hydra.run.dir, hydra.sweep.dir or output_dir"


def unwritable(path: Path, error: OSError) -> RunFolderError:
    """The one-line error for a folder or file that cannot be written."""
    reason = error.strerror or os.strerror(error.errno or errno.EIO)
    hint = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space (disk quota)",
            errno.EROFS: f"choose a writable folder ({FOLDER_KEYS})",
            errno.EACCES: f"choose a folder you may write to ({FOLDER_KEYS})",
            errno.EPERM: f"choose a folder you may write to ({FOLDER_KEYS})"}.get(error.errno, "")
    return RunFolderError(f"cannot write {path}: {reason}" + (f"; {hint}" if hint else ""))


def exit_with(error: UserError) -> NoReturn:
    """Say the error in one line on stderr and exit with status 2 (SystemExit passes through Hydra)."""
    print(f"error: {error}", file=sys.stderr)
    raise SystemExit(2) from None
