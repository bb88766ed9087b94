"""Target propagation (TP, DTP, SDTP, AO-SDTP): one compiled step, run by the runtime's RuleStep
(graph, forward optimiser, inverse optimiser), equals the plain hand-written step of
tests/plain_tp.py on random dense, locally connected and conv nets: the targets, the local and
inverse losses, and every forward and inverse parameter update."""

import math
from types import SimpleNamespace

import pytest
import torch

from bpcompile.compiler import compile_experiment
from bpcompile.compiler.dump import dump_text
from bpcompile.compiler.rules.target_propagation import InverseHooks
from bpcompile.errors import BpcompileError
from bpcompile.optim import build_optimizer
from bpcompile.runtime.metrics import AlignmentProbe
from bpcompile.runtime.schedule import epoch_steps, steps_per_epoch
from bpcompile.runtime.step import RuleStep
from bpcompile.spec import (
    AOSDTP, DTP, SDTP, SGD, TP, Activation, Adam, Alternation, Dense, ExperimentSpec, Flatten, LocallyConnected,
    NetworkSpec, Pool, Synthetic, TrainSpec,
)
from plain_nets import rel_error
from plain_tp import tp_step
from random_nets import batch, make_spec

LR, INVERSE_LR = 0.1, 0.05
TOL = 1e-5


@pytest.fixture(autouse=True)
def float64():
    """Compile and run in float64: DTP's difference corrections h + g(t) - g(h) cancel, so float32
    rounding alone reaches ~1e-5 in the bottom layers' updates; in float64 the <= 1e-5 checks
    measure the algorithm, not rounding. (The training runs in results/ are float32.)"""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def rule_of(name, schedule="parallel", sigma=0.3):
    common = dict(schedule=schedule, noise_sigma=sigma, inverse_optimizer=SGD(lr=INVERSE_LR, momentum=0.0))
    return {"tp": lambda: TP(alpha=0.2, **common), "dtp": lambda: DTP(alpha=0.15, **common),
            "sdtp": lambda: SDTP(**common), "ao_sdtp": lambda: AOSDTP(aux_units=7, **common)}[name]()


def two_lc_net():
    """Two LC layers (so an LC layer gets an inverse: the transposed LC map), then dense layers."""
    layers = [LocallyConnected(name="lc1", channels=3, kernel=3, stride=2), Activation(fn="tanh"),
              LocallyConnected(name="lc2", channels=2, kernel=2, stride=1, padding="valid"), Activation(fn="relu"),
              Flatten(), Dense(name="fc1", units=5), Activation(fn="tanh"), Dense(name="out", units=4)]
    plain = [("lc", "lc1", 3, 2, 1), ("act", "tanh"), ("lc", "lc2", 2, 1, 0), ("act", "relu"), ("flatten",),
             ("dense", "fc1"), ("act", "tanh"), ("dense", "out")]
    return layers, plain, (2, 7, 7), 4


def spec_for(net, rule, seed, loss="softmax_cross_entropy"):
    layers, plain, shape, classes = net
    spec = ExperimentSpec(name="t", data=Synthetic(input_shape=list(shape), num_classes=classes),
                          network=NetworkSpec(layers=layers), loss=loss, rule=rule, optimizer=SGD(lr=LR, momentum=0.0),
                          train=TrainSpec(seed=seed))
    return spec, plain, shape, classes


class Recorded:
    """Runs RuleStep with noise drawn from a known generator, recording the noise it drew."""

    def __init__(self, spec, seed):
        self.program = compile_experiment(spec)
        self.step = RuleStep(self.program, build_optimizer(spec.optimizer, self.program.network.parameters()), seed)
        generator = torch.Generator().manual_seed(seed + 7)
        self.noise = {}

        def noise(name, shape):
            self.noise[name.split(":", 1)[1]] = torch.randn(shape, generator=generator)
            return self.noise[name.split(":", 1)[1]]

        self.step.noise = noise

    def snapshot(self):
        params = {k: v.detach().clone() for k, v in self.program.network.named_parameters()}
        return params, {k: v.clone() for k, v in self.program.state.items()}

    def __call__(self, x, y, phase="train"):
        self.noise.clear()
        self.step.select(phase)
        before = self.snapshot()
        self.step(x, y)
        return before, self.snapshot()


