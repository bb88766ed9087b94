"""Random hyper-parameter search, as Bartunov et al. ran it (Table 4's space, configurations drawn at random).

    run_sweep(spec, space, trials=60, out=Path("sweeps/mnist_fc_dtp"), epochs=100)

Trial i applies configuration i (drawn from `trial_rng(seed, i)`, so it depends only on (seed, i)) to the spec and
trains it into an ordinary run directory `out/trial_00i/`. The best trial is the one with the lowest validation
error at any evaluated epoch (the test split never chooses); its test error is reported at that epoch. Every
sweep trains with a validation split: a spec without one gets `default_validation_size`.

`out/sweep.json` is rewritten (atomically) before and after every trial. Running the same sweep again skips
finished (and diverged) trials, resumes an interrupted trial from its checkpoint, and restarts one that had not
reached its first checkpoint; a sweep.json of another spec, space or seed is refused.
"""

import copy
import json
from pathlib import Path
from typing import Any, Optional, Union

from rich.console import Console

from ..errors import BpcompileError, TrainingDiverged
from ..spec.reading import loads, read_text_file
from ..runtime.checkpoint import write_json
from ..runtime.rundir import CHECKPOINT, SPEC, SUMMARY, RunDir
from ..runtime.trainer import resume_experiment, run_experiment
from ..spec import apply_overrides, spec_from_dict, spec_to_json
from .space import COMMENT_KEY, SearchSpace, as_space, sample, split_paths, trial_rng
from ..console import make_console

SWEEP_FILE = "sweep.json"
SELECTION = ("lowest validation error (val_error) at any evaluated epoch of a finished trial, ties to the earlier "
             "trial; test error reported at that epoch")
FIXED_VALIDATION = {"mnist": 10000, "fashion_mnist": 10000, "cifar10": 10000, "imagenet": 10000}
DONE = ("finished", "diverged")


# ---- helpers shared with seeds.py ----------------------------------------------------------------------------------
def read_json(path: Path) -> Optional[Any]:
    """A JSON file's content, or None when it is missing or unreadable (e.g. cut short by a crash)."""
    try:   # read as a spec file is: a regular file, size-capped, UTF-8, no duplicate keys (data only)
        return loads(read_text_file(path, "file"), f"file {str(path)!r}")
    except BpcompileError:
        return None


def resolved(spec) -> dict:
    return json.loads(spec_to_json(spec, full=True))


