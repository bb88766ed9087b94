"""The fused difference-target kernel (kernels/target.py) against its plain-PyTorch form, on the CPU through the
Triton interpreter (TRITON_INTERPRET=1 is set in conftest.py before triton is imported), and the lowering that
puts it into DTP's, SDTP's and AO-SDTP's training graphs ($BPCOMPILE_FUSE_TARGETS=1)."""

import random

import pytest
import torch

pytest.importorskip("triton")

from bpcompile.compiler import compile_experiment  # noqa: E402
from bpcompile.kernels.target import difference_target, difference_target_reference  # noqa: E402
from bpcompile.spec import AOSDTP, DTP, SDTP, SGD, TP  # noqa: E402
from kernel_device import BF16, cpu_only, to_device  # noqa: E402
from random_nets import batch, make_spec  # noqa: E402

ACTIVATIONS = ["identity", "tanh", "sigmoid", "relu"]


def case(seed):
    """Random shapes, primes and 1 among them, against the kernel's 32-wide blocks."""
    rng = random.Random(seed)
    m, k, n = (rng.choice([1, 3, 7, 31, 33, 64, 97]) for _ in range(3))
    g = torch.Generator().manual_seed(seed)
    h_above = torch.tanh(torch.randn(m, k, generator=g))
    target_above = h_above + 0.1 * torch.randn(m, k, generator=g)     # a target near the activity, as in DTP
    v = torch.randn(k, n, generator=g) / k ** 0.5
    c = torch.randn(n, generator=g)
    h_below = torch.tanh(torch.randn(m, n, generator=g))
    return to_device(h_below, target_above, h_above, v, c)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("seed", range(4))
def test_kernel_matches_the_unfused_form(activation, seed):
    inputs = case(seed)
    torch.testing.assert_close(difference_target(*inputs, activation),
                               difference_target_reference(*inputs, activation), rtol=1e-5, atol=1e-5)


def test_kernel_against_float64_and_the_formula():
    """The reference is the formula itself: h_below + f(t V + c) - f(h V + c), checked in float64."""
    h_below, t, h, v, c = case(9)
    expected = h_below.double() + torch.tanh(t.double() @ v.double() + c.double()) \
        - torch.tanh(h.double() @ v.double() + c.double())
    torch.testing.assert_close(difference_target(h_below, t, h, v, c, "tanh").double(), expected,
                               rtol=1e-5, atol=1e-5)


def test_equal_target_and_activity_give_the_activity_below():
    """g(t) - g(h) vanishes when the target is the activity: the kernel returns h_below (up to the rounding of
    (h_below + g(h)) - g(h), the order the graph computes it in)."""
    h_below, _, h, v, c = case(4)
    torch.testing.assert_close(difference_target(h_below, h, h, v, c, "tanh"), h_below, rtol=0, atol=3e-7)


@pytest.mark.parametrize("precision", [BF16, "tf32"])
def test_lower_precisions_within_their_tolerances(precision):
    inputs = case(3)
    expected = difference_target_reference(*(t.double() for t in inputs), "tanh")
    if precision == "bf16":
        out = difference_target(*(t.bfloat16() for t in inputs), "tanh")
        assert out.dtype == torch.bfloat16
    else:
        before = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            out = difference_target(*inputs, "tanh")
        finally:
            torch.backends.cuda.matmul.allow_tf32 = before
    torch.testing.assert_close(out.double(), expected, rtol=2e-2, atol=2e-2)


def test_non_contiguous_inputs():
    h_below, t, h, v, c = case(5)
    flipped = [x.t().contiguous().t() for x in (h_below, t, h, v)]
    wide = torch.zeros(c.shape[0], 2, device=c.device)
    wide[:, 0] = c
    strided_c = wide[:, 0]                                             # stride 2
    assert not strided_c.is_contiguous() or c.shape[0] == 1
    torch.testing.assert_close(difference_target(*flipped, strided_c, "sigmoid"),
                               difference_target_reference(h_below, t, h, v, c, "sigmoid"), rtol=1e-5, atol=1e-5)


