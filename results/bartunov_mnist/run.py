"""Every MNIST cell of Bartunov et al. 2018's Table 1, trained from its shipped spec on the full official MNIST,
and the report next to the paper's numbers.

    python results/bartunov_mnist/run.py --data-dir ../shared/data --seeds 0,1,2 --jobs 2   # train, then report
    python results/bartunov_mnist/run.py --report-only          # results/bartunov_mnist.md from the committed runs

Each (cell, seed) trains into results/bartunov_mnist/runs/<spec>/seed_<s>/ (spec.json, metrics.jsonl,
summary.json; checkpoints stay out of git) with `bpcompile run`; --jobs runs that many at once, one CPU thread
each. A run that already finished with the asked-for epochs is kept, so an interrupted call continues.

LC cells and the BP ConvNet train the first seed only unless --lc-seeds says otherwise, 20 epochs (--lc-epochs;
--stability-epochs for the SDTP and AO-SDTP LC cells, issue 13's stability check). The committed stability runs
of seeds 1 and 2 come from

    python results/bartunov_mnist/run.py --only mnist_lc_sdtp mnist_lc_sdtp_parallel mnist_lc_ao_sdtp \
        mnist_lc_ao_sdtp_parallel mnist_lc_dtp mnist_lc_dtp_parallel --lc-seeds 0,1,2 --no-report

On a GPU, results/bartunov_mnist/gpu.sh trains every LC cell at once into another folder (--runs), in chunks of
epochs resumed from their checkpoints (--chunk-epochs) until the epochs or a deadline (--deadline); a cell whose
model rate decays by a cosine gets the decay's span pinned to the whole run (optimizer.schedule.epochs), so its
chunks train at the rates of one uninterrupted run."""

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))     # bpcompile from this checkout, installed or not (gpu.sh's machine)
from bpcompile.spec.io import load_spec  # noqa: E402  (after the path)
from bpcompile.spec.optim import cosine_decays_over_train_epochs  # noqa: E402
RUNS = HERE / "runs"
REPORT = HERE.parent / "bartunov_mnist.md"
GRADIENT = ("bp", "fa", "dfa")
TARGET = ("dtp", "dtp_parallel", "sdtp", "sdtp_parallel", "ao_sdtp", "ao_sdtp_parallel")
STABILITY = ("sdtp", "sdtp_parallel", "ao_sdtp", "ao_sdtp_parallel")     # LC cells trained --stability-epochs
STARTED = time.monotonic()
TITLE = "Bartunov et al. 2018, Table 1: MNIST"
NOTE = (
    "Every MNIST cell of Bartunov et al. 2018 Table 1, trained from its shipped spec (`specs/<name>.json`: Table 3 "
    "net, Table 5 settings except where docs/DEVIATIONS.md records a change, batch 128) on the full official MNIST "
    "(60k train / 10k test) on a 2-core x86-64 CPU (torch 2.13, float32, one thread per run; no GPU was lent). "
    "FC cells: 100 epochs, seeds 0, 1, 2. LC cells and the "
    "BP ConvNet: as many epochs as the CPU allowed (the epochs column: 20, seed 0; the TP LC cells 20, seeds 0-2, "
    "the SDTP and AO-SDTP ones as the stability check), far from the paper's 500. An epoch of the alternating "
    "schedule is an inverse pass then a forward pass over the same batches (Lee et al.'s code). The paper reports the best test error within 500 epochs of the "
    "best of 60 configurations; the *test error* column here is the final epoch's, and *best-epoch − paper* "
    "compares the best epoch as the paper does. "
    "Retrain: `python results/bartunov_mnist/run.py --data-dir ../shared/data --seeds 0,1,2 --jobs 2`; "
    "regenerate this file from the committed runs: `python results/bartunov_mnist/run.py --report-only`."
)


def cells(fc_epochs: int, lc_epochs: int, stability_epochs: int):
    """(spec name, epochs) of every MNIST cell of Table 1."""
    for rule in GRADIENT + TARGET:
        yield f"mnist_fc_{rule}", fc_epochs
    for rule in GRADIENT + TARGET:
        yield f"mnist_lc_{rule}", stability_epochs if rule in STABILITY else lc_epochs
    yield "mnist_conv_bp", lc_epochs


