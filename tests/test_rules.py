"""Every gradient-family rule against an independent plain implementation of its equations.

One step of each rule on random dense, locally connected and conv nets: the
compiled graph's updates and, for rules with hooks, the parameters and
feedback tensors after a whole step (graph, optimiser, hooks) equal the
formulas of plain_nets written out here, to 1e-5 relative error."""

import math

import pytest
import torch

from bpcompile.compiler import compile_experiment
from bpcompile.errors import BpcompileError
from bpcompile.optim import build_optimizer
from bpcompile.runtime.metrics import AlignmentProbe
from bpcompile.runtime.step import RuleStep
from bpcompile.spec import (
    BP, DFA, FA, SGD, Adam, Feedback, KolenPollack, MirrorSettings, RuleOverride, SignSymmetry, WeightMirror,
)
from plain_nets import (
    angle, apply_layer, bp_grads, feedback_grads, linear_map, outer_in_weight_layout, per_example_angle, rel_error,
)
from random_nets import batch, make_spec, run_graph

TOL = 1e-5
KINDS = ["dense", "lc", "conv"]


def setup(seed, kind, rule, **kw):
    spec, plain, shape, classes = make_spec(seed, kind, rule, **kw)
    program = compile_experiment(spec)
    params = {k: v.detach().clone() for k, v in program.network.named_parameters()}
    x, y = batch(shape, classes, seed)
    return spec, plain, program, params, x, y


def parametric(plain):
    return [layer for layer in plain if layer[0] in ("dense", "lc", "conv")]


def fan_out(layer, weight):
    if layer[0] == "dense":
        return weight.shape[0]
    if layer[0] == "lc":
        return weight.shape[1] * layer[2] ** 2
    return weight.shape[0] * weight.shape[2] * weight.shape[3]


def conv_samples(layer, weight, x):
    """Per kernel offset of a shared conv weight, the output positions where it lands inside the input
    (unfold of an all-ones input); 1 for dense and LC weights, which no two positions share."""
    if layer[0] != "conv":
        return 1
    _, _, stride, padding = layer
    cols = torch.nn.functional.unfold(torch.ones(1, *x.shape[1:]), weight.shape[2], padding=padding, stride=stride)
    return cols.sum(-1).reshape(1, *weight.shape[1:])


def assert_close_all(actual: dict, expected: dict):
    for name, value in expected.items():
        assert rel_error(actual[name], value) <= TOL, name


# ---- DFA ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(3))
def test_dfa_updates_equal_plain_dfa(kind, seed):
    spec, plain, program, params, x, y = setup(seed, kind, DFA())
    layers = parametric(plain)
    direct = {k.removesuffix(".feedback"): v for k, v in program.state.items()}
    assert sorted(direct) == sorted(layer[1] for layer in layers[1:])
    classes = params[f"{layers[-1][1]}.weight"].shape[0]
    for name, b in direct.items():
        assert b.shape[0] == classes
    expected = feedback_grads(plain, params, {}, x, y, spec.loss, direct=direct)
    assert_close_all(run_graph(program, x, y), expected)
    # errors no longer travel layer to layer: no input-gradient node is left, none reads a forward weight
    roles = [n.meta.get("bpcompile_role") for n in program.train_graph.graph.nodes]
    assert "grad_input" not in roles and roles.count("direct_feedback") == len(layers) - 1


@pytest.mark.parametrize("kind", KINDS)
def test_dfa_feedback_follows_noklands_law(kind):
    """B ~ U(-1/sqrt(F), 1/sqrt(F)), F = the features the error lands on (dfa-torch's ErrorFeedback.lua)."""
    spec, plain, program, params, x, y = setup(6, kind, DFA())
    for name, b in program.state.items():
        features = b.shape[1]
        assert float(b.abs().max()) <= 1 / math.sqrt(features)
        if b.numel() > 200:
            assert float(b.double().pow(2).mean()) == pytest.approx(1 / (3 * features), rel=0.3)



def two_conv_seeds(count=4):
    """Seeds whose random conv net has two conv layers (the second is the one whose input gets a B)."""
    from random_nets import random_net
    seeds = [s for s in range(60) if sum(layer[0] == "conv" for layer in random_net(s, "conv")[1]) == 2]
    assert len(seeds) >= count
    return seeds[:count]