def test_bad_activation_is_refused():
    with pytest.raises(ValueError, match="activation must be one of"):
        difference_target(*case(0), "softplus")


def tp_rule(name, schedule="parallel"):
    common = dict(schedule=schedule, noise_sigma=0.3, inverse_optimizer=SGD(lr=0.05, momentum=0.0))
    return {"tp": lambda: TP(alpha=0.2, **common), "dtp": lambda: DTP(alpha=0.15, **common),
            "sdtp": lambda: SDTP(**common), "ao_sdtp": lambda: AOSDTP(aux_units=7, **common)}[name]()


def deep_dense_seed(rule):
    """A random dense net with at least three hidden layers (so DTP has two difference corrections)."""
    return next(s for s in range(200) if sum(layer[0] == "dense" for layer in make_spec(s, "dense", rule)[1]) >= 4)


def run_phase(program, graph, signature, x, y):
    generator = torch.Generator().manual_seed(7)
    outputs = graph(*program.graph_inputs(signature, x, y, lambda name, shape: torch.randn(shape, generator=generator)))
    return {(s.kind, s.name): outputs[i] for i, s in enumerate(signature.outputs)}


# how many targets a step fuses, given the net's hidden layers
FUSED_TARGETS = {"dtp": lambda hidden: hidden - 1, "sdtp": lambda hidden: hidden, "ao_sdtp": lambda hidden: hidden,
                 "tp": lambda hidden: 0}


@cpu_only
@pytest.mark.parametrize("name", FUSED_TARGETS)
def test_fused_programs_compute_the_reference_step(name, monkeypatch):
    """Every difference target through a dense inverse becomes one kernel (DTP: one per hidden layer but the
    top, whose target is the gradient step; SDTP and AO-SDTP: the label target too; TP has no difference), and
    the step's outputs (targets, losses, every update) equal the unfused program's."""
    rule = tp_rule(name)
    seed = deep_dense_seed(rule)
    spec, plain, shape, classes = make_spec(seed, "dense", rule, loss="softmax_cross_entropy")
    reference = compile_experiment(spec)
    monkeypatch.setenv("BPCOMPILE_FUSE_TARGETS", "1")
    fused = compile_experiment(spec, prefer=("triton", "reference"))
    nodes = [n for n in fused.train_graph.graph.nodes if n.meta.get("bpcompile_impl") == "triton (target fused)"]
    hidden = sum(layer[0] == "act" for layer in plain)
    assert len(nodes) == FUSED_TARGETS[name](hidden)
    x, y = batch(shape, classes, seed)
    expected = run_phase(reference, reference.train_graph, reference.train_signature, x, y)
    actual = run_phase(fused, fused.train_graph, fused.train_signature, x, y)
    assert expected.keys() == actual.keys()
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, rtol=1e-4, atol=1e-5, msg=lambda m: f"{key}: {m}")


@cpu_only
def test_alternating_forward_phase_is_fused_too(monkeypatch):
    rule = tp_rule("sdtp", schedule="alternating")
    spec, plain, shape, classes = make_spec(deep_dense_seed(rule), "dense", rule, loss="softmax_cross_entropy")
    monkeypatch.setenv("BPCOMPILE_FUSE_TARGETS", "1")
    program = compile_experiment(spec, prefer=("triton", "reference"))
    graph, signature = program.phase("forward")
    assert any(n.meta.get("bpcompile_impl") == "triton (target fused)" for n in graph.graph.nodes)


@cpu_only
def test_fusion_is_off_by_default(monkeypatch):
    monkeypatch.delenv("BPCOMPILE_FUSE_TARGETS", raising=False)
    rule = tp_rule("dtp")
    spec, *_ = make_spec(deep_dense_seed(rule), "dense", rule, loss="softmax_cross_entropy")
    program = compile_experiment(spec, prefer=("triton", "reference"))
    assert all(n.meta.get("bpcompile_impl") != "triton (target fused)" for n in program.train_graph.graph.nodes)
