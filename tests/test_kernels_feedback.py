"""The fused feedback-product kernel (kernels/feedback.py) against its plain-PyTorch form, on the CPU through the
Triton interpreter (TRITON_INTERPRET=1 is set in conftest.py before triton is imported), and the lowering that
puts it into the training graph ($BPCOMPILE_FUSE_FEEDBACK=1)."""

import random

import pytest
import torch

pytest.importorskip("triton")

from bpcompile.compiler import compile_experiment  # noqa: E402
from bpcompile.kernels.feedback import feedback_product, feedback_product_reference  # noqa: E402
from bpcompile.spec import BP, DFA, FA, KolenPollack, SignSymmetry  # noqa: E402
from kernel_device import BF16, cpu_only, to_device  # noqa: E402
from random_nets import batch, make_spec, run_graph  # noqa: E402

ACTIVATIONS = ["identity", "tanh", "sigmoid", "relu"]


def case(seed, activation):
    """Random shapes, primes and 1 among them, against the kernel's 32-wide blocks."""
    rng = random.Random(seed)
    m, k, n = (rng.choice([1, 3, 7, 31, 33, 64, 97]) for _ in range(3))
    g = torch.Generator().manual_seed(seed)
    grad = torch.randn(m, k, generator=g)
    b = torch.randn(k, n, generator=g)
    pre = torch.randn(m, n, generator=g)
    saved = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu, "identity": lambda t: t}[activation](pre)
    return to_device(grad, b, saved)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("seed", range(4))
def test_kernel_matches_the_unfused_form(activation, seed):
    grad, b, saved = case(seed, activation)
    torch.testing.assert_close(feedback_product(grad, b, saved, activation),
                               feedback_product_reference(grad, b, saved, activation), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_sign_form_takes_sign_and_scale_inside(activation):
    grad, w, saved = case(11, activation)
    w[::3] = 0.0                                        # sign(0) = 0
    expected = (grad @ (torch.sign(w) * 0.37))
    expected = expected * (1 - saved * saved) if activation == "tanh" else torch.where(saved > 0, expected, 0.0)
    torch.testing.assert_close(feedback_product(grad, w, saved, activation, sign=True, scale=0.37), expected,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("precision", [BF16, "tf32"])
def test_lower_precisions_within_their_tolerances(precision):
    """bf16 inputs give a bf16 output (fp32 accumulation); TF32 when torch allows it for matmuls."""
    grad, b, saved = case(3, "tanh")
    expected = feedback_product_reference(grad.double(), b.double(), saved.double(), "tanh")
    if precision == "bf16":
        out = feedback_product(grad.bfloat16(), b.bfloat16(), saved.bfloat16(), "tanh")
        assert out.dtype == torch.bfloat16
    else:
        before = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            out = feedback_product(grad, b, saved, "tanh")
        finally:
            torch.backends.cuda.matmul.allow_tf32 = before
    scale = float(expected.abs().max())
    torch.testing.assert_close(out.double(), expected, rtol=2e-2, atol=2e-2 * scale)


def test_non_contiguous_inputs():
    grad, b, saved = case(5, "tanh")
    grad_t, b_t, saved_t = grad.t().contiguous().t(), b.t().contiguous().t(), saved.t().contiguous().t()
    assert not (grad_t.is_contiguous() and b_t.is_contiguous())
    torch.testing.assert_close(feedback_product(grad_t, b_t, saved_t, "tanh"),
                               feedback_product_reference(grad, b, saved, "tanh"), rtol=1e-5, atol=1e-5)


def test_bad_activation_is_refused():
    grad, b, saved = case(0, "tanh")
    with pytest.raises(ValueError, match="activation must be one of"):
        feedback_product(grad, b, saved, "softplus")


RULES = [BP(), FA(), DFA(), SignSymmetry(variant="usf"), SignSymmetry(variant="frsf"), KolenPollack()]


@cpu_only
@pytest.mark.parametrize("rule", RULES, ids=["bp", "fa", "dfa", "usf", "frsf", "kp"])
def test_fused_programs_compute_the_reference_updates(rule, monkeypatch):
    """Every dense input gradient (or DFA projection) followed by an activation's backward becomes one kernel,
    and the step's outputs equal the unfused program's."""
    seed = next(s for s in range(50) if sum(layer[0] == "dense" for layer in make_spec(s, "dense", rule)[1]) >= 3)
    spec, plain, shape, classes = make_spec(seed, "dense", rule)
    reference = compile_experiment(spec)
    monkeypatch.setenv("BPCOMPILE_FUSE_FEEDBACK", "1")
    fused = compile_experiment(spec, prefer=("triton", "reference"))
    nodes = list(fused.train_graph.graph.nodes)
    fused_nodes = [n for n in nodes if n.meta.get("bpcompile_impl") == "triton (feedback fused)"]
    hidden = sum(layer[0] == "act" for layer in plain)
    assert len(fused_nodes) == hidden >= 2     # each activation's backward, fed by the input gradient above it
    targets = {str(n.target) for n in nodes}
    assert not any("tanh_backward" in t or "sigmoid_backward" in t or "threshold_backward" in t for t in targets)
    if rule.name == "sign_symmetry" and rule.variant == "usf":          # sign(W) inside the kernel, no copy
        assert all(n.meta.get("bpcompile_role") != "sign_feedback" for n in nodes)
    x, y = batch(shape, classes, seed)
    expected, actual = run_graph(reference, x, y), run_graph(fused, x, y)
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, rtol=1e-4, atol=1e-5)


@cpu_only
def test_fusion_is_off_by_default(monkeypatch):
    monkeypatch.delenv("BPCOMPILE_FUSE_FEEDBACK", raising=False)
    spec, *_ = make_spec(1, "dense", FA())
    program = compile_experiment(spec, prefer=("triton", "reference"))
    assert all(n.meta.get("bpcompile_impl") != "triton (feedback fused)" for n in program.train_graph.graph.nodes)
