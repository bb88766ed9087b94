"""Every feedback tensor at initialisation has the scale its source prescribes.

For each rule whose feedback has W's layout (FA, sign symmetry's variants under Xiao's and BioTorch's
magnitudes, weight mirror and Kolen-Pollack before any update) and for DFA's direct matrices, the measured
||B|| / ||W|| (the metrics' epoch-0 feedback_norm_ratio) is compared with the ratio the source's own
construction gives for the same W: within [0.25, 4] of it. And, the point of the sources' scales, every
default rule's ratio itself lies in [0.25, 4] on dense, LC and conv nets and on the shipped ResNets (an
unscaled sign(W) is ~10x too large and fails)."""

import math
from pathlib import Path

import pytest
import torch

from bpcompile.compiler import compile_experiment
from bpcompile.runtime.metrics import AlignmentProbe
from bpcompile.spec import DFA, FA, KolenPollack, SignSymmetry, WeightMirror, load_spec
from random_nets import batch, make_spec

KINDS = ["dense", "lc", "conv"]
LOW, HIGH = 0.25, 4.0


def fans(info):
    return info.fan_in, info.fan_out


def source_norm(rule, info, weight) -> float:
    """E||B|| as the source builds B for this layer (sqrt of the expected squared norm)."""
    n = weight.numel()
    fan_in, fan_out = fans(info)
    if rule.name in ("fa", "weight_mirror", "kolen_pollack"):
        # Lillicrap et al. / BioTorch / Akrout et al.'s code: B drawn by W's own law -> the norm of a fresh draw
        return float(weight.norm())
    magnitudes, variant = rule.magnitudes, rule.variant
    if magnitudes == "xiao":
        s = 1 / math.sqrt(fan_in) if info.type == "dense" else math.sqrt(2 / fan_out)
        mean_square = s * s / 3 if (variant in ("frsf", "brsf") and info.type == "dense") else s * s
    elif magnitudes == "biotorch":
        mean_square = 2 / (fan_in + fan_out)        # sign * Xavier std, or |Xavier draw| (same mean square)
    else:
        mean_square = 1.0
    return math.sqrt(n * mean_square)


RULES = [FA(), WeightMirror(), KolenPollack()] + [
    SignSymmetry(variant=v, magnitudes=m) for v in ("sign", "usf", "frsf", "brsf") for m in ("xiao", "biotorch")]


def measured_ratios(program, x, y) -> dict:
    return {name: entry["feedback_norm_ratio"] for name, entry in AlignmentProbe(program, x, y).measure().items()
            if "feedback_norm_ratio" in entry}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name + "_" + getattr(r, "variant", "") + getattr(r, "magnitudes", ""))
def test_feedback_norm_ratio_at_init_matches_the_source(kind, rule):
    for seed in range(3):
        spec, plain, shape, classes = make_spec(seed, kind, rule)
        program = compile_experiment(spec)
        x, y = batch(shape, classes, seed)
        ratios = measured_ratios(program, x, y)
        assert ratios, "no layer reported a feedback_norm_ratio"
        params = dict(program.network.named_parameters())
        infos = {info.name: info for info in program.network.layer_table}
        for name, ratio in ratios.items():
            weight = params[infos[name].weight].detach()
            expected = source_norm(rule, infos[name], weight) / float(weight.norm())
            assert LOW <= ratio / expected <= HIGH, (name, ratio, expected)
            if rule.name != "sign_symmetry" or rule.magnitudes != "unit":
                assert LOW <= ratio <= HIGH, (name, ratio)


SPECS = Path(__file__).resolve().parents[1] / "specs"


def init_ratios(spec) -> dict:
    """||B|| / ||W|| of every feedback tensor with W's layout, at init (no data needed)."""
    program = compile_experiment(spec)
    feedback = {}
    for hook in program.hooks:
        feedback.update(hook.feedback_tensors())
    params = dict(program.network.named_parameters())
    return {info.name: float(feedback[info.name].norm() / params[info.weight].norm())
            for info in program.network.layer_table if info.name in feedback}


@pytest.mark.parametrize("rule", [FA(), WeightMirror(), KolenPollack(), SignSymmetry(),
                                  SignSymmetry(variant="frsf"), SignSymmetry(variant="brsf")],
                         ids=["fa", "wm", "kp", "ss", "frsf", "brsf"])
def test_default_rules_on_the_lenet_are_in_range(rule):
    spec = load_spec(SPECS / "biotorch" / "mnist_lenet_bp.json").model_copy(update={"rule": rule})
    ratios = init_ratios(spec)
    assert set(ratios) == {"conv2", "conv3", "fc1", "fc2"}
    assert all(LOW <= r <= HIGH for r in ratios.values()), ratios


def test_unscaled_sign_is_out_of_range():
    """The check can fail: Liao et al.'s plain sign(W) on the Glorot LeNet is ~10x larger than W."""
    spec = load_spec(SPECS / "biotorch" / "mnist_lenet_bp.json").model_copy(
        update={"rule": SignSymmetry(magnitudes="unit")})
    assert min(init_ratios(spec).values()) > HIGH


@pytest.mark.parametrize("kind", KINDS)
def test_dfa_feedback_scale_matches_nokland(kind):
    """DFA's B (classes x F) has the std of Nokland's U(-1/sqrt(F), 1/sqrt(F)), within the same band."""
    spec, plain, shape, classes = make_spec(1, kind, DFA())
    program = compile_experiment(spec)
    for name, b in program.state.items():
        expected = 1 / math.sqrt(3 * b.shape[1])
        assert LOW <= float(b.double().pow(2).mean().sqrt()) / expected <= HIGH, name



def test_dfa_biotorch_lenet_feedback_scales_match_biotorch():
    """specs/biotorch/mnist_lenet_dfa.json: every B has the std of BioTorch's xavier_uniform_ over its own tensor
    (the conv layers' (classes, C_in, k, k) kernels, torch's fans; the dense layers' (classes, F) matrices)."""
    program = compile_experiment(load_spec(SPECS / "biotorch" / "mnist_lenet_dfa.json"))
    kinds = set()
    for name, b in program.state.items():
        receptive = b[0, 0].numel() if b.dim() == 4 else 1
        expected = math.sqrt(2 / ((b.shape[1] + b.shape[0]) * receptive))
        kinds.add(b.dim())
        assert LOW <= float(b.double().pow(2).mean().sqrt()) / expected <= HIGH, name
    assert kinds == {2, 4}

@pytest.mark.slow
@pytest.mark.parametrize("rule", ["fa", "ss", "wm", "kp"])
def test_shipped_resnet_feedback_ratios_at_init(rule):
    """The shipped CIFAR ResNet-18 specs: every feedback tensor (convs, shortcut projections, the classifier)
    within [0.25, 4] of ||W|| at init (the classifier's B was 7x too large when drawn by the convs' He law)."""
    ratios = init_ratios(load_spec(SPECS / f"cifar_resnet18_{rule}.json"))
    assert len(ratios) >= 20
    assert all(LOW <= r <= HIGH for r in ratios.values()), {k: v for k, v in ratios.items() if not LOW <= v <= HIGH}