@pytest.mark.parametrize("seed", two_conv_seeds())
def test_dfa_biotorch_conv_kernel_form_equals_plain(seed):
    """conv_feedback 'kernel' (BioTorch layers/dfa/conv.py): a conv layer's input error is conv2d_input(B, e
    repeated over the output positions), B (classes, C_in, k, k); the plain side sums e @ B patches with fold."""
    spec, plain, program, params, x, y = setup(seed, "conv", DFA(conv_feedback="kernel"))
    direct = {k.removesuffix(".feedback"): v for k, v in program.state.items()}
    layers = parametric(plain)
    conv2 = layers[1]
    assert conv2[0] == "conv" and direct[conv2[1]].dim() == 4
    weight = params[f"{conv2[1]}.weight"]
    assert direct[conv2[1]].shape == (params["out.weight"].shape[0], *weight.shape[1:])
    assert all(b.dim() == 2 for name, b in direct.items() if name != conv2[1])    # dense layers: dense B
    expected = feedback_grads(plain, params, {}, x, y, spec.loss, direct=direct)
    assert_close_all(run_graph(program, x, y), expected)
    # the default keeps Nokland's dense matrix for the same layer
    dense = compile_experiment(spec.model_copy(update={"rule": DFA()}))
    assert dense.state[f"{conv2[1]}.feedback"].dim() == 2


def test_dfa_biotorch_conv_kernel_law():
    """BioTorch draws the kernel by xavier_uniform_: bound sqrt(6 / (C_in k^2 + classes k^2))."""
    seed = two_conv_seeds(1)[0]
    spec, plain, program, params, x, y = setup(seed, "conv", DFA(conv_feedback="kernel"))
    (kernel,) = [b for b in program.state.values() if b.dim() == 4]
    classes, channels, k, _ = kernel.shape
    bound = math.sqrt(6 / (channels * k * k + classes * k * k))
    assert float(kernel.abs().max()) <= bound and float(kernel.abs().max()) > bound / 2

# ---- sign symmetry -----------------------------------------------------------------------------------

def fan_in(layer, weight):
    if layer[0] == "dense":
        return weight.shape[1]
    if layer[0] == "lc":
        return weight.shape[2]
    return weight.shape[1] * weight.shape[2] * weight.shape[3]


def source_scale(magnitudes, layer, weight):
    """s as each source writes it: Xiao's sqrt(2 / (k^2 C_out)) (conv) and 1 / sqrt(fan_in) (linear);
    BioTorch's Xavier std sqrt(2 / (fan_in + fan_out)); 1 for the unscaled sign."""
    if magnitudes == "xiao":
        return 1 / math.sqrt(fan_in(layer, weight)) if layer[0] == "dense" else math.sqrt(2 / fan_out(layer, weight))
    if magnitudes == "biotorch":
        return math.sqrt(2 / (fan_in(layer, weight) + fan_out(layer, weight)))
    return 1.0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("variant", ["sign", "usf", "frsf", "brsf"])
@pytest.mark.parametrize("magnitudes", ["xiao", "biotorch", "unit"])
def test_sign_symmetry_updates_equal_plain_sign_feedback(kind, variant, magnitudes):
    seed = 1
    spec, plain, program, params, x, y = setup(seed, kind, SignSymmetry(variant=variant, magnitudes=magnitudes))
    (hooks,) = program.hooks
    before = {k: v.clone() for k, v in program.state.items()}
    hooks.before_step(None)                     # brSF redraws its magnitudes here; the others keep them
    for name, m in program.state.items():
        assert torch.equal(m, before[name]) == (variant != "brsf")
        assert (m >= 0).all()

    def expected_grads(current):
        feedback = {}
        for layer in parametric(plain)[1:]:
            w = current[f"{layer[1]}.weight"]
            magnitude = program.state.get(f"{layer[1]}.magnitude")
            scale = source_scale(magnitudes, layer, w) if magnitude is None else 1.0
            feedback[layer[1]] = torch.sign(w) * (magnitude if magnitude is not None else 1.0) * scale
        return feedback_grads(plain, current, feedback, x, y, spec.loss)

    assert_close_all(run_graph(program, x, y), expected_grads(params))
    # the sign is taken from the current W inside the graph, never a stale copy
    with torch.no_grad():
        for name, p in program.network.named_parameters():
            if name.endswith("weight"):
                p.mul_(-1.5)
    flipped = {k: v.detach().clone() for k, v in program.network.named_parameters()}
    assert_close_all(run_graph(program, x, y), expected_grads(flipped))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("magnitudes", ["xiao", "biotorch", "unit"])
