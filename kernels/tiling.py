"""The tile configurations the matmul-shaped kernels (feedback.py, target.py) share: autotuned over a few
BLOCK_M x BLOCK_N x BLOCK_K tiles on a GPU, one fixed tile under the interpreter (TRITON_INTERPRET=1), which
cannot time configurations."""

import os

import triton

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
TILES = [(32, 32, 32), (64, 64, 32), (128, 64, 32), (64, 128, 32), (128, 128, 32)]


def matmul_tiled(kernel):
    """(the kernel to launch, the block sizes to pass it): the fixed tile under the interpreter, else none (the
    autotuner picks them per (M, N, K))."""
    if INTERPRET:
        return kernel, {"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32}
    configs = [triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k}, num_warps=4, num_stages=3) for m, n, k in TILES]
    return triton.autotune(configs=configs, key=["M", "N", "K"])(kernel), {}
