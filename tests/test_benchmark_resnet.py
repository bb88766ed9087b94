"""The ResNet throughput benchmark's CPU smoke path runs end to end, and its plain baseline is the same net."""

import json
from collections import Counter

import pytest

from benchmark_scripts import load_benchmark

bench = load_benchmark("resnet_throughput")


def test_resnet_benchmark_tiny_cpu(tmp_path):
    # every bpcompile rule costs a ResNet-18 trace (~15 s here), so the smoke run takes two
    out = tmp_path / "resnet18_cpu.json"
    rc = bench.main(["--device", "cpu", "--stem", "cifar", "--image-size", "16", "--width", "4", "--batch-size", "4",
                     "--steps", "1", "--warmup", "1", "--repeats", "1", "--rules", "bp,kolen_pollack",
                     "--out", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    for key in ("device_name", "torch", "triton", "python", "settings", "roofline", "summary"):
        assert key in result, key
    assert result["torch"] and result["settings"]["precision"] == "fp32"
    assert result["settings"]["channels_last"] is False
    cases = {r["case"]: r for r in result["cases"]}
    assert list(cases) == ["plain", "bp", "kolen_pollack"]
    for row in cases.values():
        assert row["error"] is None, row
        assert row["images_per_s"] > 0 and row["ms_per_step"] > 0 and row["tflops"] > 0, row
        assert row["peak_mem_mb"] is None and row["pct_peak"] is None   # CPU: no CUDA memory, no peak
    assert cases["bp"]["overhead_vs_bp_pct"] == 0.0
    assert cases["plain"]["overhead_vs_bp_pct"] is None and cases["plain"]["time_ratio_vs_plain"] == 1.0
    assert result["summary"]["bp_vs_plain_time_ratio"] > 0
    # the bpcompile programs' networks (program.network) have exactly the baseline's parameter count
    assert result["summary"]["param_counts_match"] is True
    assert cases["plain"]["params"] == cases["bp"]["params"] == cases["kolen_pollack"]["params"]
    assert result["roofline"]["train_flops_per_image"] == 3 * result["roofline"]["forward_flops_per_image"] > 0


@pytest.mark.parametrize("depth,stem", [(18, "imagenet"), (18, "cifar"), (50, "imagenet"), (50, "cifar")])
def test_plain_resnet_matches_bpcompile_network(depth, stem):
    """Same parameter count and the same multiset of parameter shapes as the spec's ResNet macro."""
    from bpcompile.nn.build import build_network

    args = bench.parse_args(["--depth", str(depth), "--stem", stem, "--width", "8", "--image-size", "32",
                             "--rules", "bp"])
    args.batch_size = 2
    spec = bench.experiment_spec("bp", args)
    network = build_network(spec.network, (3, 32, 32), bench.NUM_CLASSES, seed=0)
    plain = bench.PlainResNet(depth, stem, 8, bench.NUM_CLASSES)
    assert bench.count_parameters(plain) == bench.count_parameters(network)
    assert Counter(tuple(p.shape) for p in plain.parameters()) == Counter(tuple(p.shape) for p in network.parameters())
    assert Counter(tuple(b.shape) for b in plain.buffers()) == Counter(tuple(b.shape) for b in network.buffers())


def test_flop_count_matches_the_known_resnet_figures():
    # torchvision's published multiply-adds at 224 px: ResNet-18 1.814 G, ResNet-50 4.089 G
    for depth, gmacs in ((18, 1.814), (50, 4.089)):
        macs = bench.forward_macs_per_image(depth, "imagenet", 64, 224)
        assert abs((macs["conv"] + macs["linear"]) / 1e9 - gmacs) < 0.005, (depth, macs)


def test_a_failing_case_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    from bpcompile.errors import NotImplementedYet

    def refuse(rule, args, device):
        raise NotImplementedYet(f"rule {rule!r}: not built for this setting")

    monkeypatch.setattr(bench, "build_bpcompile", refuse)
    out = tmp_path / "failing.json"
    rc = bench.main(["--device", "cpu", "--stem", "cifar", "--image-size", "8", "--width", "2", "--batch-size", "2",
                     "--steps", "1", "--warmup", "0", "--repeats", "1", "--rules", "bp,fa", "--out", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    cases = {r["case"]: r for r in result["cases"]}
    assert cases["plain"]["error"] is None and cases["plain"]["images_per_s"] > 0
    assert cases["bp"]["error"].startswith("NotImplementedYet: rule 'bp'")
    assert result["summary"]["failed_cases"] == ["bp", "fa"]
    assert result["summary"]["bp_vs_plain_time_ratio"] is None
