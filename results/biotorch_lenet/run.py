"""BioTorch's MNIST LeNet benchmark: our rules beside BioTorch's own layers on the same batches, and the
stability check at lr 0.01, momentum 0.9.

    python results/biotorch_lenet/run.py --epochs 20 --jobs 2     # train everything missing, then report
    python results/biotorch_lenet/run.py --epochs 20 --seed 1     # the benchmark runs again with seed 1
    python results/biotorch_lenet/run.py --report-only            # results/biotorch_lenet.md from the runs

* runs/ours/<rule>/: `bpcompile run specs/biotorch/mnist_lenet_<rule>.json` for --epochs (BioTorch's recipe:
  per-rule SGD lr, momentum 0.9, weight decay 1e-3, batch 64, 32x32 inputs; the schedule's first drop is at
  epoch 50).
* runs/biotorch/<rule>/: biotorch_side.py: BioTorch 0.0.16's LeNetMNIST and layers (`pip install --no-deps
  biotorch==0.0.16`) trained on the same batches with the same optimiser settings.
* runs/check/<ours|biotorch>/<rule>/: 2 epochs at lr 0.01, momentum 0.9, no weight decay, batch 128 with
  each rule's defaults (ours: bp, fa, dfa, sign symmetry's four variants, weight mirror, Kolen-Pollack;
  BioTorch: its six).
* runs/first_epoch/<ours|biotorch>/<rule>/seed_<s>/ (--only first_epoch): one epoch of the benchmark recipe for
  the lr 0.1 rules (bp, usf, brsf, frsf) with seeds 2-9, to count how often each implementation's net dies in
  its first epoch (seeds 0 and 1: the benchmark runs' first epoch).
* runs/check/issue_<init>/<rule>/: the same check on issue 14's LeNet (28x28 inputs; conv 5x5x6, max pool,
  conv 5x5x16, max pool, FC 120, FC 84, FC 10, ReLU; runs/check/issue_lenet.json) under network.init
  glorot_uniform (the default) and torch_default (PyTorch's own), with weight mirror also given a mirror
  decay (B's growth control).
Runs that finished with the asked-for epochs are kept. One CPU thread per run."""

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RUNS = HERE / "runs"
REPORT = HERE.parent / "biotorch_lenet.md"
sys.path.insert(0, str(ROOT))
from bpcompile.spec.biotorch import BENCHMARK_ERRORS, RULES  # noqa: E402

CHECK_RULES = {
    "bp": {"name": "bp"}, "fa": {"name": "fa"}, "dfa": {"name": "dfa"},
    "sign": {"name": "sign_symmetry", "variant": "sign"}, "usf": {"name": "sign_symmetry", "variant": "usf"},
    "brsf": {"name": "sign_symmetry", "variant": "brsf"}, "frsf": {"name": "sign_symmetry", "variant": "frsf"},
    "wm": {"name": "weight_mirror"}, "kp": {"name": "kolen_pollack"},
}
CHECK_INITS = ["glorot_uniform", "torch_default"]
MIRROR_DECAY = 0.05       # B's fixed point near ||W|| for 'sum' over 128 noise samples of variance 0.01 / 12
ISSUE_RULES = {**CHECK_RULES, "wm_decay": {"name": "weight_mirror", "mirror": {"decay": MIRROR_DECAY}},
               "dfa_lr_1e-3": {"name": "dfa"}}
ISSUE_SETS = {"dfa_lr_1e-3": ["optimizer.lr=0.001"]}      # after CHECK_SETTINGS: DFA at a tenth of the rate
FIRST_EPOCH_RULES = ["bp", "usf", "brsf", "frsf"]      # the recipe's lr 0.1 rules
FIRST_EPOCH_SEEDS = range(2, 10)
CHECK_SETTINGS = ["optimizer.lr=0.01", "optimizer.weight_decay=0", 'optimizer.schedule={"name": "constant"}',
                  "data.batch_size=128", "train.epochs=2"]


