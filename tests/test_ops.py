"""The parametric custom ops against independent plain implementations.

LC: the reference op (channels-last strided bmm) against a naive loop, on
random shapes, strides and paddings, forward and both gradients (the naive
loop's gradients come from torch.autograd)."""

import random

import pytest
import torch
import torch.nn.functional as F

import bpcompile.nn.ops  # noqa: F401  (registers torch.ops.bpcompile)
from plain_nets import lc_naive, lc_unfold

DT = torch.float64


def _lc_case(seed):
    rng = random.Random(seed)
    kernel = rng.randint(1, 4)
    stride = rng.randint(1, 3)
    padding = rng.randint(0, kernel - 1) if kernel > 1 else 0
    height, width = rng.randint(kernel, 9), rng.randint(kernel, 9)
    batch, channels, out_ch = rng.randint(1, 4), rng.randint(1, 3), rng.randint(1, 4)
    h_out = (height + 2 * padding - kernel) // stride + 1
    w_out = (width + 2 * padding - kernel) // stride + 1
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, height, width, dtype=DT, generator=g)
    w = torch.randn(h_out * w_out, out_ch, kernel * kernel * channels, dtype=DT, generator=g)
    b = torch.randn(out_ch, h_out, w_out, dtype=DT, generator=g) if rng.random() < 0.7 else None
    return x, w, b, kernel, stride, padding


@pytest.mark.parametrize("seed", range(12))
def test_lc_forward_and_gradients_match_naive_loop(seed):
    x, w, b, kernel, stride, padding = _lc_case(seed)
    leaves = [t.clone().requires_grad_(True) for t in (x, w) + ((b,) if b is not None else ())]
    ours = torch.ops.bpcompile.locally_connected(leaves[0], leaves[1], leaves[2] if b is not None else None,
                                                 kernel, stride, padding)
    naive_leaves = [t.clone().requires_grad_(True) for t in leaves]
    naive = lc_naive(naive_leaves[0], naive_leaves[1], naive_leaves[2] if b is not None else None,
                     kernel, stride, padding)
    torch.testing.assert_close(ours, naive, rtol=1e-10, atol=1e-10)
    grad_out = torch.randn_like(naive)
    for a, e in zip(torch.autograd.grad(ours, leaves, grad_out), torch.autograd.grad(naive, naive_leaves, grad_out)):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)


def test_lc_matches_unfold_einsum_in_fp32_on_a_paper_shape():
    # MNIST's second LC layer: 32x14x14 -> 64x7x7, kernel 3, stride 2, padding 1
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 32, 14, 14, generator=g)
    w = torch.randn(49, 64, 288, generator=g) * 0.05
    b = torch.randn(64, 7, 7, generator=g)
    torch.testing.assert_close(torch.ops.bpcompile.locally_connected(x, w, b, 3, 2, 1), lc_unfold(x, w, b, 3, 2, 1),
                               rtol=1e-5, atol=1e-5)


def test_lc_grad_input_reads_the_tensor_it_is_given():
    """grad_input is a pure function of (grad_out, weight): passing B gives B^T delta, the FA product."""
    x, w, _, kernel, stride, padding = _lc_case(3)
    feedback = torch.randn_like(w)
    grad_out = torch.randn(x.shape[0], w.shape[1], *lc_unfold(x, w, None, kernel, stride, padding).shape[2:], dtype=DT)
    ours = torch.ops.bpcompile.locally_connected_grad_input(grad_out, feedback, x.shape[2], x.shape[3],
                                                           kernel, stride, padding)
    h = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(lc_unfold(h, feedback, None, kernel, stride, padding), h, grad_out)
    torch.testing.assert_close(ours, expected)


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 1), (2, 2)])
def test_conv_op_matches_torch(stride, padding):
    g = torch.Generator().manual_seed(stride * 10 + padding)
    x = torch.randn(3, 2, 9, 8, dtype=DT, generator=g, requires_grad=True)
    w = torch.randn(4, 2, 3, 3, dtype=DT, generator=g, requires_grad=True)
    b = torch.randn(4, dtype=DT, generator=g, requires_grad=True)
    ours = torch.ops.bpcompile.conv2d(x, w, b, stride, padding)
    expected = F.conv2d(x, w, b, stride=stride, padding=padding)
    torch.testing.assert_close(ours, expected)
    grad_out = torch.randn_like(expected)
    for a, e in zip(torch.autograd.grad(ours, (x, w, b), grad_out), torch.autograd.grad(expected, (x, w, b), grad_out)):
        torch.testing.assert_close(a, e)


def test_dense_op_matches_torch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 7, dtype=DT, generator=g, requires_grad=True)
    w = torch.randn(3, 7, dtype=DT, generator=g, requires_grad=True)
    b = torch.randn(3, dtype=DT, generator=g, requires_grad=True)
    ours = torch.ops.bpcompile.dense(x, w, b)
    expected = x @ w.t() + b
    torch.testing.assert_close(ours, expected)
    grad_out = torch.randn_like(expected)
    for a, e in zip(torch.autograd.grad(ours, (x, w, b), grad_out), torch.autograd.grad(expected, (x, w, b), grad_out)):
        torch.testing.assert_close(a, e)
