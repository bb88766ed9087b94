"""Bartunov et al. 2018 as data: Table 3's networks and Table 5's best
hyper-parameters, and `paper_experiment` to build a spec for any cell.

Values are as printed in the paper (../shared/reference/papers.md), including
the few outside Table 4's search space. Where a row is not printed for a data
set (beta1 for CIFAR and MNIST LC, inverse beta1 outside MNIST FC), the
search space's fixed value 0.9 is used. `paper_experiment(..., settings="printed")`
builds a cell exactly so; the default "shipped" applies `SHIPPED`, the departures
docs/DEVIATIONS.md records where the printed settings do not train here.
"""

import json
from typing import Literal, Optional

from .data import CIFAR10, MNIST, ImageNet
from .experiment import ExperimentSpec, NetworkSpec
from .io import apply_overrides, spec_from_dict, spec_to_json
from .layers import Activation, Conv2d, Dense, Flatten, LocallyConnected
from .optim import Adam
from .rules import AOSDTP, BP, DFA, DTP, FA, SDTP
from .train import TrainSpec

# ---- Table 3 architectures ---------------------------------------------------

# (kernel, channels, stride) of each locally connected layer; then hidden dense widths
LC_STACKS = {
    "mnist": ([(3, 32, 2), (3, 64, 2)], [1024]),
    "cifar10": ([(5, 64, 2), (5, 128, 2), (3, 256, 1)], [1024]),
    "imagenet": ([(9, 48, 4), (3, 48, 2), (5, 96, 1), (3, 96, 2), (3, 192, 1), (3, 192, 2), (3, 384, 1)], []),
}
FC_STACKS = {"mnist": [256] * 5, "cifar10": [1024] * 3}
NUM_CLASSES = {"mnist": 10, "cifar10": 10, "imagenet": 1000}


def fc_layers(hidden: list[int], num_classes: int, activation: str = "tanh") -> list:
    layers = []
    for i, units in enumerate(hidden, start=1):
        layers += [Dense(name=f"fc{i}", units=units), Activation(fn=activation)]
    return layers + [Dense(name="out", units=num_classes)]


def lc_layers(dataset: str, shared_weights: bool = False, activation: str = "tanh") -> list:
    """Table 3's LC net; shared_weights=True gives the 'BP ConvNet' of the same shapes."""
    stack, hidden = LC_STACKS[dataset]
    layers = []
    for i, (kernel, channels, stride) in enumerate(stack, start=1):
        if shared_weights:
            layers.append(Conv2d(name=f"conv{i}", channels=channels, kernel=kernel, stride=stride))
        else:
            layers.append(LocallyConnected(name=f"lc{i}", channels=channels, kernel=kernel, stride=stride))
        layers.append(Activation(fn=activation))
    layers.append(Flatten())
    return layers + fc_layers(hidden, NUM_CLASSES[dataset], activation)


def network(dataset: str, arch: str) -> NetworkSpec:
    """arch: 'fc', 'lc' or 'conv' (the BP ConvNet)."""
    if arch == "fc":
        return NetworkSpec(layers=[Flatten()] + fc_layers(FC_STACKS[dataset], NUM_CLASSES[dataset]))
    return NetworkSpec(layers=lc_layers(dataset, shared_weights=(arch == "conv")))


# ---- Table 5 hyper-parameters -----------------------------------------------

