"""The LC benchmark's CPU smoke path runs end to end and its correctness guard passes."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_lc_benchmark_quick_cpu(tmp_path):
    out = tmp_path / "lc_cpu.json"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "lc.py"), "--device", "cpu", "--quick",
         "--impls", "unfold_einsum,reference", "--out", str(out)],
        cwd=ROOT, check=True, timeout=120, capture_output=True, text=True,
    )
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert {(r["layer"], r["impl"]) for r in rows} == {
        (layer, impl) for layer in ("mnist_lc1", "mnist_lc2") for impl in ("unfold_einsum", "reference")
    }
    for row in rows:
        assert row["check"] == "ok", row
        assert row["fwd_ms"] > 0 and row["bwd_ms"] > 0, row
        assert "error" not in row, row
    assert result["precision"] == "fp32" and "goals" in result
