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


def test_goals_judge_the_fastest_triton_impl_of_each_case():
    """The goals read the fastest of the Triton rows (the kernel 'auto' lowering would pick among them) and name
    it; speedups are computed for every Triton impl."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import lc
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))

    def row(impl, total_ms):
        return {"layer": "cifar_lc1", "batch": 128, "impl": impl, "total_ms": total_ms, "pct_roofline": 70.0,
                "peak_total_mb": None, "weights_activations_mb": 1.0}

    rows = [row("unfold_einsum", 5.0), row("reference", 2.0), row("compile", 3.0), row("triton", 1.5),
            row("triton_cells", 0.9), row("triton_cl", None)]
    lc.add_speedups(rows)
    assert rows[3]["speedup_vs_reference"] == 2.0 / 1.5 and rows[4]["speedup_vs_unfold_einsum"] == 5.0 / 0.9
    (case,) = lc.goals(rows)["cases"]
    assert case["impl"] == "triton_cells"
    assert case["speedup_unfold_einsum_5x"] and case["speedup_reference_2x"] and case["speedup_compile_2x"]
    rows[4]["total_ms"] = 1.8          # now plain triton is the fastest, and misses the 2x over the reference
    lc.add_speedups(rows)
    (case,) = lc.goals(rows)["cases"]
    assert case["impl"] == "triton" and case["speedup_reference_2x"] is False
