"""The fused feedback product (kernels/feedback.py) against its unfused PyTorch form and torch.compile of it.

(g @ B) * f'(saved) at the dense-layer shapes of the paper's nets where the product feeds an activation's
backward (the pattern lowering fuses): FA / KP / WM / BP hidden layers (B of W's layout), sign symmetry (sign(W)
* s taken inside the kernel), DFA's projection of the output error (K = 10 classes). Batches 32, 128, 256.

  unfused   torch.mm (or sign(W) * s, then mm) and the activation's aten backward: what the graph runs today
  compile   torch.compile of the unfused function
  triton    bpcompile.kernels.feedback.feedback_product

Per (case, batch, impl): median ms (triton.testing.do_bench on CUDA), GB/s over the minimum traffic (read g, B,
saved; write out), a check against float64 (rtol 1e-3 fp32, 2e-2 tf32); on triton rows the speedup over each
baseline. Goal (issue 18): triton at least 2x the unfused form at every case.

    python benchmarks/feedback.py                          # on cuda, fp32
    python benchmarks/feedback.py --precision tf32
    python benchmarks/feedback.py --device cpu --quick --impls unfused   # CPU smoke test

Writes benchmarks/results/feedback_<device>.json (feedback_<device>_tf32.json with --precision tf32)."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fused_kernel import FusedKernel, main as benchmark_main  # noqa: E402

# name: (K = features the error arrives on, N = features of the layer's input, activation below, form)
CASES = {
    "mnist_fc_fa": (256, 256, "tanh", "weight"),           # Bartunov MNIST FC: 5 x 256 tanh
    "mnist_fc_sign": (256, 256, "tanh", "sign"),
    "mnist_fc_dfa": (10, 256, "tanh", "weight"),           # DFA: e (classes) @ B
    "cifar_fc_fa": (1024, 1024, "tanh", "weight"),         # CIFAR FC: 3 x 1024 tanh
    "cifar_fc_dfa": (10, 1024, "tanh", "weight"),
    "lc_head_fa": (10, 1024, "tanh", "weight"),            # the LC nets' FC1024 under the softmax layer
    "akrout_fc_relu": (500, 784, "relu", "weight"),        # a ReLU case (Akrout's MNIST net is 784-500-10)
}
QUICK = ["mnist_fc_fa", "mnist_fc_dfa"]


def unfused(g, b, saved, activation, sign, scale):
    weight = torch.sign(b) * scale if sign else b
    out = torch.mm(g, weight)
    if activation == "tanh":
        return torch.ops.aten.tanh_backward(out, saved)
    if activation == "sigmoid":
        return torch.ops.aten.sigmoid_backward(out, saved)
    return torch.ops.aten.threshold_backward(out, saved, 0)


def problem(case: str, batch: int, device: torch.device, seed: int = 0):
    k, n, activation, form = CASES[case]
    gen = torch.Generator(device="cpu").manual_seed(seed)
    g = torch.randn(batch, k, generator=gen).to(device)
    b = (torch.randn(k, n, generator=gen) / k ** 0.5).to(device)
    pre = torch.randn(batch, n, generator=gen).to(device)
    saved = torch.tanh(pre) if activation == "tanh" else torch.relu(pre)
    return g, b, saved, activation, form == "sign", (1 / k ** 0.5 if form == "sign" else 1.0)


def traffic(inputs) -> int:
    g, b, saved = inputs[:3]
    return 4 * (g.numel() + b.numel() + 2 * saved.numel())        # read g, B, saved; write out


def load_kernel():
    from bpcompile.kernels.feedback import feedback_product
    return feedback_product


KERNEL = FusedKernel("feedback", CASES, QUICK, unfused, problem, traffic, load_kernel)


def main(argv=None) -> dict:
    return benchmark_main(KERNEL, argv, __doc__)


if __name__ == "__main__":
    main()
