"""Epoch time of every shipped rule against BP, on the MNIST FC and LC nets and the CIFAR LC net.

    python benchmarks/epoch.py                                   # CPU, every net and rule, 469 steps per epoch
    python benchmarks/epoch.py --nets mnist_fc --rules bp,fa,wm  # a subset
    python benchmarks/epoch.py --device cuda --steps 469

Each (net, rule) trains in a fresh process (`--one`, so peak memory is its own) through `bpcompile.train` on
synthetic data of the net's shape (MNIST 1x28x28 or CIFAR 3x32x32, 10 classes, batch 128): the rule's shipped
spec where there is one (`specs/<net>_<rule>.json`: its own settings), else the net's BP spec with the rule's
defaults. One epoch of `--steps` steps; an alternating target-propagation rule's epoch is an inverse pass and a
forward pass over the same batches (Lee et al.'s schedule), timed apart. Times are the seconds spent in the
runtime's training steps (`RuleStep`, per phase: the graph, the optimisers and the rule's hooks; the loader,
evaluation, the alignment probe and checkpoints excluded; the runtime's `train_seconds` of the epoch is
recorded too); BP of the same net in the same invocation is the baseline, and the rules run interleaved
`--repeats` times, each ratio the median of the paired (same repeat) ratios.
The first step of each phase is timed apart (`first_step_seconds`: with `train.backend` 'inductor' it holds
torch.compile's compilation) and left out of the step seconds, under either backend.
`--backends fx,inductor` times each rule under both backends (`train.backend`); each row's `vs_fx` is its ratio
to the same rule under 'fx' in the same repeat, `vs_bp` always to BP under 'fx'.
Peak memory: the process's maximum resident set on the CPU, `torch.cuda.max_memory_allocated` on a GPU. Prints
a table and writes benchmarks/results/epoch_<device>.json (device, torch and triton versions)."""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NETS = {"mnist_fc": ([1, 28, 28], "MNIST FC 5 x 256 tanh"), "mnist_lc": ([1, 28, 28], "MNIST LC (Table 3)"),
        "cifar_lc": ([3, 32, 32], "CIFAR-10 LC (Table 3)")}
# name -> (shipped spec suffix, rule given to the BP spec when no shipped spec exists)
RULES = {
    "bp": ("bp", {"name": "bp"}), "fa": ("fa", {"name": "fa"}), "dfa": ("dfa", {"name": "dfa"}),
    "ss": ("ss", {"name": "sign_symmetry"}), "kp": ("kp", {"name": "kolen_pollack"}),
    "wm": ("wm", {"name": "weight_mirror"}),
    "dtp_parallel": ("dtp_parallel", None), "sdtp_parallel": ("sdtp_parallel", None),
    "ao_sdtp_parallel": ("ao_sdtp_parallel", None),
    "dtp_alternating": ("dtp", None), "sdtp_alternating": ("sdtp", None),
}


def spec_for(net: str, rule: str, steps: int):
    """(raw spec dict, where it came from) for the pair, on synthetic data of the net's shape."""
    suffix, default_rule = RULES[rule]
    shipped = ROOT / "specs" / f"{net}_{suffix}.json"
    if shipped.exists():
        raw, source = json.loads(shipped.read_text()), shipped.name
    elif default_rule is not None:
        raw = json.loads((ROOT / "specs" / f"{net}_bp.json").read_text())
        raw["rule"], source = default_rule, f"{net}_bp.json + rule {default_rule['name']} defaults"
    else:
        return None, None
    shape, _ = NETS[net]
    raw.pop("$schema", None)
    raw["data"] = {"name": "synthetic", "input_shape": shape, "num_classes": 10, "train_size": steps * 128,
                   "test_size": 1000, "batch_size": 128}
    alternating = raw["rule"].get("schedule") == "alternating"
    raw["train"] = {**raw.get("train", {}), "epochs": 1, "seed": 0}
    return raw, source


def run_one(raw: dict, device: str) -> dict:
    """Train the spec once in this process; its train seconds per epoch and peak memory."""
    import torch

    import bpcompile
    from bpcompile.runtime.step import RuleStep

    phase_seconds, first_step_seconds = {}, {}
    step = RuleStep.__call__

    def timed_step(self, *args, **kwargs):          # seconds per phase, synchronised on a GPU
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        out = step(self, *args, **kwargs)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        if self.phase not in first_step_seconds:     # the phase's first step: warm-up, or Inductor's compile
            first_step_seconds[self.phase] = seconds
        else:
            phase_seconds[self.phase] = phase_seconds.get(self.phase, 0.0) + seconds
        return out

    RuleStep.__call__ = timed_step
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = bpcompile.train(raw, out=Path(tmp) / "run", device=device)
    epochs = [row for row in result.history if row.get("epoch", 0) > 0]
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)     # Linux: kilobytes
    order = [p for p in ("train", "inverse", "forward") if p in phase_seconds]
    return {"step_seconds": [phase_seconds[p] for p in order], "phases": order,
            "first_step_seconds": [first_step_seconds[p] for p in order],
            "train_seconds": [row["train_seconds"] for row in epochs], "wall_seconds": time.perf_counter() - started,
            "peak_memory_bytes": peak, "status": result.summary["status"],
            "implementation_choices": _implementation_choices(device)}


def _implementation_choices(device) -> dict:
    """On CUDA: which of Triton and the reference each LC op shape ran ('auto', compiler/timed_choice.py)."""
    if str(device) != "cuda":
        return {}
    from bpcompile.compiler import timed_choice

    return timed_choice.decisions()


