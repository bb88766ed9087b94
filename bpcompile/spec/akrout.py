"""Akrout et al. 2019 ("Deep Learning without Weight Transport") as data: ResNet-18 / ResNet-50 on ImageNet
and ResNet-18 on CIFAR-10 under BP, FA, sign symmetry, weight mirror and Kolen-Pollack, with the recipe users
expect for these nets (the PyTorch ImageNet recipe the paper's code follows; the usual CIFAR ResNet recipe).

    resnet_experiment("imagenet", 18, "kp")   # -> ExperimentSpec

Shared by every rule: He (Kaiming fan-out) initialisation of the convs, Glorot of the classifier (a first
loss near log(classes)); SGD with momentum 0.9 and lr 0.1 at batch 256
(ImageNet: 90 epochs, x0.1 every 30; weight decay 1e-4) or 128 (CIFAR-10: 200 epochs, cosine; weight decay
5e-4). Per rule:
  fa   B drawn like W (He init), so feedback has W's scale.
  ss   sign(W) * sqrt(2 / fan_out) ('usf', Xiao et al.'s scale: He init's scale, so BN nets stay stable).
  wm   mirror noise sigma 1 with decay 1, so B's fixed point is W itself; small noise maps for the convs
       (each conv position is a sample; see MIRROR), a first mirror phase of 150 batches and one mirror batch
       after every step.
  kp   W and B decay by lr_t * lambda each step (decay='lr_scaled') in place of the optimiser's L2 term on
       the weights, with lambda = weight decay / (1 - momentum): the decay L2 gives through momentum 0.9, and it
       falls with the schedule as BP's does; biases and batch norm keep the optimiser's L2 term, as under BP.

code_experiment(rule) is instead the released code's MNIST setup (makrout/Deep-Learning-without-Weight-
Transport, fcnn/ and run.sh): 784-500-10 with sigmoid units, sigmoid cross-entropy summed over classes, plain
SGD at batch 128, N(0, 1 / (fan_in + fan_out)) weights and feedback, weight mirror's mirror form as coded
(MirrorSettings' defaults), Kolen-Pollack without decay (its factor defaults to 1). Our sigmoid cross-entropy
averages over the 10 classes, so the learning rates are the code's times 10 (the same steps).
"""

from .data import CIFAR10, MNIST, ImageNet
from .experiment import ExperimentSpec, NetworkSpec
from .init import GlorotNormal, GlorotUniform, KaimingNormal
from .layers import Activation, Dense, Flatten, ResNet
from .optim import SGD, CosineLR, StepLR
from .rules import BP, FA, KolenPollack, MirrorSettings, SignSymmetry, WeightMirror
from .train import TrainSpec

RULES = ("bp", "fa", "ss", "wm", "kp")
MOMENTUM = 0.9

RECIPES = {
    "imagenet": dict(epochs=90, batch_size=256, weight_decay=1e-4, schedule=StepLR(step_epochs=30, gamma=0.1)),
    "cifar10": dict(epochs=200, batch_size=128, weight_decay=5e-4, schedule=CosineLR()),
}

# Weight mirror on ResNets. Every conv output position is a sample of its shared weight, so 4x4 noise maps give
# each conv 4-16 samples per noise image at a small cost; the deepest 3x3 convs (4608 inputs) then see ~50k
# samples within the ~1/lr = 50 batches that B averages over, and the classifier 3200 (a few degrees from W).
# One mirror batch costs ~40 GFLOP on ResNet-18 (~3% of an ImageNet training step of batch 256).
# Gaussian noise into the linear map with averaged updates: B's fixed point is (sigma^2 / decay) W = W.
MIRROR = MirrorSettings(lr=0.02, noise="gaussian", noise_sigma=1.0, response="linear", reduction="mean", decay=1.0,
                        batch_size=64, pre_batches=150, batches_per_step=1, conv_noise_size=4)


