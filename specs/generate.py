"""Regenerate the shipped specs from Python (the specs are data; this is how to make them).

    python specs/generate.py            # rewrites specs/*.json
    python specs/generate.py --check    # exits 1 if a shipped spec differs from what this script makes

Bartunov et al.'s cells come from bpcompile.spec.paper (Table 3 nets, Table 5 settings)."""

import sys
from pathlib import Path

from bpcompile.spec import FA, MNIST, Activation, Adam, Dense, ExperimentSpec, Flatten, NetworkSpec, TrainSpec, spec_to_json
from bpcompile.spec.paper import paper_experiment

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


def all_specs() -> dict[str, ExperimentSpec]:
    specs = {"quickstart": quickstart()}
    for arch in ("fc", "lc"):
        for rule in ("bp", "fa"):
            specs[f"mnist_{arch}_{rule}"] = paper_experiment("mnist", arch, rule, epochs=100)
    return specs


def main(check: bool) -> int:
    stale = []
    for name, spec in all_specs().items():
        path = HERE / f"{name}.json"
        text = spec_to_json(spec)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print("out of date (run python specs/generate.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))
