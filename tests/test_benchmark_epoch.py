"""benchmarks/epoch.py's summary: medians over repeats, ratios paired by repeat against BP under 'fx' and against
the same rule under 'fx', an alternating rule's two passes each against BP's one phase; and a tiny end-to-end run
under both backends."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


def _run(rule, backend, repeat, seconds, first=(0.1,)):
    phases = ["train"] if len(seconds) == 1 else ["inverse", "forward"]
    return {"net": "n", "rule": rule, "backend": backend, "repeat": repeat, "source": "s", "step_seconds": list(seconds),
            "first_step_seconds": list(first) * len(seconds), "phases": phases, "peak_memory_bytes": 1}


def test_summary_pairs_ratios_by_repeat():
    epoch = load_benchmark("epoch")
    runs = [_run("bp", "fx", 0, [2.0]), _run("bp", "inductor", 0, [3.0], first=(5.0,)),
            _run("bp", "fx", 1, [4.0]), _run("bp", "inductor", 1, [4.4], first=(7.0,)),
            _run("dtp", "fx", 0, [3.0, 4.0]), _run("dtp", "inductor", 0, [6.0, 6.0], first=(9.0,)),
            _run("dtp", "fx", 1, [6.0, 8.0]), _run("dtp", "inductor", 1, [6.0, 12.0], first=(9.0,))]
    rows = {(r["rule"], r["backend"]): r for r in epoch.summarise(runs)}
    assert rows["bp", "fx"]["vs_bp"] == [1.0] and rows["bp", "fx"]["vs_fx"] == [1.0]
    assert rows["bp", "inductor"]["vs_fx"] == [pytest.approx((1.5 + 1.1) / 2)]     # median of the paired ratios
    assert rows["bp", "inductor"]["first_step_seconds"] == [6.0]
    assert rows["dtp", "fx"]["vs_bp"] == [1.5, 2.0]                                # each pass against BP's epoch
    assert rows["dtp", "inductor"]["vs_fx"] == [pytest.approx(1.5), pytest.approx(1.5)]
    assert rows["dtp", "inductor"]["vs_bp"] == [pytest.approx((3.0 + 1.5) / 2), pytest.approx((3.0 + 3.0) / 2)]
    assert rows["dtp", "inductor"]["seconds"] == [6.0, 9.0]


def test_epoch_benchmark_runs_both_backends(tmp_path):
    out = tmp_path / "backend.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "epoch.py"), "--nets", "mnist_fc", "--rules", "bp,fa",
                    "--backends", "fx,inductor", "--steps", "3", "--repeats", "1", "--threads", "1", "--out", str(out)],
                   cwd=ROOT, check=True, timeout=600, capture_output=True, text=True)
    result = json.loads(out.read_text())
    assert result["backends"] == ["fx", "inductor"]
    assert {(r["rule"], r["backend"]) for r in result["rows"]} == {
        (rule, backend) for rule in ("bp", "fa") for backend in ("fx", "inductor")}
    for row in result["rows"]:
        assert row["seconds"][0] > 0 and row["vs_fx"] is not None, row
