"""The feedback-product benchmark's CPU smoke path: the unfused form and the Triton kernel (interpreter) agree with
float64 and the summary is computed."""

import pytest

from benchmark_scripts import load_benchmark

pytest.importorskip("triton")


def test_feedback_benchmark_quick_cpu(tmp_path):
    result = load_benchmark("feedback").main(["--device", "cpu", "--quick", "--impls", "unfused,triton",
                                              "--out", str(tmp_path / "feedback_cpu.json")])
    rows = result["rows"]
    assert {(r["case"], r["impl"]) for r in rows} == {
        (case, impl) for case in ("mnist_fc_fa", "mnist_fc_dfa") for impl in ("unfused", "triton")}
    assert all(r["check"] == "ok" and r["ms"] > 0 for r in rows), rows
    assert all("speedup_vs_unfused" in r for r in rows if r["impl"] == "triton")
    assert result["environment"]["torch"] and (tmp_path / "feedback_cpu.json").exists()