def test_sign_symmetry_random_magnitudes_follow_their_source(kind, magnitudes):
    """frSF's M: Xiao's |N(0, s^2)| (conv, LC) or U(0, s) (dense); BioTorch's |U(-a, a)|, a = sqrt(6 / (fan_in +
    fan_out)); |N(0, 1)| unscaled. The small nets' draws are checked against each law's bound; the laws'
    moments on a large draw with the same layer geometry."""
    from bpcompile.compiler.rules.sign_symmetry import draw_magnitude, magnitude_law

    spec, plain, program, params, x, y = setup(4, kind, SignSymmetry(variant="frsf", magnitudes=magnitudes))
    infos = {info.name: info for info in program.network.layer_table}
    for layer in parametric(plain)[1:]:
        m = program.state[f"{layer[1]}.magnitude"].double()
        s = source_scale(magnitudes, layer, params[f"{layer[1]}.weight"])
        uniform = magnitudes == "xiao" and layer[0] == "dense"
        if uniform or magnitudes == "biotorch":
            assert float(m.max()) <= (s if uniform else math.sqrt(3) * s)
        big = draw_magnitude(torch.empty(200_000, dtype=torch.float64),
                             magnitude_law(magnitudes, infos[layer[1]]), s, torch.Generator().manual_seed(0))
        if uniform:
            assert float(big.max()) <= s and float(big.mean()) == pytest.approx(s / 2, rel=0.01)
        elif magnitudes == "biotorch":
            assert float(big.max()) <= math.sqrt(3) * s and float(big.mean()) == pytest.approx(math.sqrt(3) * s / 2, rel=0.01)
        else:
            assert float(big.mean()) == pytest.approx(s * math.sqrt(2 / math.pi), rel=0.01)
            assert float(big.pow(2).mean()) == pytest.approx(s * s, rel=0.01)


def test_sign_symmetry_fixed_scale():
    spec, plain, program, params, x, y = setup(2, "lc", SignSymmetry(scale=0.25))
    feedback = {layer[1]: torch.sign(params[f"{layer[1]}.weight"]) * 0.25 for layer in parametric(plain)[1:]}
    assert_close_all(run_graph(program, x, y), feedback_grads(plain, params, feedback, x, y, spec.loss))


@pytest.mark.parametrize("kind", KINDS)
def test_batch_manhattan_steps_along_the_sign_of_each_update(kind):
    spec, plain, program, params, x, y = setup(5, kind, SignSymmetry(batch_manhattan=True))
    feedback = {layer[1]: torch.sign(params[f"{layer[1]}.weight"]) * source_scale("xiao", layer, params[f"{layer[1]}.weight"])
                for layer in parametric(plain)[1:]}
    expected = {k: torch.sign(v) for k, v in feedback_grads(plain, params, feedback, x, y, spec.loss).items()}
    actual = run_graph(program, x, y)
    for name, value in expected.items():
        assert torch.equal(actual[name], value), name
    assert any(r.description.startswith("Batch Manhattan") for r in program.rewrites)


