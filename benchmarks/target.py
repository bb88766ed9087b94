"""The fused difference target (kernels/target.py) against its unfused PyTorch form and torch.compile of it.

target_below = h_below + f(t @ V + c) - f(h @ V + c), at the dense shapes of Bartunov et al.'s nets where the
target propagation rules trace it (the pattern lowering fuses): DTP's propagation between hidden layers (K = N =
the hidden width), SDTP's label target through the top inverse g_L (K = 10 classes), AO-SDTP's (K = classes +
auxiliary units: the shipped MNIST spec's 64, the paper's CIFAR 512). Batches 32, 128, 256.

  unfused   two torch.mm, two bias adds, two activations, an add and a subtract: what the graph runs today
  compile   torch.compile of the unfused function
  triton    bpcompile.kernels.target.difference_target

Per (case, batch, impl): median ms (triton.testing.do_bench on CUDA), GB/s over the minimum traffic (read
h_below, t, h, V, c; write out), a check against float64 (rtol 1e-3 fp32, 2e-2 tf32); on triton rows the speedup
over each baseline. Goal (issue 18): triton at least 2x the unfused form at every case.

    python benchmarks/target.py                            # on cuda, fp32
    python benchmarks/target.py --precision tf32
    python benchmarks/target.py --device cpu --quick --impls unfused   # CPU smoke test

Writes benchmarks/results/target_<device>.json (target_<device>_tf32.json with --precision tf32)."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fused_kernel import FusedKernel, main as benchmark_main  # noqa: E402

# name: (K = units of the layer above (the target's), N = units of the layer below, activation below)
CASES = {
    "mnist_fc_dtp": (256, 256, "tanh"),          # Bartunov MNIST FC: 5 x 256 tanh, hidden-to-hidden correction
    "mnist_fc_sdtp_label": (10, 256, "tanh"),    # SDTP's label target through g_L
    "mnist_fc_ao_sdtp_label": (74, 256, "tanh"),  # AO-SDTP: 10 classes + the shipped 64 auxiliary units
    "cifar_fc_dtp": (1024, 1024, "tanh"),        # CIFAR FC: 3 x 1024 tanh (and the LC nets' FC1024 head)
    "cifar_fc_sdtp_label": (10, 1024, "tanh"),
    "cifar_ao_sdtp_label": (522, 1024, "tanh"),  # the paper's CIFAR AO-SDTP: 512 auxiliary units
}
QUICK = ["mnist_fc_dtp", "mnist_fc_sdtp_label"]
ACTIVATION = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}


def unfused(h_below, t, h, v, c, activation):
    f = ACTIVATION[activation]
    return (h_below + f(torch.mm(t, v) + c)) - f(torch.mm(h, v) + c)


def problem(case: str, batch: int, device: torch.device, seed: int = 0):
    k, n, activation = CASES[case]
    gen = torch.Generator(device="cpu").manual_seed(seed)
    h = torch.tanh(torch.randn(batch, k, generator=gen))
    t = h + 0.1 * torch.randn(batch, k, generator=gen)
    v = torch.randn(k, n, generator=gen) / k ** 0.5
    c = torch.randn(n, generator=gen) * 0.1
    h_below = torch.tanh(torch.randn(batch, n, generator=gen))
    return (*(x.to(device) for x in (h_below, t, h, v, c)), activation)


def traffic(inputs) -> int:
    h_below, t, h, v, c = inputs[:5]
    return 4 * (2 * h_below.numel() + t.numel() + h.numel() + v.numel() + c.numel())   # reads, and out


def load_kernel():
    from bpcompile.kernels.target import difference_target
    return difference_target


KERNEL = FusedKernel("target", CASES, QUICK, unfused, problem, traffic, load_kernel)


def main(argv=None) -> dict:
    return benchmark_main(KERNEL, argv, __doc__)


if __name__ == "__main__":
    main()