def summarise(runs: list) -> list:
    """Per (net, rule, backend): median step seconds per phase (an alternating rule: inverse, forward), and the
    medians over repeats of each one's ratio to BP's epoch of the same net and repeat under 'fx' (`vs_bp`) and to
    the same rule's under 'fx' (`vs_fx`): paired, so slow spells cancel."""
    def key(r):
        return r["net"], r["rule"], r.get("backend", "fx")

    def ratio(run, baseline, phase):              # an alternating rule's passes over BP's single phase
        return run["step_seconds"][phase] / baseline[min(phase, len(baseline) - 1)]

    def seconds_by_repeat(net, rule, backend):
        return {r["repeat"]: r["step_seconds"] for r in runs if key(r) == (net, rule, backend) and "step_seconds" in r}

    rows = []
    for net, rule, backend in dict.fromkeys(key(r) for r in runs):
        mine = [r for r in runs if key(r) == (net, rule, backend) and "step_seconds" in r]
        row = {"net": net, "rule": rule, "backend": backend,
               "source": next(r["source"] for r in runs if key(r) == (net, rule, backend)),
               "seconds": None, "vs_bp": None, "vs_fx": None, "first_step_seconds": None, "peak_memory_bytes": None}
        if mine:
            epochs = len(mine[0]["step_seconds"])
            row["phases"] = mine[0]["phases"]
            row["seconds"] = [statistics.median(r["step_seconds"][e] for r in mine) for e in range(epochs)]
            row["first_step_seconds"] = [statistics.median(r["first_step_seconds"][e] for r in mine)
                                         for e in range(epochs)]
            row["peak_memory_bytes"] = max(r["peak_memory_bytes"] for r in mine)
            for column, baseline in (("vs_bp", seconds_by_repeat(net, "bp", "fx")),
                                     ("vs_fx", seconds_by_repeat(net, rule, "fx"))):
                paired = [r for r in mine if r["repeat"] in baseline]
                if paired:
                    row[column] = [statistics.median(ratio(r, baseline[r["repeat"]], e) for r in paired)
                                   for e in range(epochs)]
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", default=",".join(NETS))
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--steps", type=int, default=469, help="training steps per epoch (469: one MNIST epoch)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; medians are reported")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default torch's choice)")
    parser.add_argument("--backends", default="fx", help="train.backend values to time, e.g. fx,inductor")
    parser.add_argument("--out", default=None, help="results JSON (default benchmarks/results/epoch_<device>.json)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)       # child: a JSON spec to time
    args = parser.parse_args()
    if args.one is not None:
        raw = json.loads(args.one)
        if args.threads:
            raw["train"]["num_threads"] = args.threads
        print(json.dumps(run_one(raw, args.device)))
        return 0

    import torch
    from rich.console import Console
    from rich.table import Table

    from bpcompile.runtime.device import versions

    nets, rules = args.nets.split(","), args.rules.split(",")
    backends = args.backends.split(",")
    if "bp" not in rules:
        rules = ["bp", *rules]                     # the baseline runs in the same invocation
    if "fx" not in backends:
        backends = ["fx", *backends]
    runs = []
    for repeat in range(args.repeats):             # interleaved: a slow spell of a shared machine hits every rule
        for net, rule, backend in ((n, r, b) for n in nets for r in rules for b in backends):
            raw, source = spec_for(net, rule, args.steps)
            if raw is None:
                continue
            raw["train"]["backend"] = backend
            cmd = [sys.executable, __file__, "--one", json.dumps(raw), "--device", args.device]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            run = {"net": net, "rule": rule, "backend": backend, "repeat": repeat, "source": source}
            if done.returncode:
                run["error"] = done.stderr.strip()[-500:]
            else:
                run.update(json.loads(done.stdout.strip().splitlines()[-1]))
            runs.append(run)
            print(json.dumps({k: v for k, v in run.items() if k != "error"}), file=sys.stderr, flush=True)

    rows = summarise(runs)
    table = Table(title=f"Step seconds per epoch of {args.steps} steps (batch 128, synthetic data), {args.device}, "
                        f"median of {args.repeats} interleaved repeats")
    columns = ["net", "rule", "s / epoch", "vs BP", "peak MB", "spec"]
    if len(backends) > 1:
        columns[2:2] = ["backend", "first step s", "vs fx"]
    for column in columns:
        table.add_column(column)

    def shown(values, digits=2):                   # alternating: inverse / forward pass
        return " / ".join(f"{v:.{digits}f}" for v in values) if values else "–"

    for row in rows:
        by_backend = [row["backend"], shown(row["first_step_seconds"]), shown(row["vs_fx"])] if len(backends) > 1 else []
        if row["seconds"] is None:
            cells = [row["net"], row["rule"], *by_backend[:1], "failed", *[""] * (len(columns) - 4 - len(by_backend[:1])), row["source"]]
            table.add_row(*cells)
            continue
        cells = [row["net"], row["rule"], *by_backend[:1], *by_backend[1:], shown(row["seconds"]), shown(row["vs_bp"]),
                 f"{row['peak_memory_bytes'] / 2**20:.0f}", row["source"]]
        table.add_row(*cells)
    Console(width=160).print(table)
    device = torch.device(args.device)
    result = {"benchmark": "epoch", "steps_per_epoch": args.steps, "batch_size": 128, **versions(device),
              "threads": args.threads or torch.get_num_threads(),
              "goal": {"fa dfa ss kp": 1.05, "wm": 1.3, "dtp/sdtp parallel": 2.0, "alternating pass": 1.5},
              "repeats": args.repeats, "backends": backends, "rows": rows, "runs": runs}
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"epoch_{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
