"""Where the kernel tests run: the CPU through the Triton interpreter (the default, TRITON_INTERPRET=1 from
conftest.py), or the GPU when a run sets TRITON_INTERPRET=0 on a CUDA machine (benchmarks/gpu_check.sh).
Graph-level tests that compile whole programs stay on the CPU (skipped on the GPU run)."""

import os

import pytest
import torch

ON_GPU = os.environ.get("TRITON_INTERPRET") == "0" and torch.cuda.is_available()
DEVICE = torch.device("cuda" if ON_GPU else "cpu")
cpu_only = pytest.mark.skipif(ON_GPU, reason="compiles a whole program on the CPU (interpreter) path")


def to_device(*tensors):
    return tuple(t.to(DEVICE) if isinstance(t, torch.Tensor) else t for t in tensors)

# bf16 as a parametrize value: run on the GPU, skipped under the interpreter
BF16 = pytest.param("bf16", marks=[] if ON_GPU else [pytest.mark.skip(
    reason="the Triton interpreter computes bf16 on its uint16 bit patterns (triton-lang/triton#11584, not "
           "supported yet): bf16 is checked on the GPU run")])
