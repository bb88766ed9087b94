"""Every MNIST cell of Bartunov et al. 2018's Table 1, trained from its shipped spec (Table 5's settings) on the
full official MNIST, and the report next to the paper's numbers.

    python results/bartunov_mnist/run.py --data-dir ../shared/data [--fc-epochs 30] [--lc-epochs 5] [--only SPEC...]
    bpcompile report results/bartunov_mnist/runs --out results/bartunov_mnist.md \\
        --reference results/reference/bartunov_table1.json          # the report alone, from the committed runs

Each cell trains into results/bartunov_mnist/runs/<spec>/ (spec.json, metrics.jsonl, summary.json; the
checkpoints stay out of git). --reuse-lc-tp copies the LC target-propagation runs of
results/target_propagation/runs (the same shipped specs and seed) instead of training them again: on a 2-core CPU
an LC TP epoch takes 30-90 s."""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RUNS = HERE / "runs"
GRADIENT = ("bp", "fa", "dfa")
TARGET = ("dtp", "dtp_parallel", "sdtp", "sdtp_parallel", "ao_sdtp", "ao_sdtp_parallel")


def cells(fc_epochs: int, lc_epochs: int):
    """(spec name, epochs) of every MNIST cell of Table 1."""
    for rule in GRADIENT + TARGET:
        yield f"mnist_fc_{rule}", fc_epochs
    for rule in GRADIENT + TARGET:
        yield f"mnist_lc_{rule}", lc_epochs
    yield "mnist_conv_bp", lc_epochs


def train(spec: str, epochs: int, data_dir: str, device: str, threads: int | None) -> None:
    cmd = [sys.executable, "-m", "bpcompile", "run", str(ROOT / "specs" / f"{spec}.json"), "--set",
           f"train.epochs={epochs}", "--data-dir", data_dir, "--device", device, "--out", str(RUNS / spec),
           "--overwrite", "--no-progress"] + (["--set", f"train.num_threads={threads}"] if threads else [])
    print(" ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=False)   # a diverged run (exit 3) still leaves its metrics and summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--fc-epochs", type=int, default=30)
    parser.add_argument("--lc-epochs", type=int, default=5)
    parser.add_argument("--reuse-lc-tp", action="store_true",
                        help="copy results/target_propagation's LC TP runs instead of training them")
    parser.add_argument("--only", nargs="*", default=None, help="train only these specs")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per run (train.num_threads)")
    parser.add_argument("--no-report", action="store_true", help="train only; write the report later")
    args = parser.parse_args()
    for spec, epochs in cells(args.fc_epochs, args.lc_epochs):
        if args.only is not None and spec not in args.only:
            continue
        if args.reuse_lc_tp and spec.startswith("mnist_lc_") and spec.removeprefix("mnist_lc_") in TARGET:
            source = ROOT / "results" / "target_propagation" / "runs" / spec
            shutil.rmtree(RUNS / spec, ignore_errors=True)
            shutil.copytree(source, RUNS / spec)
            print(f"reused {source.relative_to(ROOT)}", flush=True)
            continue
        train(spec, epochs, args.data_dir, args.device, args.threads)
    if args.no_report:
        return
    report = [sys.executable, "-m", "bpcompile", "report", str(RUNS), "--out", str(HERE.parent / "bartunov_mnist.md"),
              "--reference", str(ROOT / "results" / "reference" / "bartunov_table1.json")]
    subprocess.run(report, check=True)


if __name__ == "__main__":
    main()
