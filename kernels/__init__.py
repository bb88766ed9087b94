"""Triton GPU kernels, installed as `bpcompile.kernels` (package-dir mapping in pyproject.toml).

Each kernel is registered as a 'triton' implementation of a bpcompile custom op
(see bpcompile/nn/ops/registry.py); the lowering pass prefers it on CUDA and
keeps the plain-PyTorch 'reference' on CPU. This package imports nothing of
bpcompile. The locally connected and feedback-product kernels are not built
yet: until they are, every device runs the reference implementations.
"""