# ---- Kolen-Pollack -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_kolen_pollack_step_equals_the_paired_update(kind, optimizer):
    lam, lr = 0.05, 0.1
    spec, plain, program, params, x, y = setup(3, kind, KolenPollack(weight_decay=lam))
    opt_spec = SGD(lr=lr, momentum=0.0) if optimizer == "sgd" else Adam(lr=lr, eps=1e-8)
    step = RuleStep(program, build_optimizer(opt_spec, program.network.parameters()))
    feedback0 = {k.removesuffix(".feedback"): v.clone() for k, v in program.state.items()}
    grads = feedback_grads(plain, params, feedback0, x, y, spec.loss)
    step(x, y)

    def update(g):  # the optimiser's first step, written out
        return -lr * g if optimizer == "sgd" else -lr * g / (g.abs() + 1e-8)

    after = dict(program.network.named_parameters())
    for layer in parametric(plain):
        name = layer[1]
        u = update(grads[f"{name}.weight"])
        expected_w = (1 - lam) * (params[f"{name}.weight"] + u)
        assert rel_error(after[f"{name}.weight"], expected_w) <= TOL, name
        assert rel_error(after[f"{name}.bias"], params[f"{name}.bias"] + update(grads[f"{name}.bias"])) <= TOL
        if name in feedback0:
            b = program.state[f"{name}.feedback"]
            assert rel_error(b, (1 - lam) * (feedback0[name] + u)) <= TOL, name
            # W - B decays by (1 - lambda) exactly
            assert rel_error(after[f"{name}.weight"] - b, (1 - lam) * (params[f"{name}.weight"] - feedback0[name])) <= TOL


@pytest.mark.parametrize("kind", KINDS)
def test_kolen_pollack_lr_scaled_decay_under_a_schedule_and_l2_on_the_rest(kind):
    """decay='lr_scaled': W and B shrink by (1 - lr_t lambda) with lr_t the scheduled lr; the optimiser's L2 term
    skips the W that Kolen-Pollack decays and still decays every bias, as under BP."""
    from bpcompile.optim import build_forward_optimizer

    lam, lr, wd, factor = 0.3, 0.1, 0.05, 0.25
    spec, plain, program, params, x, y = setup(3, kind, KolenPollack(weight_decay=lam, decay="lr_scaled"))
    optimizer = build_forward_optimizer(SGD(lr=lr, momentum=0.0, weight_decay=wd), program)
    for group in optimizer.param_groups:       # a schedule's drop: lr_t = factor * lr
        group["initial_lr"], group["lr"] = lr, lr * factor
    step = RuleStep(program, optimizer)
    feedback0 = {k.removesuffix(".feedback"): v.clone() for k, v in program.state.items()}
    grads = feedback_grads(plain, params, feedback0, x, y, spec.loss)
    step(x, y)
    lr_t = lr * factor
    shrink = 1 - lr_t * lam
    after = dict(program.network.named_parameters())
    for layer in parametric(plain):
        name = layer[1]
        u = -lr_t * grads[f"{name}.weight"]          # no L2 term on W
        assert rel_error(after[f"{name}.weight"], shrink * (params[f"{name}.weight"] + u)) <= TOL, name
        bias = params[f"{name}.bias"]
        assert rel_error(after[f"{name}.bias"], bias - lr_t * (grads[f"{name}.bias"] + wd * bias)) <= TOL, name
        if name in feedback0:
            assert rel_error(program.state[f"{name}.feedback"], shrink * (feedback0[name] + u)) <= TOL, name


def test_direct_kolen_pollack_feedback_follows_the_forward_schedule():
    """Webster et al.'s direct KP: B's optimiser steps at its lr times the forward schedule's factor
    (feedback_schedule='forward'), or at its own fixed lr ('constant')."""
    lr, factor = 0.2, 0.1
    for schedule, expected_lr in (("forward", lr * factor), ("constant", lr)):
        rule = Feedback(source="learned", learning="kolen_pollack", topology="direct", weight_decay=0.0,
                        feedback_schedule=schedule)
        spec, plain, program, params, x, y = setup(2, "dense", rule)
        spec = spec.model_copy(update={"optimizer": SGD(lr=lr, momentum=0.0)})
        program = compile_experiment(spec)
        optimizer = build_optimizer(spec.optimizer, program.network.parameters())
        for group in optimizer.param_groups:
            group["initial_lr"], group["lr"] = lr, lr * factor
        before = {k: v.clone() for k, v in program.state.items()}
        outputs = run_graph(program, x, y)
        RuleStep(program, optimizer)(x, y)
        for name, b in program.state.items():
            assert rel_error(b, before[name] - expected_lr * outputs[name]) <= TOL, (schedule, name)


# ---- weight mirror -----------------------------------------------------------------------------------

