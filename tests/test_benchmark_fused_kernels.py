"""The fused-kernel benchmarks' CPU smoke path (benchmarks/feedback.py, benchmarks/target.py): the unfused form and
the Triton kernel (interpreter) agree with float64 and the summary is computed."""

import pytest

from benchmark_scripts import load_benchmark

pytest.importorskip("triton")


@pytest.mark.parametrize("script, cases", [("feedback", ("mnist_fc_fa", "mnist_fc_dfa")),
                                           ("target", ("mnist_fc_dtp", "mnist_fc_sdtp_label"))])
def test_fused_kernel_benchmark_quick_cpu(script, cases, tmp_path):
    out = tmp_path / f"{script}_cpu.json"
    result = load_benchmark(script).main(["--device", "cpu", "--quick", "--impls", "unfused,triton", "--out", str(out)])
    rows = result["rows"]
    assert {(r["case"], r["impl"]) for r in rows} == {(case, impl) for case in cases for impl in ("unfused", "triton")}
    assert all(r["check"] == "ok" and r["ms"] > 0 for r in rows), rows
    assert all("speedup_vs_unfused" in r for r in rows if r["impl"] == "triton")
    assert result["environment"]["torch"] and out.exists()