def diff_paths(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two JSON values differ (list items by index)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            out += diff_paths(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += diff_paths(x, y, f"{prefix}.{i}" if prefix else str(i))
        return out
    return [] if a == b else [prefix or "(top level)"]


def run_or_resume(spec, path: Path, *, device: Optional[str] = None, data_dir: Optional[str] = None,
                  console: Optional[Console] = None, overwrite: bool = False) -> tuple[dict, str]:
    """Bring the run of `spec` in `path` to its end: (summary, how), how = 'skipped' (already finished or
    diverged), 'resumed' (from its checkpoint) or 'started' (fresh, replacing a run that never reached a
    checkpoint). A run directory of another spec is refused unless `overwrite`. TrainingDiverged propagates."""
    path = Path(path)
    if not overwrite and (path / SPEC).is_file():
        saved = read_json(path / SPEC)
        if saved != resolved(spec):
            fields = diff_paths(saved, resolved(spec)) if isinstance(saved, dict) else ["(unreadable spec.json)"]
            raise BpcompileError(
                f"run directory {str(path)!r} holds a run of another spec (it differs in {', '.join(fields[:8])}); "
                f"move it away, choose another output directory, or overwrite it."
            )
        summary = read_json(path / SUMMARY)
        if isinstance(summary, dict) and summary.get("status") in DONE:
            return summary, "skipped"
        if (path / CHECKPOINT).is_file():
            summary = resume_experiment(path, spec=spec, device=device, data_dir=data_dir, console=console)
            on_disk = read_json(path / SUMMARY)
            if not isinstance(on_disk, dict) or on_disk.get("status") != summary["status"]:
                write_json(path / SUMMARY, summary)   # the checkpoint was already the last epoch's
            return summary, "resumed"
    return run_experiment(spec, out=path, overwrite=True, device=device, data_dir=data_dir, console=console), "started"


# ---- sweep ---------------------------------------------------------------------------------------------------------
def default_validation_size(data) -> int:
    """Held-out validation examples for a spec that has none: 10000 for MNIST, Fashion-MNIST and CIFAR-10 (as
    Bartunov et al. held out; 800 for the 8000-image embedded MNIST subset) and ImageNet, 10% of a synthetic set."""
    if data.name == "synthetic":
        return max(1, data.train_size // 10)
    if data.name == "mnist" and getattr(data, "subset", "full") == "embedded":
        return 800
    return FIXED_VALIDATION.get(data.name, 10000)


def sweep_base(spec, epochs: Optional[int]) -> tuple[Any, dict]:
    """The spec every trial starts from: train.epochs set, a validation split guaranteed. (spec, validation note)."""
    raw = resolved(spec)
    if epochs is not None:
        raw["train"]["epochs"] = epochs
    note = {"size": spec.data.validation_size, "set_by_sweep": False}
    if spec.data.validation_size == 0:
        note = {"size": default_validation_size(spec.data), "set_by_sweep": True}
        raw["data"]["validation_size"] = note["size"]
    return spec_from_dict(raw, f"sweep spec {spec.name!r}"), note


def trial_config(space: SearchSpace, seed: int, trial: int, present: list[str]) -> dict:
    """Trial `trial`'s values of the paths the spec has (the whole space is drawn, so skipping changes nothing)."""
    drawn = sample(space, trial_rng(seed, trial))
    return {path: drawn[path] for path in present}


def trial_spec(base, config: dict, trial: int):
    """The base spec with a trial's values applied and validated (BpcompileError names a bad value)."""
    raw = apply_overrides(copy.deepcopy(resolved(base)), [f"{p}={json.dumps(v)}" for p, v in config.items()])
    return spec_from_dict(raw, f"sweep trial {trial} ({', '.join(f'{p}={v!r}' for p, v in config.items())})")


def best_validation(rows: list[dict]) -> Optional[dict]:
    """The evaluated epoch with the lowest val_error (ties: the earlier), and the test error of that epoch."""
    evaluated = [r for r in rows if r.get("val_error") is not None]
    if not evaluated:
        return None
    best = min(evaluated, key=lambda r: (r["val_error"], r["epoch"]))
    return {"best_val_error": best["val_error"], "best_val_epoch": best["epoch"],
            "test_error_at_best_val": best.get("test_error")}


def choose_best(records: list[dict]) -> Optional[dict]:
    """The finished trial with the lowest best validation error (ties: the lower trial number)."""
    candidates = [r for r in records if r.get("status") == "finished" and r.get("best_val_error") is not None]
    if not candidates:
        return None
    best = min(candidates, key=lambda r: (r["best_val_error"], r["trial"]))
    return {k: best.get(k) for k in ("trial", "dir", "config", "best_val_error", "best_val_epoch",
                                      "test_error_at_best_val", "final_test_error", "epochs")}


def _trial_record(trial: int, config: dict, status: str, run_dir: Optional[Path], summary: Optional[dict] = None,
                  message: Optional[str] = None) -> dict:
    record = {"trial": trial, "dir": run_dir.name if run_dir is not None else None, "config": config,
              "status": status, "message": message, "epochs": None, "best_val_error": None, "best_val_epoch": None,
              "test_error_at_best_val": None, "final_val_error": None, "final_test_error": None,
              "final_train_error": None, "wall_seconds": None}
    if summary:
        record.update({k: summary.get(k) for k in ("epochs", "final_val_error", "final_test_error",
                                                   "final_train_error", "wall_seconds")})
    if run_dir is not None and status in DONE:
        record.update(best_validation(RunDir(run_dir).read_metrics()) or {})
    return record


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}%"


def _check_same_sweep(previous: dict, current: dict, out: Path) -> None:
    problems = []
    if previous.get("spec") != current["spec"]:
        fields = diff_paths(previous.get("spec"), current["spec"])
        problems.append(f"the spec differs in {', '.join(fields[:8])}")
    def searched(space):   # the free-text comment may change
        return {k: v for k, v in space.items() if k != COMMENT_KEY} if isinstance(space, dict) else space

    if searched(previous.get("space")) != searched(current["space"]):
        fields = diff_paths(searched(previous.get("space")), searched(current["space"]))
        problems.append(f"the search space differs in {', '.join(fields[:8])}")
    if previous.get("seed") != current["seed"]:
        problems.append(f"the seed differs ({previous.get('seed')!r} there, {current['seed']!r} now)")
    if problems:
        raise BpcompileError(
            f"{str(out / SWEEP_FILE)!r} belongs to another sweep: {'; '.join(problems)}. A sweep continues only with "
            f"the same spec (train.epochs included), space and seed; choose another output directory to start a "
            f"new one."
        )


def run_sweep(spec, space: Union[SearchSpace, dict, str, Path], *, trials: int, out: Path,
              epochs: Optional[int] = None, seed: int = 0, device: Optional[str] = None,
              data_dir: Optional[str] = None, console: Optional[Console] = None) -> dict:
    """Random search over `space` for `spec`: `trials` runs in out/trial_NNN/, summarised in out/sweep.json
    (returned). Resumable: run it again with the same arguments (more trials is fine)."""
    console = console or make_console()
    space = as_space(space)
    out = Path(out)
    if trials < 1:
        raise BpcompileError(f"a sweep needs at least one trial (got trials={trials}).")
    base, validation = sweep_base(spec, epochs)
    present, skipped = split_paths(space, base)
    sweep = {"kind": "bpcompile-sweep", "name": base.name, "spec": resolved(base), "space": space.to_json(),
             "seed": seed, "num_trials": trials, "epochs": base.train.epochs, "validation": validation,
             "searched_paths": present, "skipped_paths": skipped, "selection": SELECTION, "trials": [], "best": None,
             "complete": False}
    if out.exists() and not out.is_dir():
        raise BpcompileError(f"sweep output {str(out)!r} exists and is not a directory.")
    previous = read_json(out / SWEEP_FILE) if (out / SWEEP_FILE).exists() else None
    if (out / SWEEP_FILE).exists() and not isinstance(previous, dict):
        raise BpcompileError(f"{str(out / SWEEP_FILE)!r} cannot be read as a sweep record; move it away or choose "
                             f"another output directory.")
    if previous is not None:
        _check_same_sweep(previous, sweep, out)
    elif out.exists() and any(out.iterdir()):
        names = sorted(p.name for p in out.iterdir())
        raise BpcompileError(f"sweep output {str(out)!r} already holds {', '.join(names[:5])} but no {SWEEP_FILE}; "
                             f"choose an empty or new directory.")
    out.mkdir(parents=True, exist_ok=True)

    if skipped:
        console.print(f"sweep {base.name}: the spec has no field {', '.join(skipped)}; "
                      f"{'that path is' if len(skipped) == 1 else 'those paths are'} not searched", markup=False)
    if validation["set_by_sweep"]:
        console.print(f"sweep {base.name}: the spec holds out no validation split; data.validation_size set to "
                      f"{validation['size']}", markup=False)

    records = sweep["trials"]

    def save(current: Optional[dict] = None) -> None:
        sweep["trials"] = records + ([current] if current else [])
        sweep["best"] = choose_best(sweep["trials"])
        sweep["complete"] = len(records) == trials and all(r["status"] in DONE + ("failed",) for r in records)
        write_json(out / SWEEP_FILE, sweep)

    for i in range(trials):
        config = trial_config(space, seed, i, present)
        shown = ", ".join(f"{p}={v:.4g}" if isinstance(v, float) else f"{p}={v!r}" for p, v in config.items())
        try:
            spec_i = trial_spec(base, config, i)
        except BpcompileError as err:
            console.print(f"trial {i + 1}/{trials}: {shown}: invalid configuration: {err}", markup=False)
            records.append(_trial_record(i, config, "failed", None, message=str(err)))
            save()
            continue
        run_dir = out / f"trial_{i:03d}"
        console.print(f"trial {i + 1}/{trials} ({run_dir.name}): {shown}", markup=False)
        save(_trial_record(i, config, "running", run_dir))
        try:
            summary, how = run_or_resume(spec_i, run_dir, device=device, data_dir=data_dir, console=console)
            record = _trial_record(i, config, summary.get("status", "finished"), run_dir, summary)
            if how == "skipped":
                console.print(f"  {run_dir.name} already {record['status']}", markup=False)
        except TrainingDiverged as err:
            summary = read_json(run_dir / SUMMARY)
            record = _trial_record(i, config, "diverged", run_dir, summary if isinstance(summary, dict) else None,
                                   message=str(err))
            console.print(f"  diverged: {err}", markup=False)
        records.append(record)
        save()
        if record.get("best_val_error") is not None:
            console.print(f"  best val err {record['best_val_error']:.2f}% (epoch {record['best_val_epoch']}), "
                          f"test err there {_pct(record['test_error_at_best_val'])}", markup=False)

    save()
    best = sweep["best"]
    if best:
        console.print(f"sweep {base.name}: best trial {best['trial']} ({best['dir']}): val err "
                      f"{best['best_val_error']:.2f}% at epoch {best['best_val_epoch']}, test err "
                      f"{_pct(best['test_error_at_best_val'])}", markup=False)
    else:
        console.print(f"sweep {base.name}: no trial finished", markup=False)
    return sweep
