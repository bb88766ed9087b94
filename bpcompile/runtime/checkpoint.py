"""Atomic file writes: a crash mid-write never leaves a half-written file."""

import json
import os
import tempfile
from pathlib import Path

import torch


def _atomic(path: Path, write) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path: Path, payload: dict) -> None:
    _atomic(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: Path) -> dict:
    # onto the CPU: RNG states must stay CPU tensors; load_state_dict/copy_ move the rest to their device
    return torch.load(path, map_location="cpu", weights_only=False)


def write_json(path: Path, data) -> None:
    _atomic(path, lambda f: f.write((json.dumps(data, indent=2) + "\n").encode()))


def write_text(path: Path, text: str) -> None:
    _atomic(path, lambda f: f.write(text.encode()))
