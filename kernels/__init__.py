"""Triton GPU kernels, installed as `bpcompile.kernels` (package-dir mapping in pyproject.toml).

`lc.py`: the locally connected layer's forward, input gradient (any weight tensor; sign(W) on the fly) and weight
gradient, with implicit im2col. Each kernel has the signature of its plain-PyTorch reference op in
bpcompile/nn/ops/locally_connected.py; the lowering pass (bpcompile/compiler/lower.py) registers them as the
'triton' implementations and prefers them on CUDA. Tests: tests/test_kernels_lc.py (Triton interpreter on CPU);
benchmark: benchmarks/lc.py (GPU). This package imports nothing of bpcompile.
"""