def following_act(plain, layer, loss):
    """The plain net's activation right after `layer` (None if something else follows); after the output layer
    the sigmoid of sigmoid cross-entropy."""
    index = plain.index(layer)
    if index == len(plain) - 1:
        return "sigmoid" if loss == "sigmoid_cross_entropy" else None
    following = plain[index + 1]
    return following[1] if following[0] == "act" else None


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("form", ["akrout_code", "gaussian_linear_mean"])
def test_weight_mirror_mirror_phases_and_step_equal_plain_equations(kind, form):
    """Akrout et al.'s code form (uniform noise 0.1 (U - 0.5), y = f(W x + b), B += lr sum x y^T) and the linear,
    Gaussian, averaged form, each against the equations written out with plain torch ops."""
    from plain_nets import ACT

    if form == "akrout_code":
        settings = MirrorSettings(lr=0.01, batch_size=16, pre_batches=2, decay=0.1)
    else:
        settings = MirrorSettings(lr=0.1, noise="gaussian", noise_sigma=0.5, response="linear", reduction="mean",
                                  decay=0.2, batch_size=16, pre_batches=2, batches_per_step=1)
    spec, plain, program, params, x, y = setup(4, kind, WeightMirror(mirror=settings))
    (hooks,) = program.hooks
    noises = []
    draw = hooks.noise
    hooks.noise = lambda info: noises.append(draw(info)) or noises[-1]      # record the noise the hook draws
    lr = 0.05
    step = RuleStep(program, build_optimizer(SGD(lr=lr, momentum=0.0), program.network.parameters()))
    mirrored = [layer for layer in parametric(plain) if f"{layer[1]}.feedback" in program.state]
    feedback = {layer[1]: program.state[f"{layer[1]}.feedback"].clone() for layer in mirrored}

    def plain_mirror_batch(weights, feedback):
        batch_noise = [noises.pop(0) for _ in mirrored]
        out = {}
        for layer, noise in zip(mirrored, batch_noise):
            w, b = weights[f"{layer[1]}.weight"], feedback[layer[1]]
            if form == "akrout_code":
                assert float(noise.abs().max()) <= 0.05 and float(noise.std()) == pytest.approx(0.1 / 12 ** 0.5, rel=0.3)
                response = apply_layer(layer, weights, noise)          # W x + b
                act = following_act(plain, layer, spec.loss)
                response = ACT[act](response) if act else response
                direction = outer_in_weight_layout(layer, response, noise, w.shape)   # summed over the batch ...
                direction = direction / conv_samples(layer, w, noise)    # ... a conv's positions averaged
            else:
                direction = outer_in_weight_layout(layer, linear_map(layer, w, noise), noise, w.shape)
                direction = direction / (noise.shape[0] * conv_samples(layer, w, noise))
            out[layer[1]] = b + settings.lr * (direction - settings.decay * b)
        return out

    step.start()                                   # two mirror batches before training
    for _ in range(settings.pre_batches):
        feedback = plain_mirror_batch(params, feedback)
    for layer in mirrored:
        assert rel_error(program.state[f"{layer[1]}.feedback"], feedback[layer[1]]) <= TOL
    grads = feedback_grads(plain, params, feedback, x, y, spec.loss)   # engaged mode: FA through B
    step(x, y)
    new_params = {k: params[k] - lr * grads[k] for k in params}
    after = dict(program.network.named_parameters())
    for name, value in new_params.items():
        assert rel_error(after[name], value) <= TOL, name
    feedback = plain_mirror_batch(new_params, feedback)              # one mirror batch after the step, with new W
    for layer in mirrored:
        assert rel_error(program.state[f"{layer[1]}.feedback"], feedback[layer[1]]) <= TOL
    assert not noises