# Column order per (data set, arch), as printed.
COLUMNS = {
    ("mnist", "fc"): ["dtp_parallel", "dtp_alternating", "sdtp_parallel", "sdtp_alternating", "bp", "fa", "dfa"],
    ("mnist", "lc"): ["dtp_parallel", "dtp_alternating", "sdtp_parallel", "sdtp_alternating", "bp", "bp_conv", "fa", "dfa"],
    ("cifar10", "fc"): ["dtp_parallel", "dtp_alternating", "sdtp_parallel", "sdtp_alternating", "bp", "fa", "dfa"],
    ("cifar10", "lc"): ["dtp_parallel", "dtp_alternating", "sdtp_parallel", "sdtp_alternating", "bp", "bp_conv", "fa", "dfa"],
    ("imagenet", "lc"): ["dtp_parallel", "dtp_alternating", "sdtp_parallel", "bp", "bp_conv", "fa"],
}
_TABLE5 = {
    ("mnist", "fc"): dict(
        lr=[7.57e-4, 3.08e-4, 4.02e-4, 3.01e-4, 1.52e-4, 1.68e-4, 1.649e-3],
        beta1=[0.99, 0.99, 0.99, 0.9, 0.9, 0.9, 0.9],
        beta2=[0.95, 0.99, 0.999, 0.95, 0.999, 0.999, 0.95],
        eps=[1e-3, 1e-4, 1e-8, 1e-4, 1e-8, 1e-4, 1e-3],
        inv_lr=[7.68e-4, 4.593e-3, 1.101e-3, 9.572e-3], inv_beta1=[0.99, 0.99, 0.99, 0.9],
        inv_beta2=[0.999, 0.999, 0.95, 0.95], inv_eps=[1e-4, 1e-4, 1e-6, 1e-3],
        alpha=[0.15008, 0.231758], sigma=[0.36133, 0.220444, 0.213995, 0.118267],
    ),
    ("mnist", "lc"): dict(
        lr=[9.05e-4, 1.481e-3, 1.45e-4, 6.51e-4, 1.33e-4, 2.97e-4, 2.19e-4, 2.462e-3],
        beta1=[0.9] * 8, beta2=[0.99] * 6 + [0.999, 0.99],
        eps=[1e-4, 1e-4, 1e-6, 1e-4, 1e-8, 1e-8, 1e-6, 1e-4],
        inv_lr=[1.239e-3, 1.37e-4, 1.652e-3, 3.741e-3], inv_beta1=[0.9] * 4,
        inv_beta2=[0.999, 0.999, 0.999, 0.99], inv_eps=[1e-4, 1e-6, 1e-4, 1e-4],
        alpha=[0.116131, 0.310892], sigma=[0.099236, 0.366964, 0.061555, 0.134739],
    ),
    ("cifar10", "fc"): dict(
        lr=[1.2e-5, 1.3e-5, 1.29e-4, 4.1e-5, 1.9e-5, 2.5e-5, 5.0e-5],
        beta1=[0.9] * 7, beta2=[0.999, 0.999, 0.99, 0.99, 0.999, 0.99, 0.99],
        eps=[1e-8, 1e-8, 1e-6, 1e-4, 1e-6, 1e-4, 1e-8],
        inv_lr=[3.9e-5, 1.14e-4, 1.1e-5, 1.4e-5], inv_beta1=[0.9] * 4,
        inv_beta2=[0.99] * 4, inv_eps=[1e-6, 1e-4, 1e-6, 1e-8],
        alpha=[0.125693, 0.172085], sigma=[0.169783, 0.134811, 0.273341, 0.125678],
    ),
    ("cifar10", "lc"): dict(
        lr=[3.2e-5, 3.6e-5, 2.0e-5, 1.09e-4, 4.4e-5, 1.33e-4, 2.2e-5, 4.0e-5],
        beta1=[0.9] * 8, beta2=[0.99, 0.99, 0.99, 0.99, 0.999, 0.99, 0.999, 0.999],
        eps=[1e-6, 1e-8, 1e-4, 1e-4, 1e-6, 1e-4, 1e-8, 1e-8],
        inv_lr=[8.52e-4, 3.89e-4, 2.61e-4, 1.1e-5], inv_beta1=[0.9] * 4,
        inv_beta2=[0.999, 0.999, 0.999, 0.99], inv_eps=[1e-4, 1e-8, 1e-6, 1e-8],
        alpha=[0.189828, 0.208141], sigma=[0.146728, 0.094869, 0.299769, 0.023804],
    ),
    ("imagenet", "lc"): dict(
        lr=[2.17e-4, 1.01e-4, 1.1e-5, 2.4e-5, 4.9e-5, 4.3e-5],
        beta1=[0.9] * 6, beta2=[0.99, 0.99, 0.999, 0.999, 0.99, 0.99],
        eps=[1e-6, 1e-8, 1e-6, 1e-8, 1e-8, 1e-4],
        inv_lr=[2.34e-4, 6.4e-5, 1.70e-4], inv_beta1=[0.9] * 3, inv_beta2=[0.999] * 3, inv_eps=[1e-6, 1e-8, 1e-8],
        alpha=[0.163359, 0.03706], sigma=[0.192835, 0.097217, 0.168522],
    ),
}