def reference(spec, plain, params, state, x, y, noise):
    inverses = {}
    for name in state:
        if name.endswith(".inverse_weight"):
            layer = name[: -len(".inverse_weight")]
            inverses[layer] = (state[name], state[f"{layer}.inverse_bias"])
    return tp_step(spec.rule, plain, params, inverses, x, y, spec.loss, noise, aux=state.get("out.aux_weight"))


def check_step(spec, plain, shape, classes, seed, phases=("train",)):
    run = Recorded(spec, seed)
    x, y = batch(shape, classes, seed, size=6)
    for phase in phases:
        (params, state), (params_after, state_after) = run(x, y, phase)
        assert run.step.phase == phase
        targets, local, inverse_losses, grads = reference(spec, plain, params, state, x, y, run.noise)
        outputs = run.step.last_outputs
        forward, inverse = phase in ("train", "forward"), phase in ("train", "inverse")
        if forward:
            assert {n for k, n in outputs if k == "target"} == set(targets)
            for layer, target in targets.items():
                assert rel_error(outputs[("target", layer)], target) < TOL, ("target", layer)
                assert rel_error(outputs[("local_loss", layer)], local[layer]) < TOL, ("local loss", layer)
        if inverse:
            assert {n for k, n in outputs if k == "inverse_loss"} == set(inverse_losses)
            for layer, value in inverse_losses.items():
                assert rel_error(outputs[("inverse_loss", layer)], value) < TOL, ("inverse loss", layer)
        # the rule's update directions (what the optimisers got in .grad), and the optimisers' steps
        trained = dict(run.program.network.named_parameters()) | run.program.state
        for name, before in (params | state).items():
            after = params_after[name] if name in params else state_after[name]
            lr = LR if name in params else INVERSE_LR
            if name in grads and (forward if name in params else inverse):
                assert rel_error(trained[name].grad, grads[name]) < TOL, name
                assert torch.allclose(after, before - lr * grads[name], rtol=1e-5, atol=1e-7), name
            else:
                assert trained[name].grad is None and torch.equal(after, before), name
    return run


# more random nets per variant beside the conformance suite's dense, LC and conv one (test_rule_conformance.py)
@pytest.mark.parametrize("rule", ["tp", "dtp", "sdtp", "ao_sdtp"])
@pytest.mark.parametrize("kind,seed", [("dense", 2), ("lc", 4)])
def test_one_parallel_step_equals_the_plain_algorithm_on_random_nets(rule, kind, seed):
    spec, plain, shape, classes = make_spec(seed, kind, rule_of(rule))
    spec = spec.model_copy(update={"optimizer": SGD(lr=LR, momentum=0.0)})
    check_step(spec, plain, shape, classes, seed)


# the spec options that explore Bartunov et al.'s unstated choices (docs/DEVIATIONS.md), each against the plain step
OPTIONS = [
    ("tp", {"loss_reduction": "mean", "first_target_gradient": "batch_mean"}),
    ("dtp", {"loss_reduction": "mean"}),
    ("dtp", {"first_target_gradient": "batch_mean"}),
    ("sdtp", {"loss_reduction": "mean"}),
    ("ao_sdtp", {"aux_activation": "tanh", "aux_units": 3}),
    ("ao_sdtp", {"loss_reduction": "mean", "aux_units": 13}),
]


@pytest.mark.parametrize("rule,options", OPTIONS)
@pytest.mark.parametrize("kind,seed", [("dense", 21), ("lc", 22), ("conv", 23)])
def test_rule_options_equal_the_plain_algorithm_on_random_nets(rule, options, kind, seed):
    spec, plain, shape, classes = make_spec(seed, kind, rule_of(rule).model_copy(update=options))
    spec = spec.model_copy(update={"optimizer": SGD(lr=LR, momentum=0.0)})
    check_step(spec, plain, shape, classes, seed)