def rule_spec(rule: str, recipe: dict):
    if rule == "bp":
        return BP()
    if rule == "fa":
        return FA()
    if rule == "ss":
        return SignSymmetry(variant="usf")
    if rule == "wm":
        return WeightMirror(mirror=MIRROR)
    if rule == "kp":
        return KolenPollack(weight_decay=recipe["weight_decay"] / (1 - MOMENTUM), decay="lr_scaled")
    raise ValueError(f"rule must be one of {RULES}, not {rule!r}")


def resnet_experiment(dataset: str, depth: int, rule: str, name: str | None = None) -> ExperimentSpec:
    """dataset 'imagenet' (ImageNet stem, 224x224 crops) or 'cifar10' (CIFAR stem); depth 18 or 50."""
    recipe = RECIPES[dataset]
    short = "cifar" if dataset == "cifar10" else dataset
    name = name or f"{short}_resnet{depth}_{rule}"
    if dataset == "imagenet":
        data = ImageNet(batch_size=recipe["batch_size"])
        net = ResNet(depth=depth, stem="imagenet", num_classes=1000, head_init=GlorotUniform())
    else:
        data = CIFAR10(batch_size=recipe["batch_size"], augment=["hflip", "crop"])
        net = ResNet(depth=depth, stem="cifar", num_classes=10, head_init=GlorotUniform())
    spec_rule = rule_spec(rule, recipe)
    return ExperimentSpec(
        name=name,
        description=(f"Akrout et al. 2019: ResNet-{depth} on {dataset} trained by {spec_rule.name}; SGD momentum 0.9, "
                     f"lr 0.1, {recipe['epochs']} epochs, {recipe['schedule'].name} schedule, weight decay "
                     f"{recipe['weight_decay']:g}" + (" (on W and B by Kolen-Pollack's lr-scaled lambda)." if rule == "kp"
                                                      else ".")),
        data=data,
        network=NetworkSpec(layers=[net], init=KaimingNormal()),
        rule=spec_rule,
        optimizer=SGD(lr=0.1, momentum=MOMENTUM, weight_decay=recipe["weight_decay"], schedule=recipe["schedule"]),
        train=TrainSpec(epochs=recipe["epochs"], seed=0),
    )


# The released code's MNIST runs (run.sh): learning rates per rule, and 400 epochs.
CODE_RULES = ("bp", "fa", "wm", "kp")
CODE_LEARNING_RATES = {"bp": 0.2, "fa": 0.2, "wm": 0.05, "kp": 0.3}
CODE_CLASSES = 10          # their loss sums over the classes, ours averages: our lr = theirs * 10


def code_experiment(rule: str, epochs: int = 400, name: str | None = None) -> ExperimentSpec:
    """Akrout et al.'s released MNIST setup (fcnn/FCNN_*.py, run.sh) under bp, fa, wm or kp."""
    init = GlorotNormal(gain=2 ** -0.5)          # N(0, 1 / (fan_in + fan_out)), W and B alike
    rules = {"bp": BP(), "fa": FA(), "wm": WeightMirror(), "kp": KolenPollack(weight_decay=0.0)}
    if rule not in rules:
        raise ValueError(f"rule must be one of {CODE_RULES}, not {rule!r}")
    lr = CODE_LEARNING_RATES[rule] * CODE_CLASSES
    return ExperimentSpec(
        name=name or f"mnist_fc_{rule}_code",
        description=(f"Akrout et al.'s released MNIST code under {rule}: 784-500-10 sigmoid net, sigmoid cross-entropy, "
                     f"plain SGD lr {CODE_LEARNING_RATES[rule]:g} (x10 here: our loss averages over classes), batch "
                     f"128, {epochs} epochs; weight mirror as coded (uniform noise 0.1 (U - 0.5) through sigmoid(W x + "
                     f"b), B += 0.01 sum x y^T, an epoch of mirror batches first, one after each batch)."),
        data=MNIST(batch_size=128, normalize="unit"),
        network=NetworkSpec(layers=[Flatten(), Dense(name="fc1", units=500), Activation(fn="sigmoid"),
                                    Dense(name="out", units=10)], init=init),
        loss="sigmoid_cross_entropy",
        rule=rules[rule],
        optimizer=SGD(lr=lr, momentum=0.0),
        train=TrainSpec(epochs=epochs, seed=0),
    )