def table5(dataset: str, arch: str, column: str) -> dict:
    """The printed hyper-parameters of one Table 5 cell as a flat dict."""
    table, columns = _TABLE5[(dataset, arch)], COLUMNS[(dataset, arch)]
    if column not in columns:
        raise KeyError(f"Table 5 has no column {column!r} for {dataset} {arch}; it has {columns}")
    i = columns.index(column)
    row = {k: table[k][i] for k in ("lr", "beta1", "beta2", "eps")}
    tp_columns = [c for c in columns if "tp_" in c]
    if column in tp_columns:
        j = tp_columns.index(column)
        row.update(inv_lr=table["inv_lr"][j], inv_beta1=table["inv_beta1"][j],
                   inv_beta2=table["inv_beta2"][j], inv_eps=table["inv_eps"][j], sigma=table["sigma"][j])
        if column.startswith("dtp"):
            row["alpha"] = table["alpha"][j]
    return row


# ---- the shipped specs' departures from Table 5 ------------------------------

# Where a cell's printed settings do not train in this implementation, the shipped spec changes them:
# (data set, arch, column) -> {spec field path, in the --set syntax: value}. Every entry is a row of
# docs/DEVIATIONS.md, with the runs that show why; settings="printed" builds the cell as printed.
SHIPPED = {
    # Table 5's inverse beta1 0.99 (outside Table 4's fixed 0.9): the inverses cannot track the forward net
    # and SDTP collapses to chance (results/target_propagation: sdtp_parallel-printed)
    ("mnist", "fc", "sdtp_parallel"): {"rule.inverse_optimizer.betas": [0.9, 0.95]},
    # as printed, whole-epoch turns move the net away from the frozen inverses and the error climbs back
    # (results/target_propagation: sdtp-printed); the winner of `bpcompile sweep` over specs/spaces/sdtp_mnist_fc.json
    # on validation error (results/sweeps/mnist_fc_sdtp, trial 7), to 4 significant digits
    ("mnist", "fc", "sdtp_alternating"): {
        "optimizer.lr": 1.810e-4, "optimizer.betas": [0.9, 0.95], "optimizer.eps": 1e-6,
        "rule.inverse_optimizer.lr": 1.311e-4, "rule.inverse_optimizer.betas": [0.9, 0.95],
        "rule.inverse_optimizer.eps": 1e-8, "rule.noise_sigma": 0.2821,
        # the model rate decays by a cosine over the run: the last epoch reaches what a constant rate reaches only
        # at its best epoch (results/bartunov_mnist/variants: mnist_fc_sdtp-cosine-val against mnist_fc_sdtp-val)
        "optimizer.schedule.name": "cosine"},
    # as printed DTP alternating ends at 2.33% after 100 epochs against the paper's 1.83%; the winner of a second
    # `bpcompile sweep` over specs/spaces/dtp_mnist_fc.json with the model rate decayed by a cosine over each trial
    # (results/sweeps/mnist_fc_dtp-cosine, trial 9 of 11), to 4 significant digits: over 100 epochs on three
    # validation seeds it beats the first sweep's winner at twice its rate (last 10 epochs 2.23% against 2.35%;
    # results/bartunov_mnist/variants: mnist_fc_dtp-sweep_cosine_trial_9-val-seed_{0,1,2} against
    # mnist_fc_dtp-lr_2x-cosine-val{,-seed_1,-seed_2}, whose full runs are variants/mnist_fc_dtp-lr_2x-cosine-seeds)
    ("mnist", "fc", "dtp_alternating"): {
        "optimizer.lr": 5.692e-4, "optimizer.betas": [0.9, 0.95], "optimizer.eps": 1e-6,
        "rule.inverse_optimizer.lr": 3.308e-4, "rule.inverse_optimizer.betas": [0.9, 0.99],
        "rule.inverse_optimizer.eps": 1e-8, "rule.noise_sigma": 0.05091, "rule.alpha": 0.05859,
        # cosine decay of the model rate, as for SDTP alternating (variants: mnist_fc_dtp-cosine-val against
        # mnist_fc_dtp-val)
        "optimizer.schedule.name": "cosine"},
    # as printed BP ends at 1.85% after 30 epochs against the paper's 1.48%, and the best of a sweep over Table 4's
    # space (results/sweeps/mnist_fc_bp: lr 1.583e-4, eps 1e-4) at 1.82% after 100; Adam's eps at 1e-3 with lr 1e-3
    # (the pairing Table 5 prints for the DFA and DTP-parallel cells, outside Table 4's ranges) steps in proportion to
    # small gradients, like SGD with momentum, and generalises better: the best of the variants on validation error
    # (results/bartunov_mnist/variants: mnist_fc_bp-lr_{5e-4,1e-3,2e-3}-eps_1e-3-val, -lr_1e-3-eps_1e-4-val)
    ("mnist", "fc", "bp"): {"optimizer.lr": 1e-3, "optimizer.eps": 1e-3},
    # as printed (eps 1e-4) FA ends at 3.05% after 30 epochs against the paper's 1.85%; the winner of
    # `bpcompile sweep` over Table 4's space on validation error (results/sweeps/mnist_fc_fa, trial 1: betas
    # (0.9, 0.99), eps 1e-8; eps 1e-4 damps FA's small lower-layer updates)
    ("mnist", "fc", "fa"): {
        # lr 3e-4 (the top of Table 4's range; the sweep winner's 1.225e-4 underfits: train error 0.07% after 100
        # epochs) decayed by a cosine over the run: the best of the rate and schedule variants on two validation
        # seeds (results/bartunov_mnist/variants: mnist_fc_fa-lr_3e-4-cosine-val{,-seed_1} against
        # mnist_fc_fa-val-seed_1, results/sweeps/mnist_fc_fa-100_epochs trial 1, mnist_fc_fa-{cosine,lr_3e-4,
        # lr_6e-4-cosine}-val)
        "optimizer.lr": 3e-4, "optimizer.betas": [0.9, 0.99], "optimizer.eps": 1e-8,
        "optimizer.schedule.name": "cosine"},
    # no AO-SDTP column is printed (SDTP's is reused); with SDTP parallel's settings and 512 linear auxiliary units
    # on 256 hidden units g_L rebuilds h_{L-1} from z alone and the label moves the target little
    # (results/target_propagation: ao_sdtp_parallel-aux_512); the winner of `bpcompile sweep` over
    # specs/spaces/sdtp_mnist_fc.json, with the width and z's activation, on validation error
    # (results/sweeps/mnist_fc_ao_sdtp_parallel, trial 0), to 4 significant digits
    ("mnist", "fc", "ao_sdtp_parallel"): {
        "optimizer.lr": 4.506e-4, "optimizer.betas": [0.9, 0.99], "optimizer.eps": 1e-4,
        "rule.inverse_optimizer.lr": 2.307e-4, "rule.inverse_optimizer.betas": [0.9, 0.95],
        "rule.inverse_optimizer.eps": 1e-8, "rule.noise_sigma": 0.07127, "rule.aux_units": 256,
        "rule.aux_activation": "tanh"},
    # as printed (inverse Adam lr 3.741e-3) SDTP alternating on the MNIST LC net swings between 8% and 23% test
    # error over 5 epochs; the FC cell's shipped inverse optimiser (above) trains it steadily, chosen on
    # validation error against the printed one and 1-batch turns (results/bartunov_mnist/variants:
    # mnist_lc_sdtp-{printed,inverse_fc,block_1}-val)
    ("mnist", "lc", "sdtp_alternating"): {
        "rule.inverse_optimizer.lr": 1.311e-4, "rule.inverse_optimizer.betas": [0.9, 0.95],
        "rule.inverse_optimizer.eps": 1e-8,
        # cosine decay of the model rate, as for the FC alternating cells: at a constant rate the error drifts up
        # after epoch 4-6 while the top inverse g_L stays poor (inverse error about 0.5); with the decay g_L improves
        # (0.52 to 0.33 in 12 epochs) and the error stays level (variants: mnist_lc_sdtp-{,cosine-}12_epochs-val)
        "optimizer.schedule.name": "cosine"},
    # the same for the alternating schedule (results/sweeps/mnist_fc_ao_sdtp, trial 3): 64 linear units
    ("mnist", "fc", "ao_sdtp_alternating"): {
        # the sweep winner's model rate: with the cosine decay below twice the rate wins on one validation seed but
        # loses on two (variants: mnist_fc_ao_sdtp-{,lr_2x-}cosine-val{,-seed_1})
        "optimizer.lr": 2.495e-4, "optimizer.betas": [0.9, 0.999], "optimizer.eps": 1e-8,
        "rule.inverse_optimizer.lr": 1.774e-4, "rule.inverse_optimizer.betas": [0.9, 0.99],
        "rule.inverse_optimizer.eps": 1e-8, "rule.noise_sigma": 0.09289, "rule.aux_units": 64,
        # cosine decay of the model rate, as for SDTP alternating (variants: mnist_fc_ao_sdtp-cosine-val; 256 tanh
        # units, the parallel cell's width, are worse here: mnist_fc_ao_sdtp-aux_256_tanh-cosine-val)
        "optimizer.schedule.name": "cosine"},
}


