"""The spec language: round trips, schema, overrides, shipped specs, Table 5."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bpcompile.errors import BpcompileError
from bpcompile.spec import (
    AOSDTP, DTP, FA, MNIST, SGD, Adam, CosineLR, Dense, ExperimentSpec, Feedback, Flatten, KolenPollack, LocallyConnected,
    NetworkSpec, ResNet, RuleOverride, SignSymmetry, TrainSpec, WeightMirror, apply_overrides, json_schema, load_spec,
    save_spec, spec_from_dict, spec_to_json,
)
from bpcompile.experiments.sweep import diff_paths
from bpcompile.spec.paper import COLUMNS, SHIPPED, paper_experiment, table5

ROOT = Path(__file__).resolve().parents[1]


def _everything() -> ExperimentSpec:
    """A spec touching every family of the schema."""
    return ExperimentSpec(
        name="everything",
        data=MNIST(batch_size=32, augment=["hflip"], validation_size=100),
        network=NetworkSpec(layers=[LocallyConnected(name="lc1", channels=4, kernel=3, stride=2, padding=1),
                                    Flatten(), Dense(name="out", units=10)]),
        rule=WeightMirror(feedback_optimizer=SGD(lr=0.1)),
        rule_overrides=[RuleOverride(layers=["out"], rule=KolenPollack(weight_decay=1e-3))],
        optimizer=SGD(lr=0.05, momentum=0.9, weight_decay=5e-4, schedule=CosineLR(warmup_epochs=2)),
        train=TrainSpec(epochs=3, seed=7, precision="tf32"),
    )


@pytest.mark.parametrize("full", [False, True])
def test_python_spec_round_trips_through_json(tmp_path, full):
    spec = _everything()
    save_spec(spec, tmp_path / "s.json", full=full)
    assert load_spec(tmp_path / "s.json") == spec


@pytest.mark.parametrize("column", ["bp", "fa", "dfa", "dtp_parallel", "sdtp_alternating", "ao_sdtp_parallel"])
def test_paper_specs_round_trip(column):
    spec = paper_experiment("cifar10", "lc", column)
    assert spec_from_dict(json.loads(spec_to_json(spec))) == spec


def test_table5_cells_are_read_as_printed():
    assert table5("cifar10", "lc", "sdtp_alternating") == {
        "lr": 1.09e-4, "beta1": 0.9, "beta2": 0.99, "eps": 1e-4, "inv_lr": 1.1e-5, "inv_beta1": 0.9,
        "inv_beta2": 0.99, "inv_eps": 1e-8, "sigma": 0.023804}
    assert table5("mnist", "fc", "dtp_parallel")["alpha"] == 0.15008
    assert table5("mnist", "lc", "bp_conv")["lr"] == 2.97e-4
    spec = paper_experiment("mnist", "fc", "fa", settings="printed")
    assert (spec.optimizer.lr, spec.optimizer.betas, spec.optimizer.eps) == (1.68e-4, (0.9, 0.999), 1e-4)
    for (dataset, arch), columns in COLUMNS.items():
        for column in columns:
            assert table5(dataset, arch, column)["lr"] > 0


def test_imagenet_inverse_eps_is_as_printed():
    """Table 5, ImageNet LC: inverse eps 1e-6 (DTP parallel), 1e-8 (DTP alternating), 1e-8 (SDTP parallel)."""
    assert [table5("imagenet", "lc", c)["inv_eps"] for c in ("dtp_parallel", "dtp_alternating", "sdtp_parallel")] == [
        1e-6, 1e-8, 1e-8]


def test_printed_settings_stay_available_and_shipped_ones_apply_only_the_recorded_changes():
    deviations = (ROOT / "docs" / "DEVIATIONS.md").read_text()
    for (dataset, arch, column), changes in SHIPPED.items():
        printed = json.loads(spec_to_json(paper_experiment(dataset, arch, column, settings="printed")))
        shipped = json.loads(spec_to_json(paper_experiment(dataset, arch, column)))
        assert "docs/DEVIATIONS.md" in shipped["description"] and "DEVIATIONS" not in printed["description"]
        changed = set(diff_paths(printed, shipped)) - {"description"}
        recorded = {p for path in changes for p in _leaves(path, changes[path])}
        # a change may add a whole object the printed spec leaves at its default (optimizer.schedule for
        # optimizer.schedule.name): it is recorded if a recorded leaf lies under it
        assert changed and all(any(leaf == c or leaf.startswith(c + ".") for leaf in recorded) for c in changed), changed
        rule, schedule = column.rsplit("_", 1) if "tp_" in column else (column, "")
        name = f"{'cifar' if dataset == 'cifar10' else dataset}_{arch}_{rule}" + ("_parallel" if schedule == "parallel" else "")
        assert f"`{name}`" in deviations, f"docs/DEVIATIONS.md has no row naming {name}"
    spec = paper_experiment("mnist", "fc", "sdtp_parallel", settings="printed")
    assert spec.rule.inverse_optimizer.betas == (0.99, 0.95)          # Table 5 as printed
    with pytest.raises(ValueError, match="settings must be"):
        paper_experiment("mnist", "fc", "bp", settings="tuned")


def _leaves(path, value):
    """The dotted paths of the leaves under `path` set to `value` (list items by index)."""
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaves(f"{path}.{i}", v)]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(f"{path}.{k}", v)]
    return [path]


def test_schema_documents_defaults_and_descriptions():
    schema = json.dumps(json_schema())
    for needle in ['"locally_connected"', '"sign_symmetry"', '"ao_sdtp"', '"fashion_mnist"', '"orthogonal"',
                   '"cosine"', '"discriminator"', "noise_sigma", "checkpoint_every"]:
        assert needle in schema
    train = json_schema()["$defs"]["TrainSpec"]["properties"]
    assert train["epochs"]["default"] == 10 and "description" in train["seed"]


@pytest.mark.parametrize("raw,field", [
    ({"network": {"layers": [{"type": "dense", "units": 10, "colour": "red"}]}}, "network.layers.0.colour"),
    ({"network": {"layers": [{"type": "dense", "units": "ten"}]}}, "network.layers.0.units"),
    ({"network": {"layers": [{"type": "dense", "units": 10}]}, "rule": {"name": "magic"}}, "rule"),
    ({"network": {"layers": [{"type": "dense", "units": 10}]}, "train": {"epochs": 0}}, "train.epochs"),
])
def test_validation_errors_name_the_field(raw, field):
    with pytest.raises(BpcompileError) as err:
        spec_from_dict({"name": "x", **raw})
    assert f"field `{field}`" in str(err.value)


def test_impossible_rule_parts_are_rejected():
    with pytest.raises(ValueError, match="topology='direct'"):
        Feedback(source="sign", topology="direct")
    with pytest.raises(ValueError, match="source='learned'"):
        Feedback(source="random", learning="mirror")
    Feedback(source="learned", learning="kolen_pollack", topology="direct")  # a combination no paper ran: allowed


def test_duplicate_layer_names_are_rejected():
    with pytest.raises(ValueError, match="used twice"):
        NetworkSpec(layers=[Dense(name="a", units=3), Dense(name="a", units=3)])


def test_set_overrides_reach_nested_fields_and_list_items():
    raw = json.loads(spec_to_json(paper_experiment("mnist", "fc", "bp")))
    apply_overrides(raw, ["train.epochs=3", "network.layers.1.units=64", "optimizer.betas=[0.8, 0.9]", "data.dir=/x"])
    spec = spec_from_dict(raw)
    assert spec.train.epochs == 3 and spec.network.layers[1].units == 64
    assert spec.optimizer.betas == (0.8, 0.9) and spec.data.dir == "/x"
    with pytest.raises(BpcompileError, match="not a valid index"):
        apply_overrides(raw, ["network.layers.99.units=3"])
    with pytest.raises(BpcompileError, match="FIELD=VALUE"):
        apply_overrides(raw, ["train.epochs"])


def test_shipped_specs_match_their_generator_and_validate():
    result = subprocess.run([sys.executable, str(ROOT / "specs" / "generate.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    for path in (ROOT / "specs").glob("*.json"):
        if path.name == "schema.json":
            continue
        spec = load_spec(path)
        assert spec.name == path.stem


def test_tp_rules_and_macros_are_in_the_schema_now():
    spec = ExperimentSpec(name="x", network=NetworkSpec(layers=[ResNet(depth=50, stem="cifar", num_classes=10)]),
                          rule=AOSDTP(aux_units=16, schedule="alternating", inverse_optimizer=Adam(lr=1e-4)))
    assert spec_from_dict(json.loads(spec_to_json(spec))) == spec
    assert DTP(alpha=0.2).schedule == "parallel" and SignSymmetry(variant="frsf").variant == "frsf"
    assert FA().feedback_init is None


def test_shipped_specs_point_editors_at_the_current_schema():
    """specs/schema.json is `bpcompile schema`'s output; every shipped spec names it in "$schema" (a path relative
    to the spec), the schema allows that key, and a spec keeps it through load and save."""
    schema = json.loads((ROOT / "specs" / "schema.json").read_text())
    printed = subprocess.run([sys.executable, "-m", "bpcompile", "schema"], capture_output=True, text=True, cwd=ROOT)
    assert printed.returncode == 0 and json.loads(printed.stdout) == schema
    assert schema["properties"]["$schema"]["anyOf"][0]["type"] == "string"
    assert schema.get("additionalProperties") is False            # unknown keys stay errors in editors too
    shipped = [p for p in (ROOT / "specs").rglob("*.json") if p.name != "schema.json" and "spaces" not in p.parts]
    assert len(shipped) > 40
    for path in shipped:
        raw = json.loads(path.read_text())
        assert (path.parent / raw["$schema"]).resolve() == (ROOT / "specs" / "schema.json").resolve(), path
        assert next(iter(raw)) == "$schema"
    spec = load_spec(shipped[0])
    assert json.loads(spec_to_json(spec))["$schema"] == json.loads(shipped[0].read_text())["$schema"]
    with pytest.raises(BpcompileError, match=r"\$schema"):
        spec_from_dict({**json.loads(shipped[0].read_text()), "$schema": 3})
