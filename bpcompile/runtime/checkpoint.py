"""Atomic file writes (a crash mid-write never leaves a half-written file) and safe checkpoint loading."""

import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch

from ..errors import BpcompileError


class WriteFailed(BpcompileError):
    """A run file could not be written (disk full, quota, read-only file system, ...): the user frees space."""


def write_failed(path: Path, err: OSError) -> WriteFailed:
    """The error for a failed write of `path`: the OS error and the free space left on that file system."""
    path = Path(path)
    code = errno.errorcode.get(err.errno, str(err.errno)) if err.errno else type(err).__name__
    return WriteFailed(f"could not write {str(path)!r}: {err.strerror or err} ({code}); {free_space(path)}.")


def free_space(path: Path) -> str:
    """'2.1 GiB free on that file system' for the file system that holds `path`."""
    try:
        free = shutil.disk_usage(Path(path).parent).free
    except OSError:
        return "the free space on that file system is unknown"
    return (f"{free / 2**30:.1f} GiB" if free >= 2**30 else f"{free / 2**20:.1f} MiB") + " free on that file system"


def _atomic(path: Path, write) -> None:
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise write_failed(path, err) from err
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            if os.path.exists(tmp):
                os.unlink(tmp)
        except OSError:
            pass          # the original error matters more than a temp file we could not remove
        if isinstance(err, OSError):   # disk full, quota, read-only: the user's to fix, not a bug
            raise write_failed(path, err) from err
        raise


def save_checkpoint(path: Path, payload: dict) -> None:
    _atomic(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: Path) -> dict:
    """Tensors and plain data only (weights_only): a crafted checkpoint.pt must not run code on --resume."""
    try:
        # onto the CPU: RNG states must stay CPU tensors; load_state_dict/copy_ move the rest to their device
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:   # refused by the safe unpickler, truncated, not a torch file, unreadable
        reason = _load_reason(err)
        raise BpcompileError(
            f"checkpoint {str(path)!r} cannot be loaded: it holds something other than tensors and plain data "
            f"(numbers, strings, lists, dicts), or it is truncated or corrupt ({reason}). "
            f"bpcompile loads checkpoints with torch.load(weights_only=True) and never runs code from them; "
            f"restore the file from a copy you trust, or start the run again with --overwrite."
        ) from err


def _load_reason(err: Exception) -> str:
    """One line of why torch.load failed; for a refused unpickle, the global it refused (torch's own message
    goes on to explain how to load the file anyway, which is not advice to give about an untrusted file)."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(err)).splitlines() if line.strip()]
    # torch words the refusal differently across versions ("WeightsUnpickler error: Unsupported global: ...",
    # "Trying to load unsupported GLOBAL posix.system ..."); keep the line that names the global
    refused = [line for line in lines if "global" in line.lower() and not line.startswith(("Weights only load failed",
                                                                                           "Check the documentation"))]
    other = [line for line in lines if not line.startswith(("Weights only load failed", "Check the documentation"))]
    line = refused[0].split(" was not an allowed global")[0] if refused else (other[0] if other else "")
    return f"{type(err).__name__}: {line[:300]}" if line else type(err).__name__


def write_json(path: Path, data) -> None:
    _atomic(path, lambda f: f.write((json.dumps(data, indent=2) + "\n").encode()))


def write_text(path: Path, text: str) -> None:
    _atomic(path, lambda f: f.write(text.encode()))