def test_weight_mirror_pre_batches_epoch_and_the_forward_schedule():
    """pre_batches='epoch' mirrors as many batches as an epoch has before training (Akrout et al.'s code); the
    mirror learning rate follows the forward schedule's factor (feedback_schedule='forward') or not."""
    for schedule in ("forward", "constant"):
        settings = MirrorSettings(lr=0.3, batch_size=8, pre_batches="epoch", batches_per_step=1)
        spec, plain, program, params, x, y = setup(2, "dense", WeightMirror(mirror=settings, feedback_schedule=schedule))
        (hooks,) = program.hooks
        calls = []
        original = hooks.mirror_batch
        hooks.mirror_batch = lambda run=None: calls.append(run) or original(run)
        optimizer = build_optimizer(SGD(lr=0.1, momentum=0.0), program.network.parameters())
        step = RuleStep(program, optimizer)
        step.batches_per_epoch = 7
        step.start()
        assert len(calls) == 7
        for group in optimizer.param_groups:
            group["initial_lr"], group["lr"] = 0.1, 0.01         # the schedule dropped lr tenfold
        noises = []
        draw = hooks.noise
        hooks.noise = lambda info: noises.append((info, draw(info))) or noises[-1][1]
        before = {k: v.clone() for k, v in program.state.items()}
        graph_inputs = {}
        original_graph = hooks.graph
        hooks.graph = lambda *flat: graph_inputs.setdefault("out", original_graph(*flat))
        step(x, y)
        lr = settings.lr * (0.1 if schedule == "forward" else 1.0)
        for (info, _), direction in zip(noises, graph_inputs["out"]):
            name = f"{info.name}.feedback"
            assert rel_error(program.state[name], before[name] + lr * direction) <= TOL, (schedule, name)


def test_weight_mirror_aligns_b_with_w():
    settings = MirrorSettings(lr=0.05, noise="gaussian", noise_sigma=1.0, response="linear", reduction="mean",
                              decay=0.5, batch_size=256, pre_batches=300)
    spec, plain, program, params, x, y = setup(5, "dense", WeightMirror(mirror=settings))
    (hooks,) = program.hooks
    angles0 = [angle(params[f"{n}.weight"], b) for n, b in hooks.feedback_tensors().items()]
    hooks.on_train_start(None)
    angles = [angle(params[f"{n}.weight"], b) for n, b in hooks.feedback_tensors().items()]
    assert min(angles0) > 45 and max(angles) < 10, (angles0, angles)


@pytest.mark.parametrize("kind", KINDS)
def test_direct_feedback_learned_by_kolen_pollack(kind):
    """A combination no paper ran: DFA's B learns from e^T h (the gradient of a direct readout in its place)."""
    lam, lr = 0.05, 0.1
    rule = Feedback(source="learned", learning="kolen_pollack", topology="direct", weight_decay=lam)
    spec, plain, program, params, x, y = setup(9, kind, rule, overrides=[])
    spec = spec.model_copy(update={"optimizer": SGD(lr=lr, momentum=0.0)})
    program = compile_experiment(spec)
    step = RuleStep(program, build_optimizer(spec.optimizer, program.network.parameters()))
    direct = {k.removesuffix(".feedback"): v.clone() for k, v in program.state.items()}
    grads = feedback_grads(plain, params, {}, x, y, spec.loss, direct=direct)
    # the output error and each layer's input, by hand
    inputs, h = {}, x
    from plain_nets import apply_layer, task_loss
    for layer in plain:
        if layer[0] in ("dense", "lc", "conv"):
            inputs[layer[1]] = h
        h = apply_layer(layer, params, h)
    logits = h.detach().requires_grad_(True)
    (e,) = torch.autograd.grad(task_loss(spec.loss, logits, y), logits)
    step(x, y)
    after = dict(program.network.named_parameters())
    for name in params:
        assert rel_error(after[name], params[name] - lr * grads[name]) <= TOL, name
    for name, b in direct.items():
        h_in = inputs[name].reshape(x.shape[0], -1)
        assert rel_error(program.state[f"{name}.feedback"], (1 - lam) * (b - lr * e.t() @ h_in)) <= TOL, name


# ---- parts, overrides, metrics, errors ---------------------------------------------------------------

@pytest.mark.parametrize("named,parts", [
    (DFA(), Feedback(source="random", topology="direct")),
    (SignSymmetry(), Feedback(source="sign")),
    (KolenPollack(), Feedback(source="learned", learning="kolen_pollack")),
    (WeightMirror(), Feedback(source="learned", learning="mirror")),
])
def test_named_rules_are_presets_of_their_parts(named, parts):
    a = compile_experiment(make_spec(6, "lc", named)[0])
    b = compile_experiment(make_spec(6, "lc", parts)[0])
    assert a.train_graph.code == b.train_graph.code
    assert a.state.keys() == b.state.keys() and all(torch.equal(a.state[k], b.state[k]) for k in a.state)


