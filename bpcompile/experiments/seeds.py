"""One spec trained with several seeds, and the spread of its results.

    run_seeds(spec, [0, 1, 2, 3, 4], out=Path("seeds/mnist_fc_fa"))

Seed s trains into the ordinary run directory `out/seed_<s>/` with train.seed = s. `out/seeds.json` (rewritten
atomically before and after every run) lists each run and `aggregate` of the finished ones: mean and sample
standard deviation of the final test error, the best test error and the final train error. Running it again skips
finished (and diverged) runs and resumes an interrupted one from its checkpoint; more seeds may be added.
"""

import math
import statistics
from pathlib import Path
from typing import Optional

from rich.console import Console

from ..errors import BpcompileError, TrainingDiverged
from ..runtime.checkpoint import write_json
from ..runtime.rundir import SUMMARY
from ..spec import spec_from_dict
from .sweep import diff_paths, read_json, resolved, run_or_resume
from ..console import make_console

SEEDS_FILE = "seeds.json"
AGGREGATED = ("final_test_error", "best_test_error", "final_train_error")


def aggregate(summaries: list[dict]) -> dict:
    """Mean and sample standard deviation (n - 1; None for fewer than 2 values) of each of AGGREGATED over the
    summaries of finished runs (a summary with another status is counted in `excluded`)."""
    used = [s for s in summaries if s.get("status", "finished") == "finished"]
    result: dict = {"count": len(used), "excluded": len(summaries) - len(used)}
    for key in AGGREGATED:
        values = [float(s[key]) for s in used if s.get(key) is not None and math.isfinite(float(s[key]))]
        result[key] = {
            "mean": statistics.fmean(values) if values else None,
            "std": statistics.stdev(values) if len(values) >= 2 else None,
            "n": len(values),
        }
    return result


def _without_seed(spec_json: dict) -> dict:
    out = {**spec_json, "train": dict(spec_json["train"])}
    out["train"].pop("seed", None)
    return out


def run_seeds(spec, seeds: list[int], *, out: Path, device: Optional[str] = None, data_dir: Optional[str] = None,
              overwrite: bool = False, console: Optional[Console] = None) -> dict:
    """Train `spec` once per seed into out/seed_<s>/; returns (and writes to out/seeds.json) the runs and their
    aggregate. overwrite=True retrains every seed from scratch, even finished ones, and accepts an `out` that held
    another spec's seeds."""
    console = console or make_console()
    out = Path(out)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise BpcompileError("give at least one seed.")
    if len(set(seeds)) != len(seeds):
        raise BpcompileError(f"seeds must be distinct (got {seeds}).")
    base = resolved(spec)
    record = {"kind": "bpcompile-seeds", "name": spec.name, "spec": _without_seed(base), "seeds": seeds, "runs": [],
              "aggregate": aggregate([])}
    if out.exists() and not out.is_dir():
        raise BpcompileError(f"seeds output {str(out)!r} exists and is not a directory.")
    previous = read_json(out / SEEDS_FILE)
    if not overwrite:
        if isinstance(previous, dict) and previous.get("spec") != record["spec"]:
            fields = diff_paths(previous.get("spec"), record["spec"])
            raise BpcompileError(
                f"{str(out / SEEDS_FILE)!r} holds runs of another spec (it differs in {', '.join(fields[:8])}); "
                f"choose another output directory, or overwrite to retrain every seed."
            )
        if previous is None and out.exists() and any(out.iterdir()):
            names = sorted(p.name for p in out.iterdir())
            raise BpcompileError(f"seeds output {str(out)!r} already holds {', '.join(names[:5])} but no "
                                 f"{SEEDS_FILE}; choose an empty or new directory, or overwrite.")
    out.mkdir(parents=True, exist_ok=True)

    runs, summaries = [], []

    def save(current: Optional[dict] = None) -> None:
        record["runs"] = runs + ([current] if current else [])
        record["aggregate"] = aggregate(summaries)
        write_json(out / SEEDS_FILE, record)

    for k, seed in enumerate(seeds):
        raw = resolved(spec)
        raw["train"]["seed"] = seed
        spec_s = spec_from_dict(raw, f"{spec.name} with train.seed={seed}")
        run_dir = out / f"seed_{seed}"
        console.print(f"seed {seed} ({k + 1}/{len(seeds)}): {run_dir}", markup=False)
        save({"seed": seed, "dir": run_dir.name, "status": "running"})
        try:
            summary, how = run_or_resume(spec_s, run_dir, device=device, data_dir=data_dir, console=console,
                                         overwrite=overwrite)
            if how == "skipped":
                console.print(f"  {run_dir.name} already {summary.get('status')}", markup=False)
        except TrainingDiverged as err:
            console.print(f"  diverged: {err}", markup=False)
            summary = read_json(run_dir / SUMMARY)
            summary = summary if isinstance(summary, dict) else {"status": "diverged"}
            summary["status"] = "diverged"
        summaries.append(summary)
        runs.append({"seed": seed, "dir": run_dir.name, "status": summary.get("status"),
                     **{key: summary.get(key) for key in ("epochs",) + AGGREGATED}})
        save()

    agg = record["aggregate"]
    mean, std = agg["final_test_error"]["mean"], agg["final_test_error"]["std"]
    if mean is not None:
        console.print(f"{spec.name}: final test err {mean:.2f}%" + (f" ± {std:.2f}" if std is not None else "")
                      + f" over {agg['count']} finished run(s)" + (f", {agg['excluded']} not finished"
                                                                  if agg["excluded"] else ""), markup=False)
    return record