def summary(out: Path):
    try:
        return json.loads((out / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def run(cmd, out: Path, epochs: int) -> None:
    found = summary(out)
    finished = found and found.get("epochs") == epochs and found.get("status", "finished") == "finished"
    if finished or (found and found.get("status") == "diverged"):       # a divergence is a result too
        print(f"kept {out.relative_to(ROOT)}", flush=True)
        return
    print(" ".join(str(c) for c in cmd[2:]), flush=True)
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=ROOT)
    if result.returncode:
        print(f"{out.relative_to(ROOT)}: exit {result.returncode}\n{result.stderr[-1500:]}", flush=True)
    (out / "checkpoint.pt").unlink(missing_ok=True)


def ours(spec: Path, out: Path, sets: list[str], args) -> list:
    cmd = [sys.executable, "-m", "bpcompile", "run", str(spec), "--data-dir", args.data_dir, "--device", "cpu",
           "--out", str(out), "--overwrite", "--no-progress", "--set", "train.num_threads=1"]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def theirs(spec: Path, out: Path, epochs: int, args, seed: int = 0) -> list:
    return [sys.executable, str(HERE / "biotorch_side.py"), str(spec), "--epochs", str(epochs), "--out", str(out),
            "--data-dir", args.data_dir, "--seed", str(seed)]


def first_epoch_jobs(args) -> list:
    work = []
    for rule in FIRST_EPOCH_RULES:
        spec = ROOT / "specs" / "biotorch" / f"mnist_lenet_{rule}.json"
        for seed in FIRST_EPOCH_SEEDS:
            out = RUNS / "first_epoch" / "ours" / rule / f"seed_{seed}"
            work.append((ours(spec, out, ["train.epochs=1", f"train.seed={seed}"], args), out, 1))
            out = RUNS / "first_epoch" / "biotorch" / rule / f"seed_{seed}"
            work.append((theirs(spec, out, 1, args, seed), out, 1))
    return work


def first_epoch_error(out: Path):
    """Test error % after the first epoch of a run, or None."""
    return next((r["test_error"] for r in rows(out) if r.get("epoch") == 1 and "test_error" in r), None)


def jobs(args) -> list:
    work = []
    base = RUNS if args.seed == 0 else RUNS / f"seed{args.seed}"
    for rule in RULES:
        spec = ROOT / "specs" / "biotorch" / f"mnist_lenet_{rule}.json"
        sets = [f"train.epochs={args.epochs}", f"train.seed={args.seed}"]
        work.append((ours(spec, base / "ours" / rule, sets, args), base / "ours" / rule, args.epochs))
        work.append((theirs(spec, base / "biotorch" / rule, args.epochs, args, args.seed), base / "biotorch" / rule,
                     args.epochs))
    if args.seed != 0:
        return work                   # the stability check runs with seed 0 only
    for rule, rule_spec in CHECK_RULES.items():
        spec = ROOT / "specs" / "biotorch" / "mnist_lenet_bp.json"
        out = RUNS / "check" / "ours" / rule
        work.append((ours(spec, out, CHECK_SETTINGS + [f"rule={json.dumps(rule_spec)}"], args), out, 2))
    issue_spec = RUNS / "check" / "issue_lenet.json"
    write_issue_spec(issue_spec)
    for init in CHECK_INITS:
        for rule, rule_spec in ISSUE_RULES.items():
            out = RUNS / "check" / f"issue_{init}" / rule
            sets = CHECK_SETTINGS + [f"rule={json.dumps(rule_spec)}", f'network.init={{"scheme": "{init}"}}'] + \
                ISSUE_SETS.get(rule, [])
            work.append((["ISSUE_SPEC", issue_spec] + ours(issue_spec, out, sets, args), out, 2))
    for rule in RULES:
        check_spec = RUNS / "check" / f"lenet_check_{rule}.json"
        out = RUNS / "check" / "biotorch" / rule
        work.append((["CHECK_SPEC", rule, check_spec], out, 2))
    return work


def write_check_spec(rule: str, path: Path) -> None:
    """BioTorch's side of the stability check: the rule's LeNet spec at the check's settings."""
    from bpcompile.spec import apply_overrides, save_spec, spec_from_dict

    raw = json.loads((ROOT / "specs" / "biotorch" / f"mnist_lenet_{rule}.json").read_text())
    raw.pop("$schema", None)              # relative to specs/biotorch/, wrong here
    spec = spec_from_dict(apply_overrides(raw, CHECK_SETTINGS))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_spec(spec, path)


def write_issue_spec(path: Path) -> None:
    """Issue 14's LeNet: BioTorch's LeNet recipe with 28x28 inputs and a dense FC 120 in place of conv 5x5x120."""
    from bpcompile.spec import save_spec, spec_from_dict

    raw = json.loads((ROOT / "specs" / "biotorch" / "mnist_lenet_bp.json").read_text())
    raw.pop("$schema", None)
    relu, pool = {"type": "activation", "fn": "relu"}, {"type": "pool", "kind": "max", "kernel": 2}

    def conv(name, channels):
        return {"type": "conv2d", "name": name, "channels": channels, "kernel": 5, "padding": "valid"}

    def dense(name, units):
        return {"type": "dense", "name": name, "units": units}

    raw["name"] = "issue14_lenet"
    raw["description"] = ("Issue 14's LeNet: conv 5x5x6, max pool, conv 5x5x16, max pool, FC 120, FC 84, FC 10, ReLU, "
                          "on 28x28 MNIST.")
    raw["data"].pop("image_size", None)
    raw["network"]["layers"] = [conv("conv1", 6), relu, pool, conv("conv2", 16), relu, pool, {"type": "flatten"},
                                dense("fc1", 120), relu, dense("fc2", 84), relu, dense("fc3", 10)]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_spec(spec_from_dict(raw), path)


def execute(job, args) -> None:
    cmd, out, epochs = job
    if cmd[0] == "ISSUE_SPEC":
        cmd = cmd[2:]        # the spec was written by jobs()
    if cmd[0] == "CHECK_SPEC":
        write_check_spec(cmd[1], cmd[2])
        cmd = theirs(cmd[2], out, epochs, args)
    run(cmd, out, epochs)


def rows(path: Path) -> list:
    try:
        return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines() if line.strip()]
    except OSError:
        return []