def _adam(lr, beta1, beta2, eps) -> Adam:
    return Adam(lr=lr, betas=(beta1, beta2), eps=eps)


def shipped_changes(dataset: str, arch: str, column: str) -> dict:
    """The shipped spec's departures from the printed settings of one cell ({} where there are none)."""
    return dict(SHIPPED.get((dataset, arch, column), {}))


def paper_experiment(dataset: str, arch: str, column: str, *, epochs: int = 100, batch_size: int = 128,
                     name: Optional[str] = None, seed: int = 0,
                     settings: Literal["shipped", "printed"] = "shipped") -> ExperimentSpec:
    """A spec for one Bartunov et al. cell: Table 3 net, Table 5 settings.

    column: a Table 5 column name (see COLUMNS), e.g. 'bp', 'fa', 'sdtp_alternating'.
    'ao_sdtp_*' columns reuse the SDTP settings of the same schedule (no AO-SDTP column is printed).
    settings: 'printed' is Table 5 as printed; 'shipped' (the specs in specs/) applies `SHIPPED`, the
    recorded departures (docs/DEVIATIONS.md) where the printed settings do not train here."""
    if settings not in ("shipped", "printed"):
        raise ValueError(f"settings must be 'shipped' or 'printed', got {settings!r}")
    source_column = column.replace("ao_sdtp", "sdtp")
    hp = table5(dataset, "lc" if arch == "conv" else arch, "bp_conv" if arch == "conv" else source_column)
    rule_name = column.rsplit("_", 1)[0] if "tp_" in column else column
    if rule_name in ("dtp", "sdtp", "ao_sdtp"):
        rule_cls = {"dtp": DTP, "sdtp": SDTP, "ao_sdtp": AOSDTP}[rule_name]
        extra = {"alpha": hp["alpha"]} if rule_name == "dtp" else {}
        rule = rule_cls(schedule=column.rsplit("_", 1)[1], noise_sigma=hp["sigma"],
                        inverse_optimizer=_adam(hp["inv_lr"], hp["inv_beta1"], hp["inv_beta2"], hp["inv_eps"]), **extra)
    else:
        rule = {"bp": BP, "bp_conv": BP, "fa": FA, "dfa": DFA}[rule_name]()
    data_cls = {"mnist": MNIST, "cifar10": CIFAR10, "imagenet": ImageNet}[dataset]
    augment = ["hflip", "crop"] if dataset == "cifar10" else ([] if dataset == "mnist" else None)
    data = data_cls(batch_size=batch_size, **({"augment": augment} if augment is not None else {}))
    short = {"mnist": "mnist", "cifar10": "cifar", "imagenet": "imagenet"}[dataset]
    changes = shipped_changes(dataset, arch, column) if settings == "shipped" else {}
    description = f"Bartunov et al. 2018, {dataset} {arch.upper()} net (Table 3), {column} with Table 5's settings"
    if changes:
        description += (" except " + ", ".join(f"{path}={json.dumps(value)}" for path, value in changes.items())
                        + " (docs/DEVIATIONS.md)")
    spec = ExperimentSpec(
        name=name or f"{short}_{arch}_{column}",
        description=description + ".",
        data=data,
        network=network(dataset, arch),
        rule=rule,
        optimizer=_adam(hp["lr"], hp["beta1"], hp["beta2"], hp["eps"]),
        train=TrainSpec(epochs=epochs, seed=seed),
    )
    if not changes:
        return spec
    raw = json.loads(spec_to_json(spec))     # the fields set, so the shipped JSON stays as short as the printed one
    return spec_from_dict(apply_overrides(raw, [f"{path}={json.dumps(value)}" for path, value in changes.items()]))
