"""Console output in a pipe or a log file: one line per epoch, a header on one line, top-5 error only where it
means something."""

import json
import subprocess
import sys

from click.testing import CliRunner

from bpcompile.cli import app
from test_cli import synthetic_raw


def test_piped_run_prints_one_line_per_epoch_and_a_one_line_header(tmp_path):
    spec = tmp_path / "syn.json"
    spec.write_text(json.dumps(synthetic_raw(epochs=3)))
    out = tmp_path / ("a_run_directory_name_long_enough_that_the_header_passes_eighty_columns_" + "x" * 40)
    result = subprocess.run([sys.executable, "-m", "bpcompile", "run", str(spec), "--out", str(out), "--device", "cpu"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/3", "2/3", "3/3"], result.stderr
    assert all(line.rstrip().endswith("s") and "test err" in line for line in epochs), epochs
    header = [line for line in lines if line.startswith("syn: rule fa")]
    assert len(header) == 1 and str(out) in header[0], result.stderr
    assert "top-5" not in result.stderr          # 3 classes
    assert "\r" not in result.stderr and "━" not in result.stderr     # no progress bar outside a terminal


def test_top5_error_is_logged_only_with_more_than_ten_classes(tmp_path):
    for classes, logged in ((10, False), (11, True)):
        raw = synthetic_raw(name=f"c{classes}", epochs=1)
        raw["data"]["num_classes"] = classes
        raw["network"]["layers"][-1]["units"] = classes
        spec = tmp_path / f"c{classes}.json"
        spec.write_text(json.dumps(raw))
        out = tmp_path / f"run{classes}"
        result = CliRunner().invoke(app, ["run", str(spec), "--out", str(out), "--no-progress", "--device", "cpu"])
        assert result.exit_code == 0, result.output
        last = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
        assert ("test_top5_error" in last) is logged, (classes, last)
        assert ("top-5" in result.output) is logged
        summary = json.loads((out / "summary.json").read_text())
        assert (summary["final_test_top5_error"] is not None) is logged


def test_top_level_cli_py_is_the_same_command(tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = tmp_path / "syn.json"
    spec.write_text(json.dumps(synthetic_raw()))
    ok = subprocess.run([sys.executable, str(root / "cli.py"), "validate", str(spec)], capture_output=True, text=True,
                        timeout=300)
    assert ok.returncode == 0 and "ok" in ok.stdout + ok.stderr, ok.stderr
    bad = subprocess.run([sys.executable, str(root / "cli.py"), "validate", str(tmp_path / "missing.json")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
