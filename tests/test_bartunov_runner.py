"""results/bartunov_mnist/run.py: bad arguments fail with argparse's one-line error, and --lc-seeds reaches the
committed LC stability runs (finished runs are kept, so nothing trains here)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "results" / "bartunov_mnist" / "run.py"


def runner(*args):
    return subprocess.run([sys.executable, str(RUNNER), "--no-report", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_misspelt_only_names_fail_instead_of_training_nothing():
    result = runner("--only", "mnist_fc_dtp,mnist_fc_fa")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--only: mnist_fc_dtp,mnist_fc_fa is not a Table 1 cell" in result.stderr


def test_seed_lists_that_are_not_integers_fail():
    for flag in ("--seeds", "--lc-seeds"):
        result = runner(flag, "0,x", "--only", "mnist_lc_sdtp")
        assert result.returncode == 2 and f"{flag}: '0,x' is not a comma-separated list" in result.stderr


def test_lc_seeds_select_the_committed_stability_runs():
    result = runner("--only", "mnist_lc_sdtp", "--lc-seeds", "0,1,2")
    assert result.returncode == 0, result.stderr
    kept = sorted(line.split()[-1] for line in result.stdout.splitlines() if line.startswith("kept "))
    assert kept == [f"results/bartunov_mnist/runs/mnist_lc_sdtp/seed_{s}" for s in range(3)]
    default = runner("--only", "mnist_lc_sdtp")      # without --lc-seeds: the first of --seeds only
    assert [line for line in default.stdout.splitlines() if line.startswith("kept ")] == \
        ["kept results/bartunov_mnist/runs/mnist_lc_sdtp/seed_0"]
