"""Triton GPU kernels, installed as `bpcompile.kernels` (package-dir mapping in pyproject.toml).

`lc.py`: the locally connected layer's forward, input gradient (any weight tensor; sign(W) on the fly; per input
pixel, or per stride cell in `lc_grad_input_cells`) and weight gradient, with implicit im2col. Each kernel has
the signature of its plain-PyTorch reference op in bpcompile/nn/ops/locally_connected.py; the lowering pass
(bpcompile/compiler/lower.py) registers them as the 'triton' implementations and, on CUDA, times them (and the
backward kernels' `*_cl` variants, grad_out read channels-last, and the stride-cell input gradient) against the
reference per shape ('auto'). Tests: tests/test_kernels_lc.py (Triton interpreter on CPU);
benchmark: benchmarks/lc.py (GPU).

`feedback.py`: (g @ B) * f'(saved), a dense layer's input error with the activation's derivative applied in the
same kernel (FA/KP/WM/BP's B or W, sign(W) * s on the fly, DFA's projection). Lowering puts it in for the pattern
grad_input -> activation backward when $BPCOMPILE_FUSE_FEEDBACK=1. Tests: tests/test_kernels_feedback.py;
benchmark: benchmarks/feedback.py.

`target.py`: difference target propagation's target through a dense inverse, h + f(t V + c) - f(h' V + c), both
products in one K loop sharing each tile of V. Lowering puts it in for DTP's, SDTP's and AO-SDTP's dense targets
when $BPCOMPILE_FUSE_TARGETS=1. Tests: tests/test_kernels_target.py; benchmark: benchmarks/target.py.

`benchmarks/gpu_check.sh` runs the kernel tests on a GPU and every GPU
benchmark in one prepared run. This package imports nothing of bpcompile.
"""
