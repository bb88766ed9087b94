"""Random small dense / locally connected / conv nets as (bpcompile spec, plain layer list) pairs."""

import random

import torch

from bpcompile.spec import (
    Activation, Conv2d, Dense, ExperimentSpec, Flatten, LocallyConnected, NetworkSpec, Synthetic, TrainSpec,
)


def random_net(seed, kind):
    """(spec layers, plain layers, input shape, classes) of a random dense / lc / conv net."""
    rng = random.Random(seed)
    classes = rng.randint(2, 6)
    spec_layers, plain = [], []
    fn = lambda: rng.choice(["tanh", "relu", "sigmoid"])  # noqa: E731
    if kind == "dense":
        shape = (rng.randint(3, 12),)
    else:
        shape = (rng.randint(1, 3), rng.randint(5, 9), rng.randint(5, 9))
        h, w = shape[1:]
        for i in range(1, rng.randint(1, 2) + 1):
            kernel = rng.choice([1, 2, 3])
            stride = rng.choice([1, 2])
            padding = rng.choice(["same", "valid", 1]) if kernel > 1 else 0
            pad = {"same": kernel // 2, "valid": 0}.get(padding, padding)
            if (h + 2 * pad - kernel) // stride + 1 < 1 or (w + 2 * pad - kernel) // stride + 1 < 1:
                continue
            channels = rng.randint(2, 4)
            name = f"{kind}{i}"
            if kind == "lc":
                spec_layers.append(LocallyConnected(name=name, channels=channels, kernel=kernel, stride=stride, padding=padding))
                plain.append(("lc", name, kernel, stride, pad))
            else:
                spec_layers.append(Conv2d(name=name, channels=channels, kernel=kernel, stride=stride, padding=padding))
                plain.append(("conv", name, stride, pad))
            a = fn()
            spec_layers.append(Activation(fn=a))
            plain.append(("act", a))
            h = (h + 2 * pad - kernel) // stride + 1
            w = (w + 2 * pad - kernel) // stride + 1
        spec_layers.append(Flatten())
        plain.append(("flatten",))
    for i in range(1, rng.randint(1, 3) + 1):
        a = fn()
        spec_layers += [Dense(name=f"fc{i}", units=rng.randint(3, 9)), Activation(fn=a)]
        plain += [("dense", f"fc{i}"), ("act", a)]
    spec_layers.append(Dense(name="out", units=classes))
    plain.append(("dense", "out"))
    return spec_layers, plain, shape, classes


def make_spec(seed, kind, rule, loss=None, overrides=()):
    """(spec, plain layers, input shape, classes) for a random net of `kind` trained by `rule`."""
    layers, plain, shape, classes = random_net(seed, kind)
    loss = loss or random.Random(seed).choice(["softmax_cross_entropy", "sigmoid_cross_entropy", "mse"])
    spec = ExperimentSpec(
        name="t", data=Synthetic(input_shape=list(shape), num_classes=classes), network=NetworkSpec(layers=layers),
        loss=loss, rule=rule, rule_overrides=list(overrides), train=TrainSpec(seed=seed),
    )
    return spec, plain, shape, classes


def run_graph(program, x, y):
    outputs = program.train_graph(*program.graph_inputs(program.train_signature, x, y))
    return {s.name: outputs[i] for i, s in enumerate(program.train_signature.outputs)}


def batch(shape, classes, seed, size=None):
    g = torch.Generator().manual_seed(seed + 100)
    size = size or 4 + seed % 5
    return torch.randn(size, *shape, generator=g), torch.randint(0, classes, (size,), generator=g)
