"""Triton kernel for difference target propagation's target through a dense inverse, fused.

DTP, SDTP and AO-SDTP set the target of a dense layer's input from the target above it (Bartunov et al. 2018,
Algorithm 1; Lee et al. 2015):

    target_below = h_below + g(target_above) - g(h_above),    g(x) = f(x @ V + c)

with V (K, N) in the forward weight's layout (out, in), c (N,) and f the activation of the layer below. Unfused
that is two matmuls, two bias adds, two activations, an add and a subtract: eight kernels and about fourteen
(M, N) passes through memory. Here one program per (BLOCK_M x BLOCK_N) output tile runs both products in one
K loop, loading each tile of V once for the two, and applies c, f and the difference before the one store.

* `difference_target(h_below, target_above, h_above, v, c, activation)`: the formula above; activation 'tanh',
  'sigmoid', 'relu' or 'identity'. The output has h_below's dtype; products accumulate in fp32 (TF32 when
  torch.backends.cuda.matmul.allow_tf32 is set).

`difference_target_reference` is the same in plain PyTorch, in the order the traced graph computes it.
tanh is 2 sigmoid(2x) - 1 inside the kernel (triton.language has sigmoid on every backend and the interpreter;
tanh only through libdevice). Tiles (autotuned on a GPU, one fixed under the interpreter): kernels/tiling.py.
Tests: tests/test_kernels_target.py; benchmark: benchmarks/target.py. This module imports nothing of bpcompile."""

import torch
import triton
import triton.language as tl

from .tiling import matmul_tiled

ACTIVATIONS = {"identity": 0, "tanh": 1, "sigmoid": 2, "relu": 3}
_TORCH = {"identity": lambda x: x, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}


def difference_target_reference(h_below, target_above, h_above, v, c, activation):
    f = _TORCH[activation]
    return (h_below + f(target_above @ v + c)) - f(h_above @ v + c)


@triton.jit
def _activate(x, ACTIVATION: tl.constexpr):
    if ACTIVATION == 1:
        x = 2.0 * tl.sigmoid(2.0 * x) - 1.0
    elif ACTIVATION == 2:
        x = tl.sigmoid(x)
    elif ACTIVATION == 3:
        x = tl.maximum(x, 0.0)
    return x


@triton.jit
def _difference_target_kernel(
    below_ptr, t_ptr, h_ptr, v_ptr, c_ptr, out_ptr,
    M, N, K,
    sbm, sbn, stm, stk, shm, shk, svk, svn, sc,
    ACTIVATION: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc_t = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)     # target_above @ V
    acc_h = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)     # h_above @ V
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        rows = (offs_m[:, None] < M) & (offs_k[None, :] < K)
        t = tl.load(t_ptr + offs_m[:, None] * stm + offs_k[None, :] * stk, mask=rows, other=0.0)
        h = tl.load(h_ptr + offs_m[:, None] * shm + offs_k[None, :] * shk, mask=rows, other=0.0)
        v = tl.load(v_ptr + offs_k[:, None] * svk + offs_n[None, :] * svn,
                    mask=(offs_k[:, None] < K) & (offs_n[None, :] < N), other=0.0)
        acc_t = tl.dot(t, v, acc_t, input_precision=INPUT_PRECISION)    # one V tile, both products
        acc_h = tl.dot(h, v, acc_h, input_precision=INPUT_PRECISION)
    c = tl.load(c_ptr + offs_n * sc, mask=offs_n < N, other=0.0).to(tl.float32)
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    below = tl.load(below_ptr + offs_m[:, None] * sbm + offs_n[None, :] * sbn, mask=mask, other=0.0).to(tl.float32)
    out = (below + _activate(acc_t + c[None, :], ACTIVATION)) - _activate(acc_h + c[None, :], ACTIVATION)
    tl.store(out_ptr + offs_m[:, None] * N + offs_n[None, :], out.to(out_ptr.dtype.element_ty), mask=mask)


_kernel, _FIXED = matmul_tiled(_difference_target_kernel)


def difference_target(h_below, target_above, h_above, v, c, activation):
    """h_below + f(target_above @ v + c) - f(h_above @ v + c) in one kernel; see the module docstring.
    h_below (M, N), target_above and h_above (M, K), v (K, N), c (N,)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, not {activation!r}")
    m, n = h_below.shape
    k, n_v = v.shape
    assert target_above.shape == h_above.shape == (m, k), (
        f"target_above {tuple(target_above.shape)} and h_above {tuple(h_above.shape)} must be {(m, k)}")
    assert n_v == n and c.shape == (n,), f"v {tuple(v.shape)} and c {tuple(c.shape)} do not fit h_below {(m, n)}"
    dtype = h_below.dtype
    target_above, h_above, v = target_above.to(dtype), h_above.to(dtype), v.to(dtype)
    out = torch.empty(m, n, device=h_below.device, dtype=dtype)
    precision = "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"

    def grid(meta):
        return (triton.cdiv(m, meta["BLOCK_M"]), triton.cdiv(n, meta["BLOCK_N"]))

    _kernel[grid](
        h_below, target_above, h_above, v, c, out, m, n, k,
        *h_below.stride(), *target_above.stride(), *h_above.stride(), *v.stride(), *c.stride(),
        ACTIVATION=ACTIVATIONS[activation], INPUT_PRECISION=precision, **_FIXED,
    )
    return out
