"""ResNets with batch norm under every weight-transport rule, against a plain implementation.

The reference below is written from the equations, not from bpcompile: a residual net built from
`torch.autograd.Function`s whose backward reads a chosen tensor B where BP reads W (convolution input
gradients as `conv_transpose2d`, weight gradients from `unfold`), plain `F.batch_norm` with its own
running statistics, and each rule's B (BP: W, FA / KP / WM: the feedback tensor, SS: sign(W) * scale).
One step through the runtime's RuleStep (graph, SGD with momentum and weight decay, the rule's hooks)
must give the same gradients, parameters, batch-norm statistics and feedback tensors to 1e-5."""

import math
import random

import pytest
import torch
import torch.nn.functional as F

from bpcompile.compiler import compile_experiment
from bpcompile.nn import build_network
from bpcompile.optim import build_optimizer
from bpcompile.runtime.step import RuleStep
from bpcompile.spec import (
    BP, FA, SGD, Activation, BatchNorm, Conv2d, Dense, ExperimentSpec, GlobalAvgPool, KolenPollack, MirrorSettings,
    NetworkSpec, ResNet, ResidualBlock, SignSymmetry, Synthetic, TrainSpec, WeightMirror,
)
from plain_nets import rel_error

TOL = 1e-5
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 1e-3


# ---- the plain reference ------------------------------------------------------------------------

class FeedbackConv2d(torch.autograd.Function):
    """y = conv(x, W); backward: dx = conv_transpose(dy, B), dW = sum over positions of dy x_patch^T."""

    @staticmethod
    def forward(ctx, x, weight, feedback, stride, padding):
        ctx.save_for_backward(x, weight, feedback)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, None, stride=stride, padding=padding)

    @staticmethod
    def backward(ctx, grad):
        x, weight, feedback = ctx.saved_tensors
        s, p, k = ctx.stride, ctx.padding, weight.shape[2]
        extra = [x.shape[i] - ((grad.shape[i] - 1) * s - 2 * p + k) for i in (2, 3)]
        grad_x = F.conv_transpose2d(grad, feedback, stride=s, padding=p, output_padding=extra)
        cols = F.unfold(x, k, padding=p, stride=s)                                # (N, C*k*k, L)
        grad_w = torch.einsum("nol,nkl->ok", grad.flatten(2), cols).reshape(weight.shape)
        return grad_x, grad_w, None, None, None


class FeedbackLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, feedback):
        ctx.save_for_backward(x, feedback)
        return x @ weight.t() + bias

    @staticmethod
    def backward(ctx, grad):
        x, feedback = ctx.saved_tensors
        return grad @ feedback, grad.t() @ x, grad.sum(0), None


