"""The memory estimator's liveness walk against hand-counted graphs, and its CPU path end to end."""

import torch

from benchmark_scripts import load_benchmark


def test_liveness_counts_live_tensors_views_free_and_outputs_stay():
    memory = load_benchmark("memory")

    def f(a):
        b = a * 2           # 4 KiB
        c = b.view(-1)      # a view: no bytes, keeps b alive
        d = c + 1           # 4 KiB; b and c die after this
        e = d * 3           # 4 KiB; d dies
        return e.sum()

    a = torch.randn(32, 32)             # 4 KiB
    graph = torch.fx.experimental.proxy_tensor.make_fx(f)(a)
    found = memory.graph_peak_bytes(graph, [a])
    kib = 32 * 32 * 4
    assert found["inputs"] == kib
    assert found["peak"] == kib + 2 * kib      # a, and two of b, d, e at a time (never three)


def test_memory_estimate_of_the_mnist_lc_net(tmp_path):
    result = load_benchmark("memory").main(["--nets", "mnist_lc", "--rules", "bp,fa", "--batch", "64",
                                            "--out", str(tmp_path / "memory_cpu.json")])
    bp, fa = result["rows"]
    weights = 4.2e6 * 4 / 2 ** 30
    assert 0.9 * weights < bp["graph_inputs_gib"] < 1.2 * weights + 0.01
    assert fa["graph_inputs_gib"] > 1.9 * weights             # FA's B doubles the weights
    assert bp["optimizer_state_gib"] > 1.9 * weights          # Adam: two moments per weight
    assert all(r["estimated_total_gib"] > r["estimated_graph_peak_gib"] > r["graph_inputs_gib"] for r in (bp, fa))


def test_measured_path_trains_every_phase_on_the_cpu():
    """--device cuda's training loop (what measure() wraps in CUDA peak statistics), run on the CPU: it builds
    the step and runs both phases of DTP's alternating schedule without error."""
    memory = load_benchmark("memory")
    for rule in ("bp", "dtp"):
        loss = memory.train_steps("mnist_lc", rule, 8, "cpu", steps=1)
        assert loss == loss and loss > 0          # finite and positive: a cross-entropy on random labels