@pytest.mark.parametrize("kind", KINDS)
def test_mixed_rules_per_layer(kind):
    """The last layer learns with BP, the ones below with sign symmetry; and DFA below a BP top layer."""
    spec, plain, program, params, x, y = setup(7, kind, SignSymmetry(), overrides=[RuleOverride(layers=["out"], rule=BP())])
    assert program.layer_rules["out"] == "bp"
    feedback = {layer[1]: torch.sign(params[f"{layer[1]}.weight"]) * source_scale("xiao", layer, params[f"{layer[1]}.weight"])
                for layer in parametric(plain)[1:-1]}
    assert_close_all(run_graph(program, x, y), feedback_grads(plain, params, feedback, x, y, spec.loss))
    spec, plain, program, params, x, y = setup(7, kind, DFA(), overrides=[RuleOverride(layers=["out"], rule=BP())])
    direct = {k.removesuffix(".feedback"): v for k, v in program.state.items()}
    assert "out" not in direct
    assert_close_all(run_graph(program, x, y), feedback_grads(plain, params, {}, x, y, spec.loss, direct=direct))


def test_alignment_metrics_equal_plain_angles():
    spec, plain, program, params, x, y = setup(8, "lc", FA())
    measured = AlignmentProbe(program, x, y).measure()
    feedback = {k.removesuffix(".feedback"): v for k, v in program.state.items()}
    rule = feedback_grads(plain, params, feedback, x, y, spec.loss)
    true = bp_grads(plain, params, x, y, spec.loss)
    layers = parametric(plain)
    for layer in layers[:-1]:
        name = layer[1]
        assert measured[name]["update_angle"] == pytest.approx(angle(rule[f"{name}.weight"], true[f"{name}.weight"]), abs=1e-3)
    for name, b in feedback.items():
        w = params[f"{name}.weight"]
        assert measured[name]["feedback_angle"] == pytest.approx(angle(w, b), abs=1e-3)
        assert measured[name]["feedback_norm_ratio"] == pytest.approx(float(b.norm() / w.norm()), rel=1e-5)
    bp = compile_experiment(make_spec(8, "lc", BP())[0])
    for entry in AlignmentProbe(bp, x, y).measure().values():
        assert entry["update_angle"] < 0.1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rule", ["fa", "dfa"])
def test_delta_angle_equals_plain_per_example_angles(kind, rule):
    spec, plain, program, params, x, y = setup(9, kind, FA() if rule == "fa" else DFA())
    measured = AlignmentProbe(program, x, y).measure()
    state = {k.removesuffix(".feedback"): v for k, v in program.state.items()}
    rule_deltas, true_deltas = {}, {}
    if rule == "fa":
        feedback_grads(plain, params, state, x, y, spec.loss, deltas=rule_deltas)
    else:
        feedback_grads(plain, params, {}, x, y, spec.loss, direct=state, deltas=rule_deltas)
    feedback_grads(plain, params, {}, x, y, spec.loss, deltas=true_deltas)
    layers = parametric(plain)
    assert "delta_angle" not in measured.get(layers[-1][1], {})
    for layer in layers[:-1]:
        name = layer[1]
        expected = per_example_angle(rule_deltas[name], true_deltas[name])
        assert 5 < expected < 175          # a random feedback path: far from BP's deltas, so the check can fail
        assert measured[name]["delta_angle"] == pytest.approx(expected, abs=1e-3)
    bp = compile_experiment(make_spec(9, kind, BP())[0])
    for entry in AlignmentProbe(bp, x, y).measure().values():
        assert entry["delta_angle"] < 0.1


def test_override_naming_a_non_parametric_layer_fails_naming_both():
    spec, *_ = make_spec(0, "lc", FA(), overrides=[RuleOverride(layers=["act1"], rule=SignSymmetry())])
    with pytest.raises(BpcompileError, match=r"names layer 'act1' for rule 'sign_symmetry', but 'act1' is a Activation layer"):
        compile_experiment(spec)
