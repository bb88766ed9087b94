"""Startup: how long a spec takes to compile, cold (empty graph cache) and warm (its graphs cached), and a
whole 3-epoch `mnist_fc_bp` run against the plain hand-written loop (benchmarks/plain_mnist_loop.py).

    python benchmarks/startup.py --data-dir ../shared/data                 # every MNIST spec, ResNet-50, cifar_lc_sdtp
    python benchmarks/startup.py --specs mnist_fc_bp,mnist_lc_sdtp --repeats 3 --no-whole

Compile: each spec in a fresh process (`--one`): after `import torch`, the time of compile_experiment, and
of everything before the first step (compile, the optimiser, the rule's step; torch.optim's first optimiser
imports torch._dynamo, about a second, as it does in any training script). Cold runs use an empty cache
directory, warm runs the one the cold run filled. Whole process: wall time of `bpcompile run SPEC --set
train.epochs=3` (graph cache warm; its run directory written as usual: checkpoints, metrics, the
alignment probe) and of the plain loop, interleaved `--repeats` times; the ratio is the median of the
paired ratios. Prints a table and writes benchmarks/results/startup_<device>.json (device, torch, triton)."""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPECS = sorted(p.stem for p in (ROOT / "specs").glob("mnist_*.json")) + ["cifar_lc_sdtp", "imagenet_resnet50_bp"]
# the memory check runs first in compile: keep a big net's batch within this machine (the graphs do not
# depend on the batch size)
SMALL_BATCH = ["data.batch_size=8", "data.eval_batch_size=8"]


def measure_one(spec_path: str) -> dict:
    """In this (fresh) process: compile and step-setup seconds after importing torch."""
    import torch

    from bpcompile.compiler import compile_experiment
    from bpcompile.optim import build_forward_optimizer
    from bpcompile.runtime.step import RuleStep
    from bpcompile.spec.io import load_spec

    spec = load_spec(spec_path, SMALL_BATCH if "imagenet" in spec_path else [])
    started = time.perf_counter()
    program = compile_experiment(spec, torch.device("cpu"))
    compiled = time.perf_counter()
    RuleStep(program, build_forward_optimizer(spec.optimizer, program), spec.train.seed)
    ready = time.perf_counter()
    return {"compile_s": compiled - started, "before_first_step_s": ready - started}


def run_child(spec: str, cache: Path) -> dict:
    env = {**os.environ, "BPCOMPILE_CACHE_DIR": str(cache)}
    env.pop("BPCOMPILE_GRAPH_CACHE", None)
    done = subprocess.run([sys.executable, __file__, "--one", str(ROOT / "specs" / f"{spec}.json")], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def wall(command: list, env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - started


def whole_process(data_dir: str, repeats: int, cache: Path) -> dict:
    env = {**os.environ, "BPCOMPILE_CACHE_DIR": str(cache)}
    with tempfile.TemporaryDirectory() as scratch:
        ours = [sys.executable, str(ROOT / "cli.py"), "run", "specs/mnist_fc_bp.json", "--set", "train.epochs=3",
                "--data-dir", data_dir, "--out", str(Path(scratch) / "run"), "--overwrite"]
        plain = [sys.executable, "benchmarks/plain_mnist_loop.py", "--data-dir", data_dir, "--epochs", "3"]
        wall(ours, env)                             # fills the graph cache (a user's second run)
        rows = []
        for repeat in range(repeats):
            order = [("plain", plain), ("bpcompile", ours)]
            for name, command in (order if repeat % 2 == 0 else order[::-1]):
                rows.append({"impl": name, "repeat": repeat, "wall_s": wall(command, env)})
    by_repeat = {}
    for row in rows:
        by_repeat.setdefault(row["repeat"], {})[row["impl"]] = row["wall_s"]
    ratios = [r["bpcompile"] / r["plain"] for r in by_repeat.values()]
    return {"runs": rows, "ratios": ratios, "ratio": statistics.median(ratios),
            "plain_median_s": statistics.median(r["wall_s"] for r in rows if r["impl"] == "plain"),
            "bpcompile_median_s": statistics.median(r["wall_s"] for r in rows if r["impl"] == "bpcompile"),
            "goal_ratio_at_most": 1.05}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--specs", default=",".join(DEFAULT_SPECS))
    parser.add_argument("--repeats", type=int, default=3, help="cold and warm compiles, and whole runs, each")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--no-whole", action="store_true", help="skip the whole-process comparison")
    parser.add_argument("--out", default=None)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one)))
        return 0

    sys.path.insert(0, str(ROOT))
    import torch
    from rich.console import Console
    from rich.table import Table

    from bpcompile.runtime.device import versions

    results = []
    for spec in args.specs.split(","):
        cold, warm = [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as cache:
                cold.append(run_child(spec, Path(cache)))
                warm.append(run_child(spec, Path(cache)))
        row = {"spec": spec}
        for name, runs in (("cold", cold), ("warm", warm)):
            for key in ("compile_s", "before_first_step_s"):
                row[f"{name}_{key}"] = statistics.median(r[key] for r in runs)
        results.append(row)
        print(f"{spec}: compile cold {row['cold_compile_s']:.2f} s, warm {row['warm_compile_s']:.2f} s", flush=True)
    whole = None
    if not args.no_whole:
        with tempfile.TemporaryDirectory() as cache:
            whole = whole_process(args.data_dir, args.repeats, Path(cache))

    table = Table(title="compile seconds after importing torch (median of fresh processes)")
    for column in ("spec", "cold compile", "warm compile", "cold before 1st step", "warm before 1st step"):
        table.add_column(column)
    for row in results:
        table.add_row(row["spec"], *(f"{row[k]:.2f}" for k in (
            "cold_compile_s", "warm_compile_s", "cold_before_first_step_s", "warm_before_first_step_s")))
    Console().print(table)
    if whole:
        print(f"whole process, 3 epochs of mnist_fc_bp: bpcompile {whole['bpcompile_median_s']:.2f} s, plain loop "
              f"{whole['plain_median_s']:.2f} s, ratio {whole['ratio']:.3f} (per repeat "
              f"{', '.join(f'{r:.3f}' for r in whole['ratios'])}; goal <= 1.05)")
    device = torch.device("cpu")
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"startup_{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "startup", **versions(device), "repeats": args.repeats, "compile": results,
               "whole_process": whole}
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
