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
from kernel_device import BF16, cpu_only, to_device  # noqa: E402
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


# (batch, channels, height, width, out channels, kernel, stride, padding): the shapes random cases rarely draw
ODD_SHAPES = {
    "primes_stride_not_dividing": (3, 5, 7, 11, 3, 3, 2, 1),
    "stride_3_on_13": (2, 7, 13, 13, 5, 4, 3, 0),
    "kernel_larger_than_input": (2, 2, 3, 3, 3, 5, 1, 2),
    "kernel_larger_than_input_strided": (1, 3, 2, 5, 2, 5, 2, 2),
    "one_by_one_input": (4, 3, 1, 1, 7, 1, 1, 0),
    "one_by_one_input_padded": (2, 1, 1, 1, 2, 3, 1, 1),
    "three_channels_wide_output": (3, 3, 9, 9, 37, 3, 1, 1),     # RGB input against the 16-wide channel block
}


def odd_case(name, dtype=torch.float32):
    batch_size, channels, height, width, out_ch, kernel, stride, padding = ODD_SHAPES[name]
    h_out = (height + 2 * padding - kernel) // stride + 1
    w_out = (width + 2 * padding - kernel) // stride + 1
    g = torch.Generator().manual_seed(len(name))
    x = torch.randn(batch_size, channels, height, width, generator=g)
    w = torch.randn(h_out * w_out, out_ch, kernel * kernel * channels, generator=g)
    b = torch.randn(out_ch, h_out, w_out, generator=g)
    grad_out = torch.randn(batch_size, out_ch, h_out, w_out, generator=g)
    return (*to_device(*(t.to(dtype) for t in (x, w, b, grad_out))), kernel, stride, padding)


def all_three(x, w, b, grad_out, kernel, stride, padding, sign=False):
    h, wd = x.shape[2:]
    return (lc_forward(x, w, b, kernel, stride, padding), lc_grad_weight(grad_out, x, kernel, stride, padding),
            lc_grad_input(grad_out, w, h, wd, kernel, stride, padding, sign_weight=sign))


def all_three_reference(x, w, b, grad_out, kernel, stride, padding, sign=False):
    h, wd = x.shape[2:]
    return (lc_forward_reference(x, w, b, kernel, stride, padding),
            lc_grad_weight_reference(grad_out, x, kernel, stride, padding),
            lc_grad_input_reference(grad_out, torch.sign(w) if sign else w, h, wd, kernel, stride, padding))


@pytest.mark.parametrize("name", ODD_SHAPES)
def test_odd_shapes_match_reference_ops(name):
    inputs = odd_case(name)
    for sign in (False, True):
        for found, expected in zip(all_three(*inputs, sign=sign), all_three_reference(*inputs, sign=sign)):
            close(found, expected)


@pytest.mark.parametrize("precision", [BF16, "tf32"])
@pytest.mark.parametrize("name", ["primes_stride_not_dividing", "three_channels_wide_output"])
def test_lower_precisions_within_their_tolerances(precision, name):
    """Against float64: bf16 inputs give bf16 outputs (fp32 accumulation); TF32 when torch allows it. Tolerances
    scale with each output's largest value (K = k*k*C terms of unit variance per output)."""
    inputs = odd_case(name, torch.bfloat16 if precision == "bf16" else torch.float32)
    expected = all_three_reference(*(t.double() if isinstance(t, torch.Tensor) else t for t in inputs))
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
        found = all_three(*inputs)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    tolerance = 2e-2 if precision == "bf16" else 5e-3
    for out, ref in zip(found, expected):
        assert out.dtype == inputs[0].dtype
        torch.testing.assert_close(out.double(), ref, rtol=tolerance, atol=tolerance * float(ref.abs().max()))


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


@pytest.mark.parametrize("name", ["primes_stride_not_dividing", "three_channels_wide_output", "one_by_one_input"])
def test_backward_kernels_reading_grad_out_channels_last(name):
    """The *_cl variants ('auto' lowering's third candidate) copy grad_out channels-last before the same kernels."""
    from bpcompile.kernels.lc import lc_grad_input_cl, lc_grad_input_sign_cl, lc_grad_weight_cl

    from bpcompile.kernels.lc import _out_channels_fastest

    x, w, _, grad_out, kernel, stride, padding = odd_case(name)
    h, wd = x.shape[2:]
    viewed = _out_channels_fastest(grad_out).reshape(grad_out.shape[0], grad_out.shape[1], -1)
    assert viewed.stride(1) == 1 or grad_out.shape[1] == 1     # the kernels see unit out-channel stride, no copy back
    close(lc_grad_weight_cl(grad_out, x, kernel, stride, padding),
          lc_grad_weight_reference(grad_out, x, kernel, stride, padding))
    close(lc_grad_input_cl(grad_out, w, h, wd, kernel, stride, padding),
          lc_grad_input_reference(grad_out, w, h, wd, kernel, stride, padding))
    close(lc_grad_input_sign_cl(grad_out, w, h, wd, kernel, stride, padding),
          lc_grad_input_reference(grad_out, torch.sign(w), h, wd, kernel, stride, padding))


@pytest.mark.parametrize("name", list(ODD_SHAPES) + [f"random_{seed}" for seed in range(6)])
def test_stride_cell_input_gradient(name):
    """lc_grad_input_cells (one program per stride x stride cell of input pixels), in both grad_out layouts and
    with sign(W) on the fly, against the reference input gradient."""
    from bpcompile.kernels.lc import (lc_grad_input_cells, lc_grad_input_cells_cl, lc_grad_input_cells_sign,
                                      lc_grad_input_cells_sign_cl)

    x, w, _, grad_out, kernel, stride, padding = case(200 + int(name[7:])) if name.startswith("random_") \
        else odd_case(name)
    h, wd = x.shape[2:]
    expected = lc_grad_input_reference(grad_out, w, h, wd, kernel, stride, padding)
    expected_sign = lc_grad_input_reference(grad_out, torch.sign(w), h, wd, kernel, stride, padding)
    close(lc_grad_input_cells(grad_out, w, h, wd, kernel, stride, padding), expected)
    close(lc_grad_input_cells_cl(grad_out, w, h, wd, kernel, stride, padding), expected)
    close(lc_grad_input_cells_sign(grad_out, w, h, wd, kernel, stride, padding), expected_sign)
    close(lc_grad_input_cells_sign_cl(grad_out, w, h, wd, kernel, stride, padding), expected_sign)


def test_stride_cell_input_gradient_at_the_imagenet_stem_geometry():
    """The 9x9 stride-4 RGB layer (imagenet_lc1's geometry, on a 23x23 input at batch 2): stride cells of 16
    pixels x 3 channels, windows overlapping by 5 of 9 rows, a padded border."""
    from bpcompile.kernels.lc import lc_grad_input_cells

    g = torch.Generator().manual_seed(1)
    kernel, stride, padding, size = 9, 4, 4, 23
    out = (size + 2 * padding - kernel) // stride + 1
    w = torch.randn(out * out, 5, kernel * kernel * 3, generator=g)
    grad_out = torch.randn(2, 5, out, out, generator=g)
    w, grad_out = to_device(w, grad_out)
    close(lc_grad_input_cells(grad_out, w, size, size, kernel, stride, padding),
          lc_grad_input_reference(grad_out, w, size, size, kernel, stride, padding))
