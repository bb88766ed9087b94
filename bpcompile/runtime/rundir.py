"""The run directory: resolved spec, metrics.jsonl, summary.json, checkpoint.pt.

An existing run directory is never overwritten unless the caller resumes it or
asks for overwrite explicitly."""

import json
from pathlib import Path

from ..errors import BpcompileError
from .checkpoint import write_json, write_text

SPEC = "spec.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.pt"
RUN_FILES = (SPEC, METRICS, SUMMARY, CHECKPOINT)


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def create(cls, path: Path, overwrite: bool) -> "RunDir":
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise BpcompileError(f"--out {str(path)!r} exists and is not a directory.")
        existing = [p.name for p in path.iterdir()] if path.exists() else []
        if existing and not overwrite:
            raise BpcompileError(
                f"run directory {str(path)!r} already exists and holds {', '.join(sorted(existing)[:5])}: pass "
                f"--resume {str(path)} to continue that run, --overwrite to replace it, or choose another --out."
            )
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
        with open(self.file(METRICS), "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()

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
