"""Hostile spec files and fields, one case per kind the hardening issue found: each is exit 2 with one bounded
paragraph naming the field or file, and nothing is allocated for sizes no machine holds."""

import json
import os
from pathlib import Path

import pytest

from bpcompile.compiler import check_spec, input_spec
from bpcompile.errors import BpcompileError
from bpcompile.nn.budget import SPEC_LIMIT_BYTES, check_budget, estimate
from bpcompile.spec import load_spec, spec_from_dict
from bpcompile.spec.reading import MAX_FILE_BYTES

from spec_mutations import ROOT, load_base
from test_fuzz import cli

SPEC = ROOT / "specs" / "mnist_fc_bp.json"


def validate(*args) -> str:
    code, text = cli("validate", *map(str, args))
    assert code == 2, text
    assert "Traceback" not in text and len(text) < 2300, text
    return text


def write(tmp_path, content, name="spec.json") -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


# ---- reading the file -------------------------------------------------------
def test_a_spec_that_is_not_utf8_names_the_byte(tmp_path):
    assert "not UTF-8 text: byte 9" in validate(write(tmp_path, b'{"name": \xff}'))


def test_deep_nesting_and_long_numbers_are_refused_before_parsing(tmp_path):
    assert "more than 64 deep" in validate(write(tmp_path, "[" * 1000 + "]" * 1000))
    assert "integer of 4,400 digits" in validate(write(tmp_path, '{"name": ' + "7" * 4400 + "}"))


def test_duplicate_keys_are_refused(tmp_path):
    raw = SPEC.read_text().replace('"rule": {', '"rule": {"name": "fa"}, "rule": {', 1)
    assert "gives the key 'rule' twice" in validate(write(tmp_path, raw))


def test_nan_and_infinity_literals_are_refused(tmp_path):
    raw = json.loads(SPEC.read_text())
    raw["optimizer"]["lr"] = float("nan")
    assert "holds NaN, which is not JSON" in validate(write(tmp_path, json.dumps(raw)))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "spec.json"
    os.mkfifo(fifo)
    assert "not a regular file" in validate(fifo)


def test_an_oversized_spec_is_refused_by_its_size(tmp_path):
    path = write(tmp_path, b" " * (MAX_FILE_BYTES + 1))
    assert f"at most {MAX_FILE_BYTES:,} are read" in validate(path)


def test_messages_stay_short_whatever_the_input(tmp_path):
    raw = json.loads(SPEC.read_text())
    raw["name"] = "x" * 1_000_000                                   # echoed clipped
    assert "(1,000,002 chars)" in validate(write(tmp_path, json.dumps(raw)))
    raw.update({f"unknown_{i}": i for i in range(2000)})            # 2,000 problems: counted, not listed
    assert "more problems" in validate(write(tmp_path, json.dumps(raw)))


# ---- numbers ------------------------------------------------------------------
@pytest.mark.parametrize("assignment, field", [
    ("optimizer.lr=NaN", "optimizer.lr"),                        # a string: NaN is not JSON
    ("optimizer.eps=\"inf\"", "optimizer.eps"),
    ("optimizer.lr=1e999", "optimizer.lr"),
    ("optimizer.betas=[1,2]", "optimizer.betas.0"),
    ("network.layers.1.units=true", "network.layers.1.units"),    # no bool -> int coercion
    ("network.layers.1.units=\"64\"", "network.layers.1.units"),  # no str -> int coercion
    ("network.layers.1.units=64.0", "network.layers.1.units"),
    ("network.layers.1.units=1000000000000", "network.layers.1.units"),
    ("train.seed=10**30", "train.seed"),
    ("train.seed=1000000000000000000000000000000", "train.seed"),
    ("network.input_shape=[1,-5,28]", "network.input_shape.1"),
    ('data={"name":"synthetic","input_shape":[0]}', "data.input_shape.0"),
    ('optimizer.schedule={"name":"step","gamma":1e30}', "optimizer.schedule.gamma"),
    ("data.batch_size=1000000000000", "data.batch_size"),
    ('rule={"name":"ao_sdtp","aux_units":1e12}', "rule.aux_units"),
])
def test_numbers_are_strict_finite_and_bounded(assignment, field):
    text = validate(SPEC, "--set", assignment)
    assert f"`{field}`" in text or f"--set '{assignment}'" in text, text


