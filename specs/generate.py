"""Regenerate the shipped specs from Python (the specs are data; this is how to make them).

    python specs/generate.py            # rewrites specs/*.json, specs/printed/, specs/biotorch/, specs/akrout/
    python specs/generate.py --check    # exits 1 if a shipped spec differs from what this script makes

It also writes specs/schema.json (`bpcompile schema`), which every shipped spec names in "$schema" so editors
complete and check it.

Bartunov et al.'s cells come from bpcompile.spec.paper (Table 3 nets, Table 5 settings with the departures
docs/DEVIATIONS.md records); specs/printed/ holds the cells that depart, as printed. Akrout et al.'s ResNets
come from bpcompile.spec.akrout (specs/akrout/: the setup of their released MNIST code), BioTorch's LeNet
benchmark from bpcompile.spec.biotorch (specs/biotorch/)."""

import json
import os
import sys
from pathlib import Path

from bpcompile.spec import (
    FA, MNIST, Activation, Adam, Dense, ExperimentSpec, Flatten, KolenPollack, MirrorSettings, NetworkSpec, SignSymmetry,
    TrainSpec, WeightMirror, json_schema, spec_to_json,
)
from bpcompile.spec import biotorch
from bpcompile.spec.akrout import CODE_RULES, RULES as RESNET_RULES, code_experiment, resnet_experiment
from bpcompile.spec.paper import paper_experiment, shipped_changes

HERE = Path(__file__).parent


def quickstart() -> ExperimentSpec:
    return ExperimentSpec(
        name="quickstart",
        description="Feedback alignment on the MNIST subset shipped in the package (runs offline in seconds).",
        data=MNIST(subset="embedded", batch_size=64),
        network=NetworkSpec(layers=[
            Flatten(),
            Dense(name="fc1", units=256), Activation(fn="tanh"),
            Dense(name="fc2", units=256), Activation(fn="tanh"),
            Dense(name="out", units=10),
        ]),
        rule=FA(),
        optimizer=Adam(lr=1e-3),
        train=TrainSpec(epochs=5, seed=0),
    )


def weight_transport_rule(name: str, rule) -> ExperimentSpec:
    """Akrout et al.'s rules on Bartunov et al.'s MNIST FC net, with the FA cell's Table 5 settings."""
    spec = paper_experiment("mnist", "fc", "fa", epochs=100, name=name, settings="printed")
    return spec.model_copy(update={
        "rule": rule,
        "description": f"{rule.name} on Bartunov et al.'s MNIST FC net (Table 3) with the FA column's Table 5 settings.",
    })


def bartunov_cells() -> dict[str, tuple[str, str, str]]:
    """Every shipped Bartunov et al. cell: spec name -> (data set, arch, Table 5 column).
    '<data>_<arch>_<rule>' is the alternating schedule of a TP rule ([B] found it the more stable, and the
    brief's cifar_lc_sdtp is that cell), '<data>_<arch>_<rule>_parallel' the parallel one."""
    cells = {}
    for dataset, short in (("mnist", "mnist"), ("cifar10", "cifar")):
        for arch in ("fc", "lc"):
            for rule in ("bp", "fa", "dfa"):
                cells[f"{short}_{arch}_{rule}"] = (dataset, arch, rule)
        cells[f"{short}_conv_bp"] = (dataset, "conv", "bp_conv")        # Table 1's "BP ConvNet" row
        for arch in ("fc", "lc"):
            for rule in ("dtp", "sdtp", "ao_sdtp"):
                for schedule, suffix in (("alternating", ""), ("parallel", "_parallel")):
                    cells[f"{short}_{arch}_{rule}{suffix}"] = (dataset, arch, f"{rule}_{schedule}")
    for column, name in (("dtp_alternating", "imagenet_lc_dtp"), ("dtp_parallel", "imagenet_lc_dtp_parallel"),
                         ("sdtp_parallel", "imagenet_lc_sdtp_parallel")):   # Table 2's TP rows
        cells[name] = ("imagenet", "lc", column)
    return cells


def printed_specs() -> dict[str, ExperimentSpec]:
    """specs/printed/: the cells whose shipped spec departs from Table 5, as printed (docs/DEVIATIONS.md)."""
    return {name: paper_experiment(*cell, epochs=100, name=name, settings="printed")
            for name, cell in bartunov_cells().items() if shipped_changes(*cell)}


def all_specs() -> dict[str, ExperimentSpec]:
    specs = {"quickstart": quickstart()}
    specs.update({name: paper_experiment(*cell, epochs=100, name=name) for name, cell in bartunov_cells().items()})
    specs["mnist_fc_ss"] = weight_transport_rule("mnist_fc_ss", SignSymmetry(variant="sign"))
    # a large mirror batch and a long first mirror phase: B starts within a few degrees of W
    specs["mnist_fc_wm"] = weight_transport_rule("mnist_fc_wm", WeightMirror(
        mirror=MirrorSettings(lr=0.05, noise="gaussian", noise_sigma=1.0, response="linear", reduction="mean", decay=0.5,
                              batch_size=512, pre_batches=300, batches_per_step=1)))
    # W - B shrinks by (1 - weight_decay) a step: 1e-3 closes most of the initial gap within an epoch of 469 steps
    specs["mnist_fc_kp"] = weight_transport_rule("mnist_fc_kp", KolenPollack(weight_decay=1e-3))
    specs.update(resnet_specs())
    return specs


def resnet_specs() -> dict[str, ExperimentSpec]:
    """Akrout et al.'s ResNets under each weight-transport rule: ImageNet ResNet-18 / ResNet-50, CIFAR-10 ResNet-18."""
    specs = {}
    for dataset, depth in (("imagenet", 18), ("imagenet", 50), ("cifar10", 18)):
        for rule in RESNET_RULES:
            spec = resnet_experiment(dataset, depth, rule)
            specs[spec.name] = spec
    return specs


def folder_specs() -> dict[str, dict[str, ExperimentSpec]]:
    """Specs kept in sub-folders: folder -> {name: spec}."""
    return {
        "printed": printed_specs(),
        "biotorch": {f"mnist_lenet_{rule}": biotorch.lenet_experiment(rule) for rule in biotorch.RULES},
        "akrout": {f"mnist_fc_{rule}_code": code_experiment(rule) for rule in CODE_RULES},
    }


def main(check: bool) -> int:
    stale = []
    targets = [(HERE / f"{name}.json", spec) for name, spec in all_specs().items()]
    for folder, specs in folder_specs().items():
        targets += [(HERE / folder / f"{name}.json", spec) for name, spec in specs.items()]
        (HERE / folder).mkdir(exist_ok=True)
    schema = HERE / "schema.json"
    texts = [(schema, json.dumps(json_schema(), indent=2) + "\n")]
    for path, spec in targets:          # each shipped spec names the schema, relative to itself, for editors
        ref = os.path.relpath(schema, path.parent)
        texts.append((path, spec_to_json(spec.model_copy(update={"schema_ref": ref}))))
    for path, text in texts:
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(HERE)))
        else:
            path.write_text(text)
    if stale:
        print("out of date (run python specs/generate.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))