def say(text: str) -> None:
    """One line of progress from a worker thread: one write, so lines of parallel runs never interleave (print
    writes the text and its newline separately)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def finished(out: Path, epochs: int) -> bool:
    try:
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return summary.get("status") == "finished" and summary.get("epochs") == epochs


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def train(spec: str, seed: int, epochs: int, args) -> None:
    """Train one (cell, seed) to `epochs`: in one go, or with --chunk-epochs in chunks, each resumed from the last
    one's checkpoint (a resumed run computes what an uninterrupted one does), beginning no chunk that the previous
    chunk's duration says would end after --deadline."""
    out = Path(args.runs) / spec / f"seed_{seed}"
    if finished(out, epochs):
        say(f"kept {_shown(out)}")
        return
    chunk = args.chunk_epochs or epochs
    done, last_seconds = 0, None
    for target in [*range(chunk, epochs, chunk), epochs]:
        if finished(out, target) and (out / "checkpoint.pt").exists():
            done = target
            continue
        if args.deadline is not None and last_seconds is not None \
                and time.monotonic() - STARTED + last_seconds > args.deadline:
            say(f"{spec} seed {seed}: stopped after {done} of {epochs} epochs (--deadline {args.deadline:g} s)")
            break
        common = ["--set", f"train.epochs={target}", "--data-dir", args.data_dir, "--device", args.device, "--no-progress"]
        if args.max_steps:
            common += ["--set", f"train.max_steps_per_epoch={args.max_steps}"]
        if done:          # the previous chunk's checkpoint: continue it
            cmd = [sys.executable, "-m", "bpcompile", "run", "--resume", str(out), *common]
        else:
            cmd = [sys.executable, "-m", "bpcompile", "run", str(ROOT / "specs" / f"{spec}.json"),
                   "--set", f"train.seed={seed}", "--set", f"train.num_threads={args.threads}", *common,
                   *_whole_run_spans(spec, epochs, chunked=chunk < epochs), "--out", str(out), "--overwrite"]
        say(" ".join(cmd[2:]))
        started = time.monotonic()
        result = subprocess.run(cmd, check=False, capture_output=True, text=True)   # a diverged run (exit 3) keeps its files
        last_seconds = time.monotonic() - started
        if result.returncode:
            say(f"{spec} seed {seed}: exit {result.returncode}\n{result.stderr[-2000:]}")
            break
        done = target
    (out / "checkpoint.pt").unlink(missing_ok=True)


def _whole_run_spans(spec: str, epochs: int, chunked: bool) -> list:
    """A cosine decay spans train.epochs, which each chunk raises: a chunked run pins its span to the whole run
    (optimizer.schedule.epochs), so the chunks train at the rates one uninterrupted run has."""
    if not chunked:
        return []
    spanning = cosine_decays_over_train_epochs(load_spec(ROOT / "specs" / f"{spec}.json"))
    return [arg for path in spanning for arg in ("--set", f"{path}.epochs={epochs}")]


def report() -> None:
    # paths relative to the repository root, so the report names no machine's folders
    cmd = [sys.executable, "-m", "bpcompile", "report", str(RUNS.relative_to(ROOT)), "--out", str(REPORT.relative_to(ROOT)),
           "--reference", "results/reference/bartunov_table1.json", "--title", TITLE, "--note", NOTE]
    subprocess.run(cmd, check=True, cwd=ROOT)


def _seeds(parser, flag: str, text: str) -> list:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        parser.error(f"{flag}: {text!r} is not a comma-separated list of integer seeds, e.g. 0,1,2")


def _positive(text: str) -> int:
    """argparse type: an integer of at least 1 (a chunk of 0 epochs would never end a run)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fc-epochs", type=_positive, default=100)
    parser.add_argument("--lc-epochs", type=_positive, default=20, help="epochs of the LC cells and the BP ConvNet")
    parser.add_argument("--stability-epochs", type=_positive, default=20, help="epochs of the SDTP and AO-SDTP LC cells")
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the FC cells, comma-separated")
    parser.add_argument("--lc-seeds", default=None, help="seeds of the LC cells and the BP ConvNet (default: the first "
                                                         "of --seeds)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per run (train.num_threads)")
    parser.add_argument("--only", nargs="*", default=None, help="train only these specs")
    parser.add_argument("--runs", default=str(RUNS), help="where the runs go (default results/bartunov_mnist/runs; "
                                                          "the report reads that folder only)")
    parser.add_argument("--chunk-epochs", type=_positive, default=None, help="train in chunks of this many epochs, each "
                                                                      "resumed from the last one's checkpoint")
    parser.add_argument("--deadline", type=float, default=None, help="seconds after the start after which no chunk "
                                                                     "may end (judged by the previous chunk's time)")
    parser.add_argument("--max-steps", type=_positive, default=None, help="train.max_steps_per_epoch (smoke tests)")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--no-report", action="store_true", help="train only")
    args = parser.parse_args()
    if not args.report_only:
        seeds = _seeds(parser, "--seeds", args.seeds)
        lc_seeds = _seeds(parser, "--lc-seeds", args.lc_seeds) if args.lc_seeds is not None else seeds[:1]
        table = list(cells(args.fc_epochs, args.lc_epochs, args.stability_epochs))
        unknown = sorted(set(args.only or ()) - {spec for spec, _ in table})
        if unknown:   # a misspelt name would otherwise train nothing, silently
            parser.error(f"--only: {', '.join(unknown)} is not a Table 1 cell; the cells are "
                         f"{', '.join(spec for spec, _ in table)} (names separated by spaces)")
        work = [(spec, seed, epochs) for spec, epochs in table
                if args.only is None or spec in args.only
                for seed in (seeds if spec.startswith("mnist_fc_") else lc_seeds)]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(lambda job: train(*job, args), work))
    if not args.no_report:
        report()


if __name__ == "__main__":
    main()