def plain_step(blocks, params, buffers, feedback_of, x, y):
    """Loss gradients of the plain residual net; `buffers` (running statistics) are updated in place."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}

    def conv(h, name, stride, padding):
        w = leaves[f"{name}.weight"]
        return FeedbackConv2d.apply(h, w, feedback_of(name, w.detach()), stride, padding)

    def bn(h, name):
        buffers[f"{name}.num_batches_tracked"] += 1
        return F.batch_norm(h, buffers[f"{name}.running_mean"], buffers[f"{name}.running_var"],
                            leaves[f"{name}.weight"], leaves[f"{name}.bias"], training=True, momentum=0.1, eps=1e-5)

    h = torch.relu(bn(conv(x, "stem", 1, 1), "stem_bn"))
    for name, channels, stride, bottleneck in blocks:
        if bottleneck:
            out = torch.relu(bn(conv(h, f"{name}.conv1", 1, 0), f"{name}.bn1"))
            out = torch.relu(bn(conv(out, f"{name}.conv2", stride, 1), f"{name}.bn2"))
            out = bn(conv(out, f"{name}.conv3", 1, 0), f"{name}.bn3")
        else:
            out = torch.relu(bn(conv(h, f"{name}.conv1", stride, 1), f"{name}.bn1"))
            out = bn(conv(out, f"{name}.conv2", 1, 1), f"{name}.bn2")
        skip = h
        if f"{name}.proj.weight" in leaves:
            skip = bn(conv(h, f"{name}.proj", stride, 0), f"{name}.proj_bn")
        h = torch.relu(out + skip)
    w = leaves["out.weight"]
    logits = FeedbackLinear.apply(h.mean((2, 3)), w, leaves["out.bias"], feedback_of("out", w.detach()))
    loss = F.cross_entropy(logits, y)
    return dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))


def random_resnet(seed):
    """(spec layers, plain block list, input shape, classes): stem, basic and bottleneck blocks with and
    without projection shortcuts, random widths, strides and input size."""
    rng = random.Random(seed)
    width = rng.randint(2, 4)
    layers = [Conv2d(name="stem", channels=width, kernel=3, bias=False), BatchNorm(name="stem_bn"),
              Activation(fn="relu")]
    blocks = []
    for i, (bottleneck, stride) in enumerate([(False, 1), (False, 2), (True, rng.choice([1, 2]))], start=1):
        channels = rng.randint(2, 5)
        layers.append(ResidualBlock(name=f"b{i}", channels=channels, stride=stride, bottleneck=bottleneck))
        blocks.append((f"b{i}", channels, stride, bottleneck))
    classes = rng.randint(3, 7)
    layers += [GlobalAvgPool(), Dense(name="out", units=classes)]
    size = rng.randint(7, 11)
    return layers, blocks, (3, size, size), classes


def setup(seed, rule):
    layers, blocks, shape, classes = random_resnet(seed)
    spec = ExperimentSpec(name="resnet", data=Synthetic(input_shape=list(shape), num_classes=classes),
                          network=NetworkSpec(layers=layers), rule=rule,
                          optimizer=SGD(lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY), train=TrainSpec(seed=seed))
    program = compile_experiment(spec)
    g = torch.Generator().manual_seed(seed)
    batch = 4 + seed % 4
    x, y = torch.randn(batch, *shape, generator=g), torch.randint(0, classes, (batch,), generator=g)
    return spec, program, blocks, x, y


def snapshot(program):
    params = {k: v.detach().clone() for k, v in program.network.named_parameters()}
    buffers = {k: v.detach().clone() for k, v in program.network.named_buffers()}
    state = {k: v.detach().clone() for k, v in program.state.items()}
    return params, buffers, state


def check_step(program, step, expected_grads, params, expected_buffers, x, y):
    """Gradients the step handed the optimiser, parameters after SGD, and batch-norm statistics."""
    network_params = dict(program.network.named_parameters())
    for name, grad in expected_grads.items():
        assert rel_error(network_params[name].grad, grad) <= TOL, f"gradient of {name}"
        expected = params[name] - LR * (grad + WEIGHT_DECAY * params[name])     # SGD's first step
        assert rel_error(network_params[name], expected) <= TOL, f"parameter {name}"
    for name, value in program.network.named_buffers():
        if name.endswith("num_batches_tracked"):
            assert int(value) == int(expected_buffers[name]) == 1, name
        else:
            assert rel_error(value, expected_buffers[name]) <= TOL, f"batch-norm statistic {name}"


def conv_fan_out(weight):
    return weight.shape[0] * weight[0, 0].numel() if weight.dim() == 4 else weight.shape[0]


# ---- one step under each rule -------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(2))
def test_bp_step_equals_plain_autograd_and_updates_batch_norm_statistics(seed):
    spec, program, blocks, x, y = setup(seed, BP())
    params, buffers, _ = snapshot(program)
    expected = plain_step(blocks, params, buffers, lambda name, w: w, x, y)
    # the plain net with B = W is plain backprop: its gradients are autograd's through F.conv2d / F.linear
    step = RuleStep(program, build_optimizer(spec.optimizer, program.network.parameters()))
    step(x, y)
    check_step(program, step, expected, params, buffers, x, y)


@pytest.mark.parametrize("rule", [FA(), SignSymmetry(variant="usf"), SignSymmetry(magnitudes="unit")],
                         ids=["fa", "ss_usf", "ss_unit"])
def test_fixed_feedback_rules_step_equals_plain(rule):
    seed = 2
    spec, program, blocks, x, y = setup(seed, rule)
    params, buffers, state = snapshot(program)

    def feedback_of(name, w):
        if name == "stem":
            return w        # the first layer's input gradient is never used
        if rule.name == "fa":
            return state[f"{name}.feedback"]
        # Xiao et al.'s scales: sqrt(2 / (k^2 C_out)) for the convs, 1 / sqrt(fan_in) for the classifier
        if rule.magnitudes == "unit":
            scale = 1.0
        elif w.dim() == 4:
            scale = math.sqrt(2.0 / conv_fan_out(w))
        else:
            scale = 1.0 / math.sqrt(w.shape[1])
        return torch.sign(w) * scale

    if rule.name == "fa":
        assert sorted(k.removesuffix(".feedback") for k in state) == sorted(
            info.name for info in program.network.layer_table if info.name != "stem")
    expected = plain_step(blocks, params, buffers, feedback_of, x, y)
    step = RuleStep(program, build_optimizer(spec.optimizer, program.network.parameters()))
    step(x, y)
    check_step(program, step, expected, params, buffers, x, y)


def test_kolen_pollack_step_equals_plain_paired_update():
    lam = 0.01
    spec, program, blocks, x, y = setup(3, KolenPollack(weight_decay=lam))
    params, buffers, state = snapshot(program)
    expected = plain_step(blocks, params, buffers, lambda name, w: state.get(f"{name}.feedback", w), x, y)
    step = RuleStep(program, build_optimizer(spec.optimizer, program.network.parameters()))
    step(x, y)
    after = dict(program.network.named_parameters())
    for name, grad in expected.items():
        assert rel_error(after[name].grad, grad) <= TOL, name
        update = -LR * (grad + WEIGHT_DECAY * params[name])
        trained_by_kp = name.removesuffix(".weight") in program.layer_rules and name.endswith(".weight")
        decay = (1 - lam) if trained_by_kp else 1.0     # every conv / dense weight decays, the first layer's too
        assert rel_error(after[name], decay * (params[name] + update)) <= TOL, name
        feedback = name.removesuffix(".weight") + ".feedback"
        if name.endswith(".weight") and feedback in state:
            # B gets W's update and the same decay: W - B shrinks by (1 - lambda)
            assert rel_error(program.state[feedback], (1 - lam) * (state[feedback] + update)) <= TOL, feedback
    for name, value in program.network.named_buffers():
        assert rel_error(value.float(), buffers[name].float()) <= TOL, name


def test_weight_mirror_step_and_mirror_batch_equal_plain():
    # conv noise maps of 4x4 (smaller than most layers' inputs): each kernel offset still averages over its own
    # in-bounds positions
    settings = MirrorSettings(lr=0.05, noise="gaussian", noise_sigma=0.7, response="linear", reduction="mean",
                              decay=0.3, batch_size=2, pre_batches=0, batches_per_step=1, conv_noise_size=4)
    spec, program, blocks, x, y = setup(4, WeightMirror(mirror=settings))
    (hooks,) = program.hooks
    noises = []
    draw = hooks.noise
    hooks.noise = lambda info: noises.append((info, draw(info))) or noises[-1][1]
    params, buffers, state = snapshot(program)
    expected = plain_step(blocks, params, buffers, lambda name, w: state.get(f"{name}.feedback", w), x, y)
    step = RuleStep(program, build_optimizer(spec.optimizer, program.network.parameters()))
    step.start()
    step(x, y)
    check_step(program, step, expected, params, buffers, x, y)
    # one mirror batch after the step, with the new W: B += lr * (mean over samples of y x^T - decay * B)
    after = dict(program.network.named_parameters())
    assert len(noises) == len(state)
    assert any(noise.shape[2:] != info.in_shape[1:] for info, noise in noises if info.type == "conv2d")
    for info, noise in noises:
        w = after[info.weight].detach()
        if info.type == "conv2d":
            y_noise = F.conv2d(noise, w, stride=info.geometry["stride"], padding=info.geometry["padding"])
            cols = F.unfold(noise, w.shape[2], padding=info.geometry["padding"], stride=info.geometry["stride"])
            # each kernel offset averages over the output positions where it lands inside the input
            in_bounds = F.unfold(torch.ones_like(noise[:1]), w.shape[2], padding=info.geometry["padding"],
                                 stride=info.geometry["stride"]).sum(-1).reshape(1, *w.shape[1:])
            direction = torch.einsum("nol,nkl->ok", y_noise.flatten(2), cols).reshape(w.shape)
            direction = direction / (noise.shape[0] * in_bounds)
        else:
            y_noise = noise @ w.t()
            direction = y_noise.t() @ noise / noise.shape[0]
        b = state[f"{info.name}.feedback"]
        expected_b = b + settings.lr * (direction - settings.decay * b)
        assert rel_error(program.state[f"{info.name}.feedback"], expected_b) <= TOL, info.name


def test_weight_mirror_aligns_conv_feedback_with_w():
    """Mirror batches alone turn every conv layer's B towards W (and keep its scale near sigma^2 / decay * W)."""
    settings = MirrorSettings(lr=0.02, noise="gaussian", noise_sigma=1.0, response="linear", reduction="mean",
                              decay=1.0, batch_size=8, pre_batches=300, conv_noise_size=5)
    spec, program, *_ = setup(5, WeightMirror(mirror=settings))
    (hooks,) = program.hooks
    weights = dict(program.network.named_parameters())
    hooks.on_train_start(None)
    for name, b in hooks.feedback_tensors().items():
        w = weights[f"{name}.weight"].detach()
        cosine = float((w.flatten() @ b.flatten()) / (w.norm() * b.norm()))
        assert cosine > 0.95, name
        assert 0.5 < float(b.norm() / w.norm()) < 1.5, name


