"""The Triton LC kernels against the plain-PyTorch reference ops, on the CPU through the Triton interpreter
(TRITON_INTERPRET=1 is set in conftest.py before triton is imported). Shapes stay small: the interpreter runs
each program in Python."""

import random

import pytest
import torch

pytest.importorskip("triton")

from bpcompile.compiler import compile_experiment  # noqa: E402
from bpcompile.kernels.lc import lc_forward, lc_grad_input, lc_grad_weight  # noqa: E402
from bpcompile.nn.ops.locally_connected import (  # noqa: E402
    lc_forward_reference, lc_grad_input_reference, lc_grad_weight_reference,
)
from bpcompile.spec import FA, BP, KolenPollack, SignSymmetry  # noqa: E402
from kernel_device import cpu_only, to_device  # noqa: E402
from random_nets import batch, make_spec, run_graph  # noqa: E402


def case(seed):
    rng = random.Random(seed)
    kernel = rng.choice([1, 2, 3, 4])
    stride = rng.randint(1, 3)
    padding = rng.randint(0, kernel // 2)
    height, width = rng.randint(kernel, 8), rng.randint(kernel, 8)
    batch_size, channels, out_ch = rng.randint(1, 5), rng.randint(1, 3), rng.randint(1, 6)
    h_out = (height + 2 * padding - kernel) // stride + 1
    w_out = (width + 2 * padding - kernel) // stride + 1
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, channels, height, width, generator=g)
    w = torch.randn(h_out * w_out, out_ch, kernel * kernel * channels, generator=g)
    b = torch.randn(out_ch, h_out, w_out, generator=g) if rng.random() < 0.7 else None
    grad_out = torch.randn(batch_size, out_ch, h_out, w_out, generator=g)
    return (*to_device(x, w, b, grad_out), kernel, stride, padding)


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", range(8))
def test_kernels_match_reference_ops(seed):
    x, w, b, grad_out, kernel, stride, padding = case(seed)
    close(lc_forward(x, w, b, kernel, stride, padding), lc_forward_reference(x, w, b, kernel, stride, padding))
    close(lc_grad_weight(grad_out, x, kernel, stride, padding),
          lc_grad_weight_reference(grad_out, x, kernel, stride, padding))
    h, wd = x.shape[2:]
    close(lc_grad_input(grad_out, w, h, wd, kernel, stride, padding),
          lc_grad_input_reference(grad_out, w, h, wd, kernel, stride, padding))


@pytest.mark.parametrize("seed", range(3))
def test_grad_input_takes_any_weight_source(seed):
    x, w, _, grad_out, kernel, stride, padding = case(100 + seed)
    h, wd = x.shape[2:]
    feedback = torch.randn_like(w)                                   # FA / KP / WM: a B of W's layout
    close(lc_grad_input(grad_out, feedback, h, wd, kernel, stride, padding),
          lc_grad_input_reference(grad_out, feedback, h, wd, kernel, stride, padding))
    w_with_zeros = w.clone()
    w_with_zeros[..., ::3] = 0.0                                     # sign(0) = 0
    close(lc_grad_input(grad_out, w_with_zeros, h, wd, kernel, stride, padding, sign_weight=True),
          lc_grad_input_reference(grad_out, torch.sign(w_with_zeros), h, wd, kernel, stride, padding))


def test_non_contiguous_inputs():
    x, w, b, grad_out, kernel, stride, padding = case(7)
    def strided(t):  # the same values behind a non-unit innermost stride
        return torch.stack([t, torch.zeros_like(t)], dim=-1)[..., 0]

    x_nc, w_nc, g_nc = strided(x), strided(w), strided(grad_out)
    assert not (x_nc.is_contiguous() or w_nc.is_contiguous() or g_nc.is_contiguous())
    h, wd = x.shape[2:]
    close(lc_forward(x_nc, w_nc, b, kernel, stride, padding), lc_forward_reference(x, w, b, kernel, stride, padding))
    close(lc_grad_weight(g_nc, x_nc, kernel, stride, padding), lc_grad_weight_reference(grad_out, x, kernel, stride, padding))
    close(lc_grad_input(g_nc, w_nc, h, wd, kernel, stride, padding),
          lc_grad_input_reference(grad_out, w, h, wd, kernel, stride, padding))


def test_a_paper_shape_with_ragged_blocks():
    # MNIST's first LC layer at batch 3: K = 9 and O = 32 against 32-wide blocks, 1 input channel
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 28, 28, generator=g)
    w = torch.randn(196, 32, 9, generator=g)
    b = torch.randn(32, 14, 14, generator=g)
    x, w, b = to_device(x, w, b)
    close(lc_forward(x, w, b, 3, 2, 1), lc_forward_reference(x, w, b, 3, 2, 1))


@cpu_only
@pytest.mark.parametrize("rule", [BP(), FA(), SignSymmetry(), KolenPollack()], ids=["bp", "fa", "ss", "kp"])
def test_programs_lowered_to_triton_compute_the_reference_updates(rule):
    # a net with two LC layers, so that an LC input gradient exists (the first layer's is never computed)
    seed = next(s for s in range(100) if sum(layer[0] == "lc" for layer in make_spec(s, "lc", rule)[1]) >= 2)
    spec, plain, shape, classes = make_spec(seed, "lc", rule)
    reference = compile_experiment(spec)
    triton_program = compile_experiment(spec, prefer=("triton", "reference"))
    impls = {n.meta.get("bpcompile_impl") for n in triton_program.train_graph.graph.nodes
             if n.meta.get("bpcompile_layer", "").startswith("lc")}
    assert impls <= {"triton", "triton (sign fused)"} and impls
    if rule.name == "sign_symmetry":
        assert "triton (sign fused)" in impls
        for node in triton_program.train_graph.graph.nodes:   # no sign copy of an LC weight is made
            assert not (node.meta.get("bpcompile_role") == "sign_feedback" and node.meta["bpcompile_layer"].startswith("lc"))
    x, y = batch(shape, classes, seed)
    expected, actual = run_graph(reference, x, y), run_graph(triton_program, x, y)
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, rtol=1e-4, atol=1e-5)
