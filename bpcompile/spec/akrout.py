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
  kp   W and B decay by lambda each step (Akrout's Delta W = -eta grad - lambda W, Delta B likewise), in
       place of the optimiser's L2 term: lambda = weight decay, the per-step decay L2 gives at lr 0.1 and
       momentum 0.9 (lr * wd / (1 - momentum)); batch-norm parameters are not decayed under KP.
"""

from .data import CIFAR10, ImageNet
from .experiment import ExperimentSpec, NetworkSpec
from .init import GlorotUniform, KaimingNormal
from .layers import ResNet
from .optim import SGD, CosineLR, StepLR
from .rules import BP, FA, KolenPollack, MirrorSettings, SignSymmetry, WeightMirror
from .train import TrainSpec

RULES = ("bp", "fa", "ss", "wm", "kp")

RECIPES = {
    "imagenet": dict(epochs=90, batch_size=256, weight_decay=1e-4, schedule=StepLR(step_epochs=30, gamma=0.1)),
    "cifar10": dict(epochs=200, batch_size=128, weight_decay=5e-4, schedule=CosineLR()),
}

# Weight mirror on ResNets. Every conv output position is a sample of its shared weight, so 4x4 noise maps give
# each conv 4-16 samples per noise image at a small cost; the deepest 3x3 convs (4608 inputs) then see ~50k
# samples within the ~1/lr = 50 batches that B averages over, and the classifier 3200 (a few degrees from W).
# One mirror batch costs ~40 GFLOP on ResNet-18 (~3% of an ImageNet training step of batch 256).
MIRROR = MirrorSettings(lr=0.02, noise_sigma=1.0, decay=1.0, batch_size=64, pre_batches=150, batches_per_step=1,
                        conv_noise_size=4)


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
        return KolenPollack(weight_decay=recipe["weight_decay"])
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
    # KP's lambda replaces the optimiser's L2 term (see the module docstring)
    weight_decay = 0.0 if rule == "kp" else recipe["weight_decay"]
    return ExperimentSpec(
        name=name,
        description=(f"Akrout et al. 2019: ResNet-{depth} on {dataset} trained by {spec_rule.name}; SGD momentum 0.9, "
                     f"lr 0.1, {recipe['epochs']} epochs, {recipe['schedule'].name} schedule, weight decay "
                     f"{recipe['weight_decay']:g}" + (" applied by Kolen-Pollack's lambda." if rule == "kp" else ".")),
        data=data,
        network=NetworkSpec(layers=[net], init=KaimingNormal()),
        rule=spec_rule,
        optimizer=SGD(lr=0.1, momentum=0.9, weight_decay=weight_decay, schedule=recipe["schedule"]),
        train=TrainSpec(epochs=recipe["epochs"], seed=0),
    )