def test_alignment_probe_leaves_batch_norm_statistics_alone():
    """The probe runs the training graphs (train-mode batch norm) on its batch; the running statistics and
    batch counts must come out as they went in, or every probe would count as a training batch."""
    from bpcompile.runtime.metrics import AlignmentProbe

    spec, program, blocks, x, y = setup(7, FA())
    before = {k: v.clone() for k, v in program.network.named_buffers()}
    layers = AlignmentProbe(program, x, y).measure()
    assert "stem" in layers and "feedback_angle" in layers["b1.conv1"]
    for name, value in program.network.named_buffers():
        assert torch.equal(value, before[name]), name


# ---- the macros -------------------------------------------------------------------------------------

@pytest.mark.parametrize("depth,stem,params", [(18, "imagenet", 11_689_512), (50, "imagenet", 25_557_032),
                                               (18, "cifar", 11_173_962)])
def test_resnet_macros_have_the_standard_parameter_counts(depth, stem, params):
    """The counts of the standard ResNet-18 / ResNet-50 (1000 classes) and the CIFAR ResNet-18 (10 classes)."""
    classes = 1000 if stem == "imagenet" else 10
    size = 224 if stem == "imagenet" else 32
    network = build_network(NetworkSpec(layers=[ResNet(depth=depth, stem=stem, num_classes=classes)]),
                            (3, size, size), classes, 0)
    assert sum(p.numel() for p in network.parameters()) == params
    convs = [info for info in network.layer_table if info.type == "conv2d"]
    assert len(convs) == (20 if depth == 18 else 53)
    assert network.layer_table[-1].name == "fc"


