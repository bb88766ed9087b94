"""results/bartunov_mnist/run.py: bad arguments fail with argparse's one-line error, --lc-seeds reaches the
committed LC stability runs (finished runs are kept, so nothing trains there), and chunked training (the GPU
script's) resumes to the same numbers and stops at a deadline (a few 3-step epochs of the LC BP cell)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "results" / "bartunov_mnist" / "run.py"
DATA = str(ROOT.parent / "shared" / "data")


def runner(*args, timeout=120):
    return subprocess.run([sys.executable, str(RUNNER), "--no-report", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def test_misspelt_only_names_fail_instead_of_training_nothing():
    result = runner("--only", "mnist_fc_dtp,mnist_fc_fa")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--only: mnist_fc_dtp,mnist_fc_fa is not a Table 1 cell" in result.stderr


def test_seed_lists_that_are_not_integers_fail():
    for flag in ("--seeds", "--lc-seeds"):
        result = runner(flag, "0,x", "--only", "mnist_lc_sdtp")
        assert result.returncode == 2 and f"{flag}: '0,x' is not a comma-separated list" in result.stderr


STABILITY_CELLS = ("mnist_lc_ao_sdtp", "mnist_lc_ao_sdtp_parallel", "mnist_lc_sdtp", "mnist_lc_sdtp_parallel")


def test_lc_seeds_select_the_committed_stability_runs():
    """Every SDTP and AO-SDTP LC cell's three committed seeds are finished at --stability-epochs (20), so they are
    kept, not retrained."""
    result = runner("--only", *STABILITY_CELLS, "--lc-seeds", "0,1,2")
    assert result.returncode == 0, result.stderr
    kept = sorted(line.split()[-1] for line in result.stdout.splitlines() if line.startswith("kept "))
    assert kept == [f"results/bartunov_mnist/runs/{cell}/seed_{s}" for cell in STABILITY_CELLS for s in range(3)]
    default = runner("--only", "mnist_lc_sdtp_parallel")      # without --lc-seeds: the first of --seeds only
    assert [line for line in default.stdout.splitlines() if line.startswith("kept ")] == \
        ["kept results/bartunov_mnist/runs/mnist_lc_sdtp_parallel/seed_0"]


def test_the_committed_lc_runs_have_the_runner_s_default_epochs():
    """The LC BP, FA, DFA and DTP cells and the BP ConvNet are committed at --lc-epochs' default (20), so the runner's
    default call keeps them instead of retraining them to another length."""
    cells = ("mnist_lc_bp", "mnist_lc_fa", "mnist_lc_dfa", "mnist_lc_dtp", "mnist_lc_dtp_parallel", "mnist_conv_bp")
    result = runner("--only", *cells)
    assert result.returncode == 0, result.stderr
    kept = sorted(line.split()[-1] for line in result.stdout.splitlines() if line.startswith("kept "))
    assert kept == sorted(f"results/bartunov_mnist/runs/{cell}/seed_0" for cell in cells)


def _metrics(run_dir: Path) -> list:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _numbers(rows: list) -> list:
    return [(r["epoch"], r.get("train_loss"), r.get("test_error")) for r in rows]


def test_chunks_resumed_from_checkpoints_train_what_one_run_does(tmp_path):
    """--chunk-epochs 1: two one-epoch chunks, the second resumed from the first's checkpoint, give the same
    losses and errors as one two-epoch run (3 steps an epoch); the checkpoint is removed at the end."""
    common = ("--data-dir", DATA, "--only", "mnist_lc_bp", "--lc-epochs", "2", "--max-steps", "3", "--jobs", "1")
    plain = runner(*common, "--runs", str(tmp_path / "plain"), timeout=600)
    chunked = runner(*common, "--runs", str(tmp_path / "chunked"), "--chunk-epochs", "1", timeout=600)
    assert plain.returncode == 0 and chunked.returncode == 0, plain.stderr + chunked.stderr
    assert "--resume" in chunked.stdout
    one, two = (tmp_path / name / "mnist_lc_bp" / "seed_0" for name in ("plain", "chunked"))
    assert _numbers(_metrics(two)) == _numbers(_metrics(one)) and len(_metrics(one)) == 3
    assert not (two / "checkpoint.pt").exists()


def test_a_deadline_stops_before_a_chunk_that_would_end_after_it(tmp_path):
    result = runner("--data-dir", DATA, "--only", "mnist_lc_bp", "--lc-epochs", "3", "--max-steps", "2", "--jobs", "1",
                    "--runs", str(tmp_path), "--chunk-epochs", "1", "--deadline", "0", timeout=600)
    assert result.returncode == 0, result.stderr
    assert "mnist_lc_bp seed 0: stopped after 1 of 3 epochs (--deadline 0 s)" in result.stdout
    summary = json.loads((tmp_path / "mnist_lc_bp" / "seed_0" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] == 1


def test_epoch_counts_below_one_fail():
    for flag in ("--chunk-epochs", "--stability-epochs"):
        result = runner(flag, "0", "--only", "mnist_lc_sdtp")
        assert result.returncode == 2 and f"{flag}: '0' is not a whole number of at least 1" in result.stderr


def test_chunks_of_a_cell_with_a_cosine_decay_keep_the_whole_run_s_rates(tmp_path):
    """A cosine decay spans train.epochs, which each chunk raises: chunked runs pin its span to the whole run
    (optimizer.schedule.epochs), so two one-epoch chunks of the SDTP-alternating FC cell train at the rates, and
    to the numbers, of one two-epoch run."""
    common = ("--data-dir", DATA, "--only", "mnist_fc_sdtp", "--fc-epochs", "2", "--max-steps", "3", "--jobs", "1")
    plain = runner(*common, "--runs", str(tmp_path / "plain"), timeout=600)
    chunked = runner(*common, "--runs", str(tmp_path / "chunked"), "--chunk-epochs", "1", timeout=600)
    assert plain.returncode == 0 and chunked.returncode == 0, plain.stderr + chunked.stderr
    assert "optimizer.schedule.epochs=2" in chunked.stdout and "optimizer.schedule.epochs" not in plain.stdout
    one, two = (tmp_path / name / "mnist_fc_sdtp" / "seed_0" for name in ("plain", "chunked"))
    rows = _metrics(one)[1:]
    assert [r["lr"] for r in rows] == [1.81e-4, 1.81e-4 * 0.5]          # epochs 0 and 1 of a 2-epoch cosine
    assert [r["lr"] for r in _metrics(two)[1:]] == [r["lr"] for r in rows]
    assert _numbers(_metrics(two)) == _numbers(_metrics(one))


def test_the_gpu_script_packs_every_run_it_trains(tmp_path):
    """results/bartunov_mnist/gpu.sh as a CPU smoke test (DEVICE=cpu, two cells, one 2-step epoch): one archive
    holding each run's three files, no checkpoint."""
    import os
    import tarfile

    env = {**os.environ, "DEVICE": "cpu", "CELLS": "mnist_lc_bp mnist_lc_fa", "EPOCHS": "1", "CHUNK": "1",
           "MAX_STEPS": "2", "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(ROOT / "results" / "bartunov_mnist" / "gpu.sh"), DATA, str(tmp_path)],
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    with tarfile.open(tmp_path / "lc_runs_cpu.tar.gz") as archive:
        names = sorted(name for name in archive.getnames() if name.count("/") == 3)
        summary = json.load(archive.extractfile("runs_cpu/mnist_lc_fa/seed_0/summary.json"))
    assert names == [f"runs_cpu/{cell}/seed_0/{f}" for cell in ("mnist_lc_bp", "mnist_lc_fa")
                     for f in ("metrics.jsonl", "spec.json", "summary.json")]
    assert summary["status"] == "finished" and summary["epochs"] == 1
    assert "bpcompile run" in (tmp_path / "gpu.log").read_text()
