"""BioTorch's MNIST LeNet benchmark as data (jsalbert/biotorch, the peer users compare with).

    lenet_experiment("usf")   # -> ExperimentSpec

Net (biotorch/models/le_net.py, LeNetMNIST): conv 5x5x6, ReLU, max pool 2, conv 5x5x16, ReLU, max pool 2,
conv 5x5x120, ReLU, FC 84, ReLU, FC 10, no padding, on 32x32 inputs (its MNIST transform resizes 28 -> 32 and
normalises). Xavier (Glorot uniform) init, zero biases, every layer trained by the rule.
Recipe: Benchmarks.md's MNIST prose (SGD, momentum 0.9, weight decay 1e-3, batch 64, 100 epochs, lr / 10 at
epochs 50 and 75) with the per-rule learning rates of benchmark_configs/cifar10/le_net/sgd/*.yaml (the only
per-rule rates BioTorch publishes; no MNIST config is in the repository): BP, uSF, brSF, frSF 0.1, FA 1e-3,
DFA 1e-4. Rules: uSF / brSF / frSF with BioTorch's magnitudes (Xavier std scale; |Xavier draws|), DFA in
BioTorch's forms (layers/dfa/): a Glorot (classes, features) B for dense layers, a Glorot (classes, C_in, k, k)
kernel for conv layers (conv_feedback 'kernel'). BioTorch's published MNIST errors (Benchmarks.md, top-1 %, 100 epochs) are in
BENCHMARK_ERRORS."""

from .data import MNIST
from .experiment import ExperimentSpec, NetworkSpec
from .init import GlorotUniform
from .layers import Activation, Conv2d, Dense, Flatten, Pool
from .optim import SGD, MultiStepLR
from .rules import BP, DFA, FA, SignSymmetry
from .train import TrainSpec

RULES = ("bp", "fa", "dfa", "usf", "brsf", "frsf")
LEARNING_RATES = {"bp": 0.1, "fa": 1e-3, "dfa": 1e-4, "usf": 0.1, "brsf": 0.1, "frsf": 0.1}
BENCHMARK_ERRORS = {"bp": 0.91, "fa": 1.7, "dfa": 1.61, "usf": 0.94, "brsf": 0.91, "frsf": 0.97}


def lenet_layers() -> list:
    return [
        Conv2d(name="conv1", channels=6, kernel=5, padding="valid"), Activation(fn="relu"), Pool(kind="max", kernel=2),
        Conv2d(name="conv2", channels=16, kernel=5, padding="valid"), Activation(fn="relu"), Pool(kind="max", kernel=2),
        Conv2d(name="conv3", channels=120, kernel=5, padding="valid"), Activation(fn="relu"), Flatten(),
        Dense(name="fc1", units=84), Activation(fn="relu"),
        Dense(name="fc2", units=10),
    ]


def rule_spec(rule: str):
    if rule == "bp":
        return BP()
    if rule == "fa":
        return FA()
    if rule == "dfa":
        return DFA(feedback_init=GlorotUniform(), conv_feedback="kernel")
    if rule in ("usf", "brsf", "frsf"):
        return SignSymmetry(variant=rule, magnitudes="biotorch")
    raise ValueError(f"rule must be one of {RULES}, not {rule!r}")


def lenet_experiment(rule: str, epochs: int = 100, name: str | None = None) -> ExperimentSpec:
    return ExperimentSpec(
        name=name or f"mnist_lenet_{rule}",
        description=(f"BioTorch's MNIST LeNet benchmark under {rule}: SGD lr {LEARNING_RATES[rule]:g}, momentum 0.9, "
                     f"weight decay 1e-3, batch 64, lr / 10 at epochs 50 and 75, 32x32 inputs (BioTorch's "
                     f"Benchmarks.md: {BENCHMARK_ERRORS[rule]}% top-1 error after 100 epochs)."),
        data=MNIST(batch_size=64, image_size=32),
        network=NetworkSpec(layers=lenet_layers(), init=GlorotUniform()),
        rule=rule_spec(rule),
        optimizer=SGD(lr=LEARNING_RATES[rule], momentum=0.9, weight_decay=1e-3,
                      schedule=MultiStepLR(milestones=[50, 75], gamma=0.1)),
        train=TrainSpec(epochs=epochs, seed=0),
    )
