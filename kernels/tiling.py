"""Block-size configurations the kernels share: autotuned on a GPU, the first configuration under the interpreter
(TRITON_INTERPRET=1, the CPU tests), which cannot time configurations."""

import os

import triton

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
MATMUL_TILES = [(32, 32, 32), (64, 64, 32), (128, 64, 32), (64, 128, 32), (128, 128, 32)]


def configs(names, values, warps=(4,), stages=(3,)) -> list:
    """One triton.Config per block-size tuple in `values` (named by `names`), warp count and stage count."""
    return [triton.Config(dict(zip(names, v)), num_warps=w, num_stages=s) for v in values for w in warps for s in stages]


def autotuned(kernel, candidates: list, key: list):
    """(the kernel to launch, the block sizes to pass it): autotuned over `candidates` per `key` on a GPU (the
    autotuner passes the sizes), the first candidate under the interpreter."""
    if INTERPRET:
        return kernel, candidates[0].kwargs
    return triton.autotune(configs=candidates, key=key)(kernel), {}


def matmul_tiled(kernel):
    """autotuned over BLOCK_M x BLOCK_N x BLOCK_K tiles, keyed by (M, N, K): the matmul-shaped kernels."""
    return autotuned(kernel, configs(("BLOCK_M", "BLOCK_N", "BLOCK_K"), MATMUL_TILES), ["M", "N", "K"])
