"""Triton kernel for the feedback product of the dense layers, fused with the activation's derivative.

A feedback rule sends a dense layer's input the error (g @ B) * f'(.), where g (M, K) is what arrives (FA, sign
symmetry, weight mirror, Kolen-Pollack: the error at the layer's output, B (K, N) in W's layout (out, in); DFA:
the output error e, B (classes, N)) and f' is the derivative of the activation below, read from its saved
output. Unfused that is a matmul writing (M, N), then an elementwise pass reading it back; here the derivative
is applied to the accumulator before the one store.

* `feedback_product(g, b, saved, activation, sign=False, scale=1.0)`:
      out = (g @ B) * f'(saved)    with B = b, or sign(b) * scale when sign=True (sign symmetry: W's sign taken
                                   on the fly, no stored copy)
  activation: 'tanh' (saved = tanh output y, f' = 1 - y^2), 'sigmoid' (y, f' = y (1 - y)), 'relu' (saved = the
  relu output or input, f' = [saved > 0]), 'identity' (no derivative: the matmul alone).

`feedback_product_reference` is the same in plain PyTorch (the unfused form the graph runs without this
kernel). Products accumulate in fp32 (TF32 when torch.backends.cuda.matmul.allow_tf32 is set); the output has
g's dtype. One program per (BLOCK_M x BLOCK_N) output tile, a K loop of tl.dot, as the Triton matmul tutorial.
Tiles (autotuned on a GPU, one fixed under the interpreter): kernels/tiling.py.
Tests: tests/test_kernels_feedback.py; benchmark: benchmarks/feedback.py. This module imports nothing of
bpcompile."""

import torch
import triton
import triton.language as tl

from .tiling import matmul_tiled

ACTIVATIONS = {"identity": 0, "tanh": 1, "sigmoid": 2, "relu": 3}


def feedback_product_reference(g, b, saved, activation, sign=False, scale=1.0):
    weight = torch.sign(b) * scale if sign else b
    out = g @ weight
    if activation == "tanh":
        return out * (1 - saved * saved)
    if activation == "sigmoid":
        return out * saved * (1 - saved)
    if activation == "relu":
        return torch.where(saved > 0, out, torch.zeros_like(out))
    return out


@triton.jit
def _feedback_kernel(
    g_ptr, b_ptr, s_ptr, out_ptr,
    M, N, K, scale,
    sgm, sgk, sbk, sbn, ssm, ssn,
    ACTIVATION: tl.constexpr, SIGN: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        g = tl.load(g_ptr + offs_m[:, None] * sgm + offs_k[None, :] * sgk,
                    mask=(offs_m[:, None] < M) & (offs_k[None, :] < K), other=0.0)
        b = tl.load(b_ptr + offs_k[:, None] * sbk + offs_n[None, :] * sbn,
                    mask=(offs_k[:, None] < K) & (offs_n[None, :] < N), other=0.0)
        if SIGN:   # sign(b) in b's dtype: +1, -1, or 0 where b is 0
            b = tl.where(b > 0, 1.0, tl.where(b < 0, -1.0, 0.0)).to(g.dtype)
        acc = tl.dot(g, b, acc, input_precision=INPUT_PRECISION)
    if SIGN:
        acc = acc * scale
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    if ACTIVATION != 0:   # the derivative of the activation below, from its saved value
        s = tl.load(s_ptr + offs_m[:, None] * ssm + offs_n[None, :] * ssn, mask=mask, other=0.0).to(tl.float32)
        if ACTIVATION == 1:
            acc = acc * (1.0 - s * s)
        elif ACTIVATION == 2:
            acc = acc * s * (1.0 - s)
        else:
            acc = tl.where(s > 0, acc, 0.0)
    tl.store(out_ptr + offs_m[:, None] * N + offs_n[None, :], acc.to(out_ptr.dtype.element_ty), mask=mask)


_kernel, _FIXED = matmul_tiled(_feedback_kernel)


def feedback_product(g, b, saved, activation, sign=False, scale=1.0):
    """(g @ B) * f'(saved) in one kernel; see the module docstring. g (M, K), b (K, N), saved (M, N) or None for
    'identity'."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, not {activation!r}")
    m, k = g.shape
    k_b, n = b.shape
    assert k == k_b, f"g {tuple(g.shape)} and b {tuple(b.shape)} do not chain"
    code = ACTIVATIONS[activation]
    if code:
        assert saved.shape == (m, n), f"saved {tuple(saved.shape)} is not the output's shape {(m, n)}"
    b = b.to(g.dtype)
    out = torch.empty(m, n, device=g.device, dtype=g.dtype)
    saved_arg = saved if code else out      # any pointer when no derivative is read
    precision = "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"

    def grid(meta):
        return (triton.cdiv(m, meta["BLOCK_M"]), triton.cdiv(n, meta["BLOCK_N"]))

    _kernel[grid](
        g, b, saved_arg, out, m, n, k, float(scale),
        *g.stride(), *b.stride(), *saved_arg.stride(),
        ACTIVATION=code, SIGN=bool(sign), INPUT_PRECISION=precision, **_FIXED,
    )
    return out