def test_bf16_and_channels_last_graphs():
    """bf16: casts are graph nodes, gradients return in fp32 and stay close to fp32's; every rule still
    rewrites its layers (FA reads B through a cast). channels-last: the same updates as the default layout."""
    layers, blocks, shape, classes = random_resnet(6)
    results = {}
    x = torch.randn(6, *shape, generator=torch.Generator().manual_seed(0))
    y = torch.arange(6) % classes
    for precision, channels_last in [("fp32", False), ("bf16", False), ("fp32", True)]:
        spec = ExperimentSpec(name="r", data=Synthetic(input_shape=list(shape), num_classes=classes),
                              network=NetworkSpec(layers=layers), rule=FA(),
                              train=TrainSpec(precision=precision, channels_last=channels_last))
        program = compile_experiment(spec)
        outputs = program.train_graph(*program.graph_inputs(program.train_signature, x, y))
        results[precision, channels_last] = {s.name: outputs[i] for i, s in enumerate(program.train_signature.outputs)
                                             if s.kind == "grad"}
        code = program.train_graph.code
        assert ("torch.bfloat16" in code) == (precision == "bf16")
        assert ("torch.channels_last" in code) == channels_last
        assert len(program.rewrites) == len(program.network.layer_table) - 1
    reference = results["fp32", False]
    cosines = []
    for name, grad in results["bf16", False].items():
        assert grad.dtype == torch.float32
        cosines.append(float((grad.flatten() @ reference[name].flatten()) / (grad.norm() * reference[name].norm())))
    # bf16 keeps ~3 significant digits; errors grow towards the first layer (measured: worst ~0.96)
    assert min(cosines) > 0.9 and sum(cosines) / len(cosines) > 0.97, cosines
    for name, grad in results["fp32", True].items():
        assert rel_error(grad, reference[name]) <= 1e-4, name


def test_channels_last_1x1_stride2_weight_gradient_is_right_on_cpu():
    """torch's CPU weight gradient of a channels-last 1x1 stride-2 convolution is wrong (torch 2.13); ours is not."""
    from bpcompile.nn.ops.conv import conv2d_grad_weight_reference

    g = torch.Generator().manual_seed(0)
    x, grad = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 5, 4, 4, generator=g)
    cl = torch.channels_last
    expected = torch.einsum("nol,nkl->ok", grad.flatten(2), F.unfold(x, 1, stride=2)).reshape(5, 3, 1, 1)
    got = conv2d_grad_weight_reference(grad.contiguous(memory_format=cl), x.contiguous(memory_format=cl), 1, 2, 0)
    assert rel_error(got, expected) <= TOL