def test_inverse_error_is_per_unit_whatever_the_loss_reduction():
    """The probe's inverse_error is mean ||g(f(h)) - h||^2 per unit of h: the same number for both reductions."""
    errors = []
    for reduction in ("sum", "mean"):
        spec, _, shape, classes = spec_for(two_lc_net(), rule_of("sdtp").model_copy(update={"loss_reduction": reduction}),
                                           seed=32)
        program = compile_experiment(spec)
        x, y = batch(shape, classes, 32, size=6)
        layers = AlignmentProbe(program, x, y).measure()
        errors.append({name: entry["inverse_error"] for name, entry in layers.items() if "inverse_error" in entry})
    assert set(errors[0]) == {"lc2", "fc1", "out"}
    for name in errors[0]:
        assert errors[0][name] == pytest.approx(errors[1][name], rel=1e-9), name


def test_options_change_the_step():
    """Each option reaches the compiled program: its targets, losses or updates differ from the default's."""
    x, y = batch((2, 7, 7), 4, 31, size=6)
    def outputs(rule):
        spec, *_ = spec_for(two_lc_net(), rule, seed=31)
        run = Recorded(spec, 31)
        run(x, y)
        return run.step.last_outputs
    for rule, options in OPTIONS:
        base, changed = outputs(rule_of(rule)), outputs(rule_of(rule).model_copy(update=options))
        if "aux_units" in options:     # a different width: the target of the top hidden layer differs
            assert not torch.allclose(base[("target", "fc1")], changed[("target", "fc1")]), options
            continue
        assert any(not torch.allclose(base[k], changed[k]) for k in base), options


@pytest.mark.parametrize("rule", ["dtp", "sdtp", "ao_sdtp"])
def test_lc_inverses_are_transposed_lc_maps_and_match_the_plain_algorithm(rule):
    spec, plain, shape, classes = spec_for(two_lc_net(), rule_of(rule), seed=11)
    run = check_step(spec, plain, shape, classes, seed=11)
    state = run.program.state
    weights = dict(run.program.network.named_parameters())
    assert state["lc2.inverse_weight"].shape == weights["lc2.weight"].shape   # W's layout, W^T's connectivity
    assert state["lc2.inverse_bias"].shape == (3, 4, 4)                       # lc1's output
    assert ("lc1.inverse_weight" in state) is False                            # the first layer has no inverse
    assert ("out.inverse_weight" in state) is (rule != "dtp")                  # DTP's first target is a gradient step
    if rule == "ao_sdtp":
        assert state["out.aux_weight"].shape == (7, 5)
        assert state["out.inverse_weight"].shape == (4 + 7, 5)


@pytest.mark.parametrize("rule", ["dtp", "sdtp"])
def test_alternating_phases_train_only_their_own_parameters(rule):
    spec, plain, shape, classes = spec_for(two_lc_net(), rule_of(rule, "alternating"), seed=12)
    run = check_step(spec, plain, shape, classes, seed=12, phases=("inverse", "forward", "inverse"))
    assert run.program.schedule == ["inverse", "forward"]