def test_a_key_spelled_like_its_layer_type_is_named():
    # the activation layer's tag 'activation' and the unknown key 'activation' are told apart
    assert "field `network.layers.2.activation`: unknown key" in validate(SPEC, "--set", "network.layers.2.activation=1")


def test_set_through_a_scalar_or_null_is_an_error():
    assert "`name` is 'mnist_fc_bp', not an object or list" in validate(SPEC, "--set", "name.x=1")
    assert "not an object or list" in validate(SPEC, "--set", "network.init=null", "--set", "network.init.gain=2")


# ---- sizes --------------------------------------------------------------------
def test_huge_layers_are_refused_before_anything_is_allocated():
    text = validate(SPEC, "--set", "network.layers.1.units=16000000", "--set", "network.layers.3.units=16000000")
    assert "layer 'fc1' (network.layers[1], dense)" in text and "one tensor may hold at most" in text
    text = validate(ROOT / "specs" / "mnist_lc_fa.json", "--set", "network.layers.0.channels=60000",
                    "--set", "network.layers.0.kernel=1000")
    assert "layer 'lc1' (network.layers[0], locally_connected)" in text


def test_the_budget_names_batch_size_and_counts_every_part():
    spec = load_spec(ROOT / "specs" / "imagenet_lc_dtp.json", ["data.batch_size=1000000"])
    with pytest.raises(BpcompileError, match=r"data\.batch_size 1000000 .* more than any machine this project runs on \(1,024.0 GiB\)"):
        check_budget(spec, *input_spec(spec))
    found = estimate(load_spec(ROOT / "specs" / "mnist_fc_fa.json"), (1, 28, 28), 10)
    weights = 784 * 256 + 4 * 256 * 256 + 256 * 10
    assert found.parameters == weights + 5 * 256 + 10
    assert found.feedback == weights                            # FA: one B per W
    assert found.activations == 784 + 784 + 5 * 2 * 256 + 10    # input, flatten, dense + tanh outputs, logits
    assert found.bytes < SPEC_LIMIT_BYTES


def test_a_synthetic_set_too_large_for_memory_is_refused():
    raw = load_base("mnist_fc_bp.json")
    raw["data"] = {"name": "synthetic", "input_shape": [3, 2048, 2048], "train_size": 2**26}
    raw["network"]["input_shape"] = None
    with pytest.raises(BpcompileError, match="synthetic data"):
        check_spec(spec_from_dict(raw))


def test_run_refuses_what_the_device_cannot_hold(monkeypatch):
    import bpcompile.compiler.check as check
    monkeypatch.setattr(check, "device_memory_bytes", lambda device: 2**20)   # a 1 MiB machine
    with pytest.raises(BpcompileError, match="more than half the host memory available now"):
        check_spec(load_spec(SPEC), device=__import__("torch").device("cpu"))


# ---- validate refuses what run refuses ---------------------------------------
@pytest.mark.parametrize("assignment", ["train.precision=bf16", "train.channels_last=true"])
def test_validate_refuses_target_propagation_in_bf16_or_channels_last(assignment):
    assert "target propagation" in validate(ROOT / "specs" / "mnist_fc_dtp.json", "--set", assignment)


def test_validate_plans_a_huge_valid_spec_without_allocating_it(monkeypatch):
    # 2^24 units x 256 inputs: one 2^32-element weight (16 GiB), valid; validate must not allocate it (it once
    # built every network for real, and the OOM killer ended the process), and run refuses it on a small machine
    spec = load_spec(SPEC, ["network.layers.3.units=16777216"])
    network, _, found = check_spec(spec)
    assert all(p.device.type == "meta" for p in network.parameters()) and found.parameters > 2**32
    import bpcompile.compiler.check as check
    monkeypatch.setattr(check, "device_memory_bytes", lambda device: 8 * 2**30)
    code, text = cli("run", str(SPEC), "--set", "network.layers.3.units=16777216", "--dry-run", "1", "--device", "cpu")
    assert code == 2 and "needs 1" in text and "GiB at least" in text, text