DEAD = 80.0     # test error % past which a benchmark run has died (chance: 88.65-89.72%)


def final_error(out: Path):
    s = summary(out)
    if s is None:
        return None, None
    diverged = s.get("status") == "diverged" or s.get("diverged")
    return s.get("final_test_error"), diverged


def fmt(value, diverged=False) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" + (" (diverged)" if diverged else "")


def check_cell(out: Path) -> str:
    """'error' after the last epoch, or 'diverged in epoch E (step S)' from the run's summary."""
    s = summary(out)
    if s is None:
        return "–"
    if s.get("status") == "diverged":
        where = (s.get("error") or "").split(":")[0].removeprefix("training diverged ")
        return f"diverged {where}".strip()
    return fmt(s.get("final_test_error"))


def report() -> None:
    lines = ["# BioTorch's MNIST LeNet benchmark: our rules beside BioTorch's own layers", "",
             "Regenerate: `python results/biotorch_lenet/run.py --report-only`; retrain: `python results/biotorch_lenet/"
             "run.py --epochs 20 --jobs 2`, `--seed 1` and `--only first_epoch` (needs `pip install --no-deps biotorch==0.0.16`). LeNet and recipe: "
             "`bpcompile/spec/biotorch.py` (specs/biotorch/). *BioTorch, same batches* is BioTorch 0.0.16's own "
             "LeNetMNIST and layers, built as its benchmark builds them (`create_le_net_biomodel`: copy_weights=False, "
             "so W and B take its Xavier init; runs before 2026-12-03 kept PyTorch's default W, about half Xavier's "
             "scale in the dense layers), trained by `biotorch_side.py` on exactly our batches and optimiser settings; "
             "*Benchmarks.md* is BioTorch's published error after 100 epochs. Test error % at the final epoch; "
             "a 2-core CPU, one thread per run.", ""]
    lockstep = HERE / "lockstep.json"
    if lockstep.exists():
        found = json.loads(lockstep.read_text())
        lines += ["## Lock-step with BioTorch's layers", "",
                  "`python results/biotorch_lenet/lockstep.py --steps 30` (`lockstep.json`): BioTorch's LeNetMNIST "
                  "given our initial weights and feedback tensors, both trained on the same batches with each "
                  "recipe's optimiser (DFA in BioTorch's forms: dense B for dense layers, a k x k kernel for conv "
                  "layers). Largest relative gap between the two losses over the steps (float rounding, amplified "
                  "by lr 0.1, parts the trajectories after a few dozen steps), and the largest distance between the "
                  "two nets' weights after the steps over the distance the weights moved (a rule that differed would "
                  "show here even at DFA's lr 1e-4, where the loss barely moves):", "",
                  "| rule | steps | max relative loss gap | weights apart / weights moved |", "|---|---|---|---|"]
        lines += [f"| {r['rule']} | {r['steps']} | {r['max_relative_loss_gap']:.1e} | "
                  f"{r['max_weight_gap_over_distance_moved']:.1e} |" for r in found["rows"]]
        lines.append("")
    epochs = {s.get("epochs") for r in RULES if (s := summary(RUNS / "ours" / r))}
    seed1 = RUNS / "seed1"            # the same runs with train.seed=1 (biotorch_side.py --seed 1)
    lines += [f"## The benchmark recipe, {', '.join(str(e) for e in sorted(epochs)) or '?'} epochs", "",
              "Seed 0 runs: `runs/ours`, `runs/biotorch`; seed 1: `runs/seed1/` (`--set train.seed=1`, "
              "`biotorch_side.py --seed 1`). At the recipe's lr 0.1 (momentum 0.9) a net can die, BP's and "
              f"BioTorch's own included: a run over {DEAD}% test error (chance is 88.65-89.72%) counts as dead. The "
              "gap is ours minus BioTorch's, averaged over the seeds where both trained.", "",
              "| rule | lr | ours, seed 0 | BioTorch, seed 0 | ours, seed 1 | BioTorch, seed 1 | dead runs: ours / "
              "BioTorch's | mean gap where both trained | BioTorch Benchmarks.md (100 epochs) |",
              "|---|---|---|---|---|---|---|---|---|"]
    from bpcompile.spec.biotorch import LEARNING_RATES
    for rule in RULES:
        pairs = [(final_error(RUNS / "ours" / rule), final_error(RUNS / "biotorch" / rule)),
                 (final_error(seed1 / "ours" / rule), final_error(seed1 / "biotorch" / rule))]
        done = [(a[0], b[0]) for a, b in pairs if a[0] is not None and b[0] is not None]
        gaps = [a - b for a, b in done if a < DEAD and b < DEAD]
        gap = f"{sum(gaps) / len(gaps):+.2f}" if gaps else "–"
        dead = f"{sum(a >= DEAD for a, _ in done)} / {sum(b >= DEAD for _, b in done)} of {len(done)}"
        cells = " | ".join(f"{fmt(*a)} | {fmt(*b)}" for a, b in pairs)
        lines.append(f"| {rule} | {LEARNING_RATES[rule]:g} | {cells} | {dead} | {gap} | {BENCHMARK_ERRORS[rule]} |")
    first = {impl: {rule: [first_epoch_error((RUNS if seed == 0 else seed1) / impl / rule) for seed in (0, 1)]
                    + [first_epoch_error(RUNS / "first_epoch" / impl / rule / f"seed_{seed}") for seed in FIRST_EPOCH_SEEDS]
                    for rule in FIRST_EPOCH_RULES} for impl in ("ours", "biotorch")}
    if any(e is not None for e in first["ours"]["bp"][2:]):
        lines += ["", f"How often a net dies in its first epoch at the recipe's lr 0.1 (test error over {DEAD}% "
                  f"after epoch 1; no dead run in the table above recovered): seeds 0-{FIRST_EPOCH_SEEDS[-1]}, seeds 0 "
                  "and 1 from the runs above, the rest one epoch each (`--only first_epoch`, "
                  "`runs/first_epoch/`). Dead seeds are listed.", "",
                  "| rule | ours: dead / runs | ours: dead seeds | BioTorch: dead / runs | BioTorch: dead seeds |",
                  "|---|---|---|---|---|"]
        for rule in FIRST_EPOCH_RULES:
            cells = []
            for impl in ("ours", "biotorch"):
                found = [(seed, e) for seed, e in enumerate(first[impl][rule]) if e is not None]
                dead = [str(seed) for seed, e in found if e > DEAD]
                cells += [f"{len(dead)} / {len(found)}", ", ".join(dead) or "none"]
            lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    lines += ["", "Epoch-0 `feedback_norm_ratio` (||B|| / ||W||) of our runs, per layer (DFA's B has another shape "
              "than W: none):", "", "| rule | " + " | ".join(["conv2", "conv3", "fc1", "fc2"]) + " |", "|---|---|---|---|---|"]
    for rule in RULES:
        first = next((r for r in rows(RUNS / "ours" / rule) if r.get("epoch") == 0), {})
        layers = first.get("layers", {})
        cells = [f"{layers[k]['feedback_norm_ratio']:.2f}" if "feedback_norm_ratio" in layers.get(k, {}) else "–"
                 for k in ("conv2", "conv3", "fc1", "fc2")]
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    lines += ["", "## Stability check: 2 epochs at lr 0.01, momentum 0.9, batch 128, no weight decay", "",
              "Each rule with its defaults (ours) or BioTorch's layers (same batches; BioTorch's side has no "
              "divergence check). The loss column is the last epoch's mean training loss: a finite error with a loss "
              "far above log(10) = 2.3 means some batches blew up. Ours stops a run as diverged at a non-finite loss "
              "or a loss over 1000 times the first (`train.divergence_factor`).", "",
              "| rule | ours: test error | ours: train loss | BioTorch: test error | BioTorch: train loss |",
              "|---|---|---|---|---|"]
    for rule in CHECK_RULES:
        loss_a = next((r.get("train_loss") for r in reversed(rows(RUNS / "check" / "ours" / rule)) if "train_loss" in r), None)
        theirs_dir = RUNS / "check" / "biotorch" / rule
        b, db = final_error(theirs_dir)
        loss_b = next((r.get("train_loss") for r in reversed(rows(theirs_dir)) if "train_loss" in r), None)
        lines.append(f"| {rule} | {check_cell(RUNS / 'check' / 'ours' / rule)} | {fmt(loss_a)} | {fmt(b, db)} | {fmt(loss_b)} |")
    lines += ["", "## Stability check on issue 14's LeNet", "",
              "`runs/check/issue_lenet.json`: 28x28 inputs, conv 5x5x6, max pool, conv 5x5x16, max pool, FC 120, FC 84, "
              "FC 10, ReLU; the same 2 epochs at lr 0.01, momentum 0.9, batch 128, no weight decay. Test error % after "
              "epoch 2, or where the run was stopped as diverged (a non-finite loss, or a loss over 1000 times the "
              "first). `wm_decay` is weight mirror with `mirror.decay` " + f"{MIRROR_DECAY:g}" + "; `dfa_lr_1e-3` is DFA at lr "
              "0.001.", "",
              "| rule | " + " | ".join(f"init {init}" for init in CHECK_INITS) + " |",
              "|---|" + "---|" * len(CHECK_INITS)]
    for rule in ISSUE_RULES:
        lines.append(f"| {rule} | " + " | ".join(check_cell(RUNS / "check" / f"issue_{init}" / rule)
                                                for init in CHECK_INITS) + " |")
    REPORT.write_text("\n".join(lines) + "\n")
    print(f"wrote {REPORT.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="benchmark runs with train.seed=SEED (runs/seed<SEED>/)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", default=None, help="'bench', 'check' or 'first_epoch': train only that part")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if not args.report_only:
        work = first_epoch_jobs(args) if args.only == "first_epoch" else jobs(args)
        if args.only == "check":
            work = [j for j in work if "check" in str(j[1])]
        elif args.only == "bench":
            work = [j for j in work if "check" not in str(j[1])]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(lambda job: execute(job, args), work))
    report()


if __name__ == "__main__":
    main()