class Batches:
    """A loader of `n` batches whose batch b of epoch e is (e, b)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def epoch(self, epoch):
        return ((epoch, b) for b in range(self.n))


@pytest.mark.parametrize("alternation,expected", [
    (Alternation(), [("inverse", b) for b in range(5)] + [("forward", b) for b in range(5)]),
    (Alternation(block_batches=2, inverse_passes=2),
     [("inverse", 0), ("inverse", 1), ("inverse", 0), ("inverse", 1), ("forward", 0), ("forward", 1),
      ("inverse", 2), ("inverse", 3), ("inverse", 2), ("inverse", 3), ("forward", 2), ("forward", 3),
      ("inverse", 4), ("inverse", 4), ("forward", 4)]),
    (Alternation(block_batches=1, forward_passes=2),
     [step for b in range(5) for step in (("inverse", b), ("forward", b), ("forward", b))]),
    (None, [("train", b) for b in range(5)]),
])
def test_schedule_turns_cover_the_epoch_in_blocks(alternation, expected):
    program = SimpleNamespace(schedule=["train"] if alternation is None else ["inverse", "forward"],
                              alternation=alternation)
    steps = list(epoch_steps(program, Batches(5), epoch=3))
    assert [(phase, index) for phase, index, _ in steps] == expected
    assert all(batch == (3, index) for _, index, batch in steps)      # each turn reads the epoch's own batches
    assert steps_per_epoch(program, Batches(5)) == len(steps)


def test_alternation_is_refused_with_the_parallel_schedule():
    with pytest.raises(ValueError, match="alternation only applies to schedule='alternating'"):
        SDTP(alternation=Alternation(block_batches=4))


@pytest.mark.parametrize("loss", ["sigmoid_cross_entropy", "mse"])
def test_output_activity_follows_the_loss(loss):
    spec, plain, shape, classes = spec_for(two_lc_net(), rule_of("sdtp"), seed=13, loss=loss)
    check_step(spec, plain, shape, classes, seed=13)


def test_inspect_shows_targets_inverse_passes_and_losses():
    spec, *_ = spec_for(two_lc_net(), rule_of("sdtp", "alternating"), seed=0)
    text = dump_text(compile_experiment(spec))
    for needle in ["target_lc1 = ", "target_lc2 = ", "local_loss_fc1 = ", "inverse_loss_lc2 = ",
                   "bpcompile.locally_connected_grad_input(", "lc2_inverse_weight", "# lc2 inverse",
                   "# lc2 inverse_grad_weight", "noise_lc2: noise", "# schedule: alternating turns over the whole epoch: 1 pass(es) of the 'inverse' part"]:
        assert needle in text, needle


def test_networks_without_an_inverse_are_refused_naming_the_layer():
    layers = [LocallyConnected(name="lc1", channels=2, kernel=3), Activation(fn="tanh"), Pool(kind="max", kernel=2),
              Flatten(), Dense(name="out", units=3)]
    spec = ExperimentSpec(name="t", data=Synthetic(input_shape=[1, 6, 6], num_classes=3),
                          network=NetworkSpec(layers=layers), rule=SDTP())
    with pytest.raises(BpcompileError, match=r"layer 'pool1' \(Pool\).*no inverse"):
        compile_experiment(spec)


def test_divergent_targets_are_reported_naming_the_layer():
    spec, plain, shape, classes = spec_for(two_lc_net(), rule_of("dtp"), seed=14)
    spec = spec.model_copy(update={"rule": spec.rule.model_copy(update={"alpha": 1e12})})
    run = Recorded(spec, 14)
    x, y = batch(shape, classes, 14, size=6)
    run(x, y)
    assert "the targets of layer 'fc1' exploded" in run.step.check()


def test_inverse_hooks_set_the_scheduled_rate_once_per_epoch():
    """InverseHooks gives the inverse optimiser its schedule's rate for the current epoch (a plain cosine here)
    at the epoch's first step and leaves it alone for the epoch's other steps."""
    spec = Adam(lr=0.02, schedule={"name": "cosine"})
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([weight], lr=spec.lr)
    hooks = InverseHooks(optimizer, spec)
    epochs = 4
    for epoch in range(epochs):
        run = SimpleNamespace(epoch=epoch, epochs=epochs)
        weight.grad = torch.ones(3)
        hooks.after_step(run)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.02 * 0.5 * (1 + math.cos(math.pi * epoch / epochs)))
        optimizer.param_groups[0]["lr"] = 123.0           # a later step of the same epoch keeps what it finds
        hooks.after_step(run)
        assert optimizer.param_groups[0]["lr"] == 123.0
