"""The run directory: resolved spec, metrics.jsonl, summary.json, checkpoint.pt.

An existing run directory is never overwritten unless the caller resumes it or
asks for overwrite explicitly, and one process at a time trains into it (RunLock)."""

import errno
import json
import os
import time
from pathlib import Path
from typing import Optional

try:
    import fcntl
except ImportError:      # not a POSIX system: runs go unlocked
    fcntl = None

from ..errors import BpcompileError
from .checkpoint import write_failed, write_json, write_text

SPEC = "spec.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.pt"
RUN_FILES = (SPEC, METRICS, SUMMARY, CHECKPOINT)


def default_run_dir(name: str) -> Path:
    """runs/<name>-<local time>: where a run goes when no --out (or `out`) is given."""
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)

    @staticmethod
    def check_new(path: Path, overwrite: bool) -> None:
        """Refuse a non-directory, or a directory with anything in it unless `overwrite`."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise BpcompileError(f"--out {str(path)!r} exists and is not a directory.")
        existing = [p.name for p in path.iterdir()] if path.exists() else []
        if existing and not overwrite:
            raise BpcompileError(
                f"run directory {str(path)!r} already exists and holds {', '.join(sorted(existing)[:5])}: pass "
                f"--resume {str(path)} to continue that run, --overwrite to replace it, or choose another --out."
            )

    @classmethod
    def create(cls, path: Path, overwrite: bool) -> "RunDir":
        path = Path(path)
        cls.check_new(path, overwrite)
        path.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:  # --overwrite: only this run's own files go
            (path / name).unlink(missing_ok=True)
        return cls(path)

    @classmethod
    def existing(cls, path: Path) -> "RunDir":
        path = Path(path)
        if not (path / SPEC).is_file():
            raise BpcompileError(f"--resume {str(path)!r}: no run there (no {SPEC} in that directory).")
        return cls(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def write_spec(self, spec_json: str) -> None:
        write_text(self.file(SPEC), spec_json)

    def append_metrics(self, row: dict) -> None:
        try:
            with open(self.file(METRICS), "a") as f:
                f.write(json.dumps(row) + "\n")
                f.flush()
        except OSError as err:     # disk full etc.: a message naming the file, not a traceback
            raise write_failed(self.file(METRICS), err) from err

    def read_metrics(self) -> list[dict]:
        path = self.file(METRICS)
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, last_epoch: int) -> list[dict]:
        """Keep metrics of epochs up to the checkpoint's (a crash may have logged one more)."""
        rows = [r for r in self.read_metrics() if r["epoch"] <= last_epoch]
        write_text(self.file(METRICS), "".join(json.dumps(r) + "\n" for r in rows))
        return rows

    def write_summary(self, summary: dict) -> None:
        write_json(self.file(SUMMARY), summary)


class RunLock:
    """An exclusive lock on a run directory, held for the whole run, so that two processes never train into one
    directory (both would pass the checks on its files). The lock is flock(2) on the directory itself, not on a
    lock file: nothing extra appears among the run's files, and the kernel drops it when the process dies.

    `acquire(create=True)` (a fresh run) first makes the directory and any missing parents; `release` removes
    those again if they are still empty (a run that failed before writing anything leaves nothing behind)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fd: Optional[int] = None
        self.created: list[Path] = []

    def acquire(self, create: bool) -> None:
        if create:
            if self.path.exists() and not self.path.is_dir():
                raise BpcompileError(f"--out {str(self.path)!r} exists and is not a directory.")
            for p in (self.path, *self.path.parents):   # the missing ones, deepest first
                if p.exists():
                    break
                self.created.append(p)
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise write_failed(self.path, err) from err
        if fcntl is None or not self.path.is_dir():
            return        # resume of a missing directory: RunDir.existing names the problem
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return        # an unreadable directory: the first write will name the problem
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                self.created = []     # the other process's directory now: never remove it
                raise BpcompileError(
                    f"another bpcompile process is using {str(self.path)!r} (it holds the run directory's lock); "
                    f"wait for it to end, or choose another --out."
                ) from None
            return        # a file system without flock (some network mounts): run unlocked rather than not at all
        self.fd = fd

    def release(self) -> None:
        self._remove_created()
        if self.fd is not None:
            os.close(self.fd)     # closing the descriptor drops the lock
            self.fd = None

    def _remove_created(self) -> None:
        for p in self.created:
            try:
                p.rmdir()         # only if still empty
            except OSError:
                break
        self.created = []
