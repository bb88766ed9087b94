"""Akrout et al.'s released MNIST code, configured in bpcompile (specs/akrout/), beside their logged runs.

    python results/akrout_mnist/run.py --epochs 400 --jobs 2   # train what is missing, then write README.md
    python results/akrout_mnist/run.py --report-only

Trains specs/akrout/mnist_fc_<rule>_code.json (784-500-10 sigmoid net, sigmoid cross-entropy, plain SGD, batch
128; weight mirror as their FCNN_WM.py mirrors) into runs/<spec>/ and compares the test error, the W/B angle of
the 500 -> 10 layer (the only B an error crosses) and the delta angle at the hidden layer with their
experiments/mnist/<rule>-V0/results.json (results/reference/akrout_code_mnist.json). Our delta angle is the mean
over 256 probe examples against the true BP delta; theirs is training sample 0 against a one-step BP delta (the
same thing for one hidden layer, up to the example)."""

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RUNS = HERE / "runs"
REFERENCE = json.loads((ROOT / "results" / "reference" / "akrout_code_mnist.json").read_text())
RULES = ("bp", "fa", "wm", "kp")


def train(rule: str, epochs: int, data_dir: str) -> None:
    spec = f"mnist_fc_{rule}_code"
    out = RUNS / spec
    try:
        if json.loads((out / "summary.json").read_text()).get("epochs") == epochs:
            print(f"kept {out.relative_to(ROOT)}", flush=True)
            return
    except (OSError, json.JSONDecodeError):
        pass
    cmd = [sys.executable, "-m", "bpcompile", "run", str(ROOT / "specs" / "akrout" / f"{spec}.json"), "--set",
           f"train.epochs={epochs}", "--set", "train.num_threads=1", "--data-dir", data_dir, "--device", "cpu",
           "--out", str(out), "--overwrite", "--no-progress"]
    print(" ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=False)
    (out / "checkpoint.pt").unlink(missing_ok=True)


def rows(rule: str) -> dict:
    path = RUNS / f"mnist_fc_{rule}_code" / "metrics.jsonl"
    try:
        return {r["epoch"]: r for r in map(json.loads, path.read_text().splitlines()) if r.get("epoch")}
    except OSError:
        return {}


def cell(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def report() -> None:
    lines = ["# Akrout et al.'s released MNIST code, configured in bpcompile", "",
             "Specs: `specs/akrout/mnist_fc_<rule>_code.json` (`bpcompile/spec/akrout.py::code_experiment`; the "
             "departures are rows P3 and G6-G8 of docs/DEVIATIONS.md). Theirs: "
             f"{REFERENCE['source']} Ours: seed 0, full MNIST, a 2-core CPU, one thread. Regenerate: "
             "`python results/akrout_mnist/run.py --report-only`; retrain: `python results/akrout_mnist/run.py "
             "--epochs 400 --jobs 2`.", "",
             "Each cell: ours / theirs. Test error %, the 500 -> 10 layer's W/B angle and the hidden layer's delta "
             "angle (degrees).", "",
             "| rule | epoch | test error | W/B angle | delta angle |", "|---|---|---|---|---|"]
    for rule in RULES:
        ours = rows(rule)
        for epoch, theirs in REFERENCE["rules"][rule].items():
            row = ours.get(int(epoch))
            if row is None:
                continue
            layers = row.get("layers", {})
            weight = layers.get("out", {}).get("feedback_angle")
            delta = layers.get("fc1", {}).get("delta_angle")
            lines.append(f"| {rule} | {epoch} | {cell(row.get('test_error'))} / {cell(theirs['test_error'])} | "
                         + (f"{cell(weight)} / {cell(theirs.get('weight_angle'))} | {cell(delta)} / "
                            f"{cell(theirs.get('delta_angle'))} |" if rule != "bp" else "– | – |"))
    (HERE / "README.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {(HERE / 'README.md').relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if not args.report_only:
        rules = [r for r in RULES if args.only is None or r in args.only]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(lambda rule: train(rule, args.epochs, args.data_dir), rules))
    report()


if __name__ == "__main__":
    main()
