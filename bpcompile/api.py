"""The Python API: train, compile and inspect a spec from a notebook or a script of your own, with the same
validation, errors (`BpcompileError`) and run directories as the CLI.

    import bpcompile
    result = bpcompile.train("specs/quickstart.json", overrides={"train.epochs": 3})
    result.summary["final_test_error"], result.history[-1]["layers"], result.run_dir
"""

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union


@dataclass
class TrainResult:
    """What a run left: `summary` (summary.json), `history` (metrics.jsonl, one dict per line: epoch 0 holds the
    alignment metrics before training) and `run_dir`."""

    summary: dict
    history: list
    run_dir: Path


def load(spec_or_path, overrides: Optional[dict] = None):
    """An ExperimentSpec from a path, a dict (as in a JSON file) or an ExperimentSpec, with `overrides`
    ({"train.epochs": 3, "rule": {"name": "fa"}}) applied and checked as `--set` would. Installed rule plug-ins
    (entry points) are loaded first; a plug-in file is loaded with bpcompile.rules.load_plugins([path]) (or import
    it) before."""
    from .plugins import load_entry_point_plugins
    from .spec import ExperimentSpec, apply_overrides, load_spec, spec_from_dict, spec_to_json

    load_entry_point_plugins()

    assignments = [f"{field}={json.dumps(value)}" for field, value in (overrides or {}).items()]
    if isinstance(spec_or_path, ExperimentSpec):
        raw = json.loads(spec_to_json(spec_or_path))
        return spec_from_dict(apply_overrides(raw, assignments)) if assignments else spec_or_path
    if isinstance(spec_or_path, dict):
        return spec_from_dict(apply_overrides(copy.deepcopy(spec_or_path), assignments))
    return load_spec(spec_or_path, assignments)


def train(spec_or_path, out: Union[str, Path, None] = None, overrides: Optional[dict] = None,
          device: Optional[str] = None, data_dir: Optional[str] = None, overwrite: bool = False,
          progress: bool = False) -> TrainResult:
    """Train into `out` (default runs/<name>-<time>) as `bpcompile run` does and return the result. `device`
    overrides train.device ('cpu', 'cuda', 'auto'). A diverged run raises TrainingDiverged, bad input
    BpcompileError; the run directory keeps what was written."""
    from .console import make_console
    from .runtime import run_experiment
    from .runtime.rundir import RunDir, default_run_dir

    spec = load(spec_or_path, overrides)
    run_dir = Path(out) if out is not None else default_run_dir(spec.name)
    summary = run_experiment(spec, out=run_dir, device=device, data_dir=data_dir, overwrite=overwrite,
                             console=make_console(), show_progress=progress)
    return TrainResult(summary=summary, history=RunDir.existing(run_dir).read_metrics(), run_dir=run_dir)


def compile(spec_or_path, overrides: Optional[dict] = None, device: str = "cpu"):
    """The compiled Program (`.train_graph`, `.network`, `.state`, `.rewrites`) of a spec, after every check that
    `bpcompile validate` makes."""
    from .compiler import compile_experiment
    from .runtime.device import resolve_device

    return compile_experiment(load(spec_or_path, overrides), resolve_device(device))


def inspect(spec_or_path, overrides: Optional[dict] = None, stage: str = "all", device: str = "cpu") -> str:
    """The text `bpcompile inspect` prints: the forward and rewritten backward graphs and each node's implementation."""
    from .compiler.dump import dump_text

    return dump_text(compile(spec_or_path, overrides, device), stage)
