"""The command line, end to end in subprocesses: bad input exits 2 with one
message and no traceback; run directories are protected; resume is exact;
inspect shows the rewritten backward."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def bpc(*args, cwd=None, env=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "bpcompile", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=full_env, timeout=300)


def bpc_here(*args):
    """`bpcompile ARGS` in this process: (returncode, stderr) like bpc's result, for commands that must succeed."""
    from types import SimpleNamespace

    from bpcompile.cli import main

    try:
        main(list(map(str, args)))
    except SystemExit as exit:
        return SimpleNamespace(returncode=exit.code or 0, stderr=f"exit {exit.code}")
    return SimpleNamespace(returncode=0, stderr="")


def synthetic_raw(name="syn", rule="fa", epochs=2, optimizer=None) -> dict:
    """A tiny synthetic run: 256 examples in batches of 32 (8 steps an epoch), an LC layer and two dense."""
    return {
        "name": name,
        "data": {"name": "synthetic", "input_shape": [1, 6, 6], "num_classes": 3, "train_size": 256,
                 "test_size": 64, "batch_size": 32},
        "network": {"layers": [
            {"type": "locally_connected", "name": "lc1", "channels": 3, "kernel": 3, "stride": 2},
            {"type": "activation", "fn": "tanh"}, {"type": "flatten"},
            {"type": "dense", "name": "fc1", "units": 16}, {"type": "activation", "fn": "tanh"},
            {"type": "dense", "name": "out", "units": 3}]},
        "rule": rule if isinstance(rule, dict) else {"name": rule},
        "optimizer": optimizer or {"name": "adam", "lr": 1e-2},
        "train": {"epochs": epochs, "seed": 3},
    }


def synthetic_spec(tmp_path, name="syn", rule="fa", epochs=2, lr=1e-2, extra=None):
    spec = synthetic_raw(name, rule, epochs, {"name": "adam", "lr": lr})
    spec.update(extra or {})
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(spec))
    return path


def assert_user_error(result, *needles):
    """Exit code 2, no traceback, and the message (stderr; `validate` reports on stdout) names each needle."""
    output = result.stderr + result.stdout
    assert result.returncode == 2, output
    assert "Traceback" not in output
    for needle in needles:
        assert needle in output, output


def test_unknown_key_exits_2_naming_the_field(tmp_path):
    path = synthetic_spec(tmp_path, extra={"optimiser": {"name": "adam"}})
    assert_user_error(bpc("run", path, "--out", tmp_path / "r"), "field `optimiser`", "unknown key")
    assert not (tmp_path / "r").exists()


def test_wrong_type_exits_2_naming_the_field(tmp_path):
    path = synthetic_spec(tmp_path)
    assert_user_error(bpc("validate", path, "--set", "train.epochs=many"), "train.epochs")
    assert_user_error(bpc("run", path, "--set", "train.epochs=many"), "field `train.epochs`")


def test_layer_that_does_not_fit_exits_2_naming_the_layer(tmp_path):
    path = synthetic_spec(tmp_path)
    result = bpc("run", path, "--set", "network.layers.0.kernel=9", "--set", "network.layers.0.padding=\"valid\"",
                 "--out", tmp_path / "r")
    assert_user_error(result, "layer 'lc1'", "network.layers[0]", "does not fit")


def test_missing_data_file_exits_2_naming_files_and_places(tmp_path):
    path = tmp_path / "m.json"
    spec = json.loads((ROOT / "specs" / "mnist_fc_bp.json").read_text())
    spec["data"]["download"] = False
    path.write_text(json.dumps(spec))
    empty = tmp_path / "empty"
    empty.mkdir()
    result = bpc("run", path, "--data-dir", empty, "--out", tmp_path / "r",
                 env={"BPCOMPILE_DATA": str(empty), "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert_user_error(result, "train-images-idx3-ubyte", str(empty))
    assert not (tmp_path / "r").exists()


def test_missing_spec_file_and_bad_json(tmp_path):
    assert_user_error(bpc("run", tmp_path / "nope.json"), "nope.json", "does not exist")
    bad = tmp_path / "bad.json"
    bad.write_text("{\"name\": ")
    assert_user_error(bpc("validate", bad), "not valid JSON")


def test_feature_not_built_yet_exits_2(tmp_path):
    """bf16 is built for the gradient-family rules, not yet for target propagation."""
    path = synthetic_spec(tmp_path, rule="dtp", extra={"train": {"epochs": 1, "precision": "bf16"}})
    assert_user_error(bpc("run", path, "--out", tmp_path / "r"), "target propagation")
    assert not (tmp_path / "r").exists()


def test_run_writes_the_run_directory_and_protects_it(tmp_path):
    path = synthetic_spec(tmp_path)
    out = tmp_path / "run"
    result = bpc("run", path, "--out", out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "metrics.jsonl", "spec.json", "summary.json"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]        # epoch 0: the alignment metrics before training
    assert set(rows[0]["layers"]["fc1"]) == {"update_angle", "delta_angle", "feedback_angle", "feedback_norm_ratio"}
    rows = rows[1:]
    for key in ("train_loss", "train_error", "test_error", "seconds"):
        assert all(key in r for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    for key in ("final_test_error", "best_test_error", "final_train_error", "epochs", "wall_seconds", "device",
                "torch", "triton"):
        assert key in summary
    assert summary["status"] == "finished" and summary["epochs"] == 2
    assert json.loads((out / "spec.json").read_text())["optimizer"]["eps"] == 1e-8  # resolved: defaults written
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = bpc("run", path, "--out", out)
    assert_user_error(again, "already exists", "--resume", "--overwrite")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert bpc("run", path, "--out", out, "--overwrite").returncode == 0


# every registered rule resumes exactly (tests/test_rule_conformance.py checks this table covers them)
RESUME_RULES = {
    "fa": "fa",
    "weight_mirror": {"name": "weight_mirror", "mirror": {"batch_size": 16, "pre_batches": 3}},   # noise generator
    "brsf": {"name": "sign_symmetry", "variant": "brsf"},                                # magnitude generator too
    "kolen_pollack": {"name": "kolen_pollack", "weight_decay": 0.01},
    # split after epoch 1: between the inverse epoch and the forward epoch (noise generator, inverse optimiser)
    "sdtp_alternating": {"name": "sdtp", "schedule": "alternating", "noise_sigma": 0.1},
    "dtp_parallel": {"name": "dtp", "schedule": "parallel", "noise_sigma": 0.1, "alpha": 0.1},
    "bp": "bp",
    "dfa": "dfa",
    "direct_kolen_pollack": {"name": "feedback", "source": "learned", "learning": "kolen_pollack",
                             "topology": "direct"},                               # the feedback optimiser's state
    "tp": {"name": "tp", "schedule": "parallel", "noise_sigma": 0.1, "alpha": 0.1},
    "ao_sdtp": {"name": "ao_sdtp", "schedule": "parallel", "noise_sigma": 0.1, "aux_units": 8},
    "fa_redrawn": {"name": "fa_redrawn", "every": 3},                        # a plug-in: redraws at steps 3, 6, ...
}
PLUGIN_OF = {"fa_redrawn": ROOT / "examples" / "rules" / "fa_redrawn.py"}


def test_metrics_lr_is_the_rate_each_epoch_trained_at(tmp_path):
    """Under a schedule the lr column holds the epoch's own rate (cosine: lr at epochs 0, 1, 2 of 3), not the
    rate the scheduler set for the next epoch after it."""
    path = synthetic_spec(tmp_path, epochs=3, lr=0.01)
    raw = json.loads(path.read_text())
    raw["optimizer"]["schedule"] = {"name": "cosine"}
    path.write_text(json.dumps(raw))
    assert bpc_here("run", path, "--out", tmp_path / "run", "--no-progress").returncode == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][1:]
    expected = [0.01 * 0.5 * (1 + math.cos(math.pi * k / 3)) for k in range(3)]
    assert [r["lr"] for r in rows] == pytest.approx(expected)


def _lrs(run_dir):
    return [json.loads(line)["lr"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()[1:]]


def test_a_cosine_span_set_apart_from_train_epochs(tmp_path):
    """optimizer.schedule.epochs: the decay spans 2 epochs of a 3-epoch run (then stays at min_lr); a run trained in
    parts along that span (1 epoch, resumed to 3) trains every epoch at the uninterrupted run's rate and ends with
    its weights."""
    path = synthetic_spec(tmp_path, epochs=3, lr=0.01)
    raw = json.loads(path.read_text())
    raw["optimizer"]["schedule"] = {"name": "cosine", "epochs": 2, "min_lr": 0.001}
    path.write_text(json.dumps(raw))
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert bpc_here("run", path, "--out", straight, "--no-progress").returncode == 0
    expected = [0.001 + 0.009 * 0.5 * (1 + math.cos(math.pi * min(k / 2, 1))) for k in range(3)]
    assert _lrs(straight) == pytest.approx(expected) and expected[1:] == pytest.approx([0.0055, 0.001])
    assert bpc_here("run", path, "--out", split, "--set", "train.epochs=1", "--no-progress").returncode == 0
    assert bpc_here("run", "--resume", split, "--set", "train.epochs=3", "--no-progress").returncode == 0
    assert _lrs(split) == _lrs(straight)
    a, b = (torch.load(d / "checkpoint.pt", weights_only=False)["network"] for d in (straight, split))
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_resume_refuses_to_stretch_a_cosine_decay_over_more_epochs(tmp_path):
    """Without its own span a cosine decay spans train.epochs: raising it on resume would change the rates of the
    epochs still to come, so it is refused, naming the schedule and the way out; resuming to the same length is not."""
    path = synthetic_spec(tmp_path, epochs=1, lr=0.01)
    raw = json.loads(path.read_text())
    raw["optimizer"]["schedule"] = {"name": "cosine"}
    path.write_text(json.dumps(raw))
    run = tmp_path / "run"
    assert bpc_here("run", path, "--out", run, "--no-progress").returncode == 0
    before = (run / "metrics.jsonl").read_text()
    assert_user_error(bpc("run", "--resume", run, "--set", "train.epochs=2"), "optimizer.schedule is a cosine decay",
                      "--set optimizer.schedule.epochs=2")
    assert (run / "metrics.jsonl").read_text() == before                # nothing written
    assert bpc_here("run", "--resume", run, "--no-progress").returncode == 0


def test_cosine_span_and_warmup_are_checked(tmp_path):
    path = synthetic_spec(tmp_path)
    assert_user_error(bpc("validate", path, "--set", 'optimizer.schedule={"name": "cosine", "epochs": 2, '
                          '"warmup_epochs": 2}'), "optimizer.schedule", "warmup_epochs (2) must be below epochs (2)")


@pytest.mark.parametrize("schedule", [{"name": "constant"}, {"name": "cosine"}, {"name": "step", "step_epochs": 1,
                                                                                  "gamma": 0.3}])
def test_the_inverse_optimiser_follows_its_own_schedule(tmp_path, schedule):
    """rule.inverse_optimizer.schedule sets the inverses' rate each epoch (it was once ignored): after a 3-epoch
    run the checkpointed inverse optimiser holds the last epoch's rate (0-based epoch 2) by the schedule's formula."""
    inverse = {"name": "adam", "lr": 0.02, "schedule": schedule}
    rule = {"name": "dtp", "schedule": "parallel", "noise_sigma": 0.1, "alpha": 0.1, "inverse_optimizer": inverse}
    path = synthetic_spec(tmp_path, rule=rule, epochs=3)
    out = tmp_path / "run"
    assert bpc_here("run", path, "--out", out, "--no-progress").returncode == 0
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    lr = checkpoint["rule_step"]["hooks"][0]["inverse_optimizer"]["param_groups"][0]["lr"]
    factor = {"constant": 1.0, "cosine": 0.5 * (1 + math.cos(math.pi * 2 / 3)), "step": 0.3 ** 2}[schedule["name"]]
    assert lr == pytest.approx(0.02 * factor)


@pytest.mark.parametrize("rule", list(RESUME_RULES.values()), ids=list(RESUME_RULES))
def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path, rule):
    path = synthetic_spec(tmp_path, rule=rule, epochs=3)
    name = rule if isinstance(rule, str) else rule["name"]
    plugin = ["--plugin", PLUGIN_OF[name]] if name in PLUGIN_OF else []
    straight, split = tmp_path / "straight", tmp_path / "split"
    # the CLI in this process (a subprocess per command costs seconds of imports; the first case keeps one)
    command = bpc if rule == "fa" else bpc_here
    assert command("run", path, *plugin, "--out", straight, "--no-progress").returncode == 0
    assert command("run", path, *plugin, "--out", split, "--set", "train.epochs=1", "--no-progress").returncode == 0
    result = command("run", path, *plugin, "--resume", split, "--no-progress")   # the spec asks for 3 epochs: 2 more
    assert result.returncode == 0, result.stderr
    a = torch.load(straight / "checkpoint.pt", weights_only=False)
    b = torch.load(split / "checkpoint.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 3
    for name, tensor in a["network"].items():
        assert torch.equal(tensor, b["network"][name]), name
    for name, tensor in a["rule_state"].items():
        assert torch.equal(tensor, b["rule_state"][name]), name
    rows_a = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(x) for x in (split / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r.get("train_loss"), r.get("test_error"), r["layers"]) for r in rows_a] == \
           [(r["epoch"], r.get("train_loss"), r.get("test_error"), r["layers"]) for r in rows_b]
    if rule == "fa":
        changed = bpc("run", path, "--resume", split, "--set", "optimizer.lr=0.5")
        assert_user_error(changed, "optimizer.lr", "only train.epochs")


def test_exploding_targets_stop_the_run_naming_the_layer(tmp_path):
    # alternating: the epoch's inverse turn makes no targets; its forward turn's first targets are a gradient
    # step of 1e12
    rule = {"name": "dtp", "schedule": "alternating", "alpha": 1e12}
    path = synthetic_spec(tmp_path, rule=rule, epochs=3)
    out = tmp_path / "run"
    result = bpc("run", path, "--out", out, "--no-progress")
    assert result.returncode == 3, result.stderr
    assert "diverged in epoch 1" in result.stderr and "the targets of layer 'fc1' exploded" in result.stderr
    assert "no checkpoint had been written yet" in result.stderr and "Traceback" not in result.stderr
    assert json.loads((out / "summary.json").read_text())["status"] == "diverged"


@pytest.mark.parametrize("alternation,inverse_steps,forward_steps", [
    ({}, 8, 8),                                                  # Lee et al.: an inverse pass, then a forward pass
    ({"block_batches": 3, "inverse_passes": 2}, 16, 8),
    ({"block_batches": 1, "forward_passes": 3}, 8, 24),
])
def test_an_alternating_epoch_trains_every_batch_in_each_turn(tmp_path, alternation, inverse_steps, forward_steps):
    """One epoch of 8 batches: the forward and inverse optimisers step once per batch and pass (Adam's step counts
    in the checkpoint), and the logged train error comes from the forward turns."""
    rule = {"name": "sdtp", "schedule": "alternating", "alternation": alternation}
    out = tmp_path / "run"
    result = bpc("run", synthetic_spec(tmp_path, rule=rule, epochs=1), "--out", out, "--no-progress")
    assert result.returncode == 0, result.stderr
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    forward = {float(s["step"]) for s in checkpoint["optimizer"]["state"].values()}
    inverse = {float(s["step"]) for s in checkpoint["rule_step"]["hooks"][0]["inverse_optimizer"]["state"].values()}
    assert forward == {float(forward_steps)} and inverse == {float(inverse_steps)}
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[1])
    assert "phase" not in row and 0 <= row["train_error"] <= 100


def test_dry_run_writes_nothing(tmp_path):
    path = synthetic_spec(tmp_path)
    result = bpc("run", path, "--dry-run", 3, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("step ") >= 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn.json"]


# the full-size ResNets stepped here (the others are validated): each rule on ResNets is checked against a
# plain implementation in tests/test_resnet.py; compiling a ResNet-18 takes ~20 s of CI's CPU
STEPPED_RESNETS = ("cifar_resnet18_bp.json", "cifar_resnet18_wm.json")


def test_dry_run_of_every_shipped_spec():
    """Every spec validates; every spec but the ImageNet ones (260M-parameter LC nets, 224x224 ResNets) and most
    ResNets compiles and steps, in-process (an alternating schedule's two phases take one step each)."""
    from rich.console import Console

    from bpcompile.runtime import dry_run
    from bpcompile.spec import load_spec

    paths = sorted(p for p in (ROOT / "specs").glob("*.json") if p.name != "schema.json")
    printed = sorted((ROOT / "specs" / "printed").glob("*.json"))    # Table 5 as printed: the same nets
    result = bpc("validate", *paths, *printed)
    assert result.returncode == 0, result.stdout + result.stderr
    assert printed, "specs/printed/ holds the cells whose shipped settings depart from Table 5"
    for path in paths:
        if path.name.startswith("imagenet_") or ("resnet" in path.name and path.name not in STEPPED_RESNETS):
            continue
        sets = ["data.batch_size=4"]
        if '"weight_mirror"' in path.read_text():   # a short first mirror phase: plain repetition, slow on a CPU
            sets.append("rule.mirror.pre_batches=2")
        losses = dry_run(load_spec(path, sets), 2, device="cpu", console=Console(quiet=True))
        assert len(losses) == 2, path


def test_dry_run_of_an_imagenet_resnet_spec():
    """The ImageNet ResNet specs are only validated above; this one steps at full size (224x224, ResNet-18,
    Kolen-Pollack), as `bpcompile run specs/imagenet_resnet18_kp.json --dry-run 2 --device cpu --set
    data.batch_size=8` in the docs."""
    result = bpc("run", ROOT / "specs" / "imagenet_resnet18_kp.json", "--dry-run", 2, "--device", "cpu",
                 "--set", "data.batch_size=8")
    assert result.returncode == 0, result.stderr
    assert "on random data of shape [3, 224, 224]" in result.stderr and "step 2: loss" in result.stderr


def test_inspect_shows_the_resnet_macro_expanded():
    result = bpc("inspect", ROOT / "specs" / "cifar_resnet18_fa.json", "--stage", "backward")
    assert result.returncode == 0, result.stderr
    for layer in ("stem_conv", "stage1_block1.conv1", "stage2_block1.proj", "stage4_block2.conv2", "fc"):
        assert layer in result.stdout, layer
    assert "stage2_block1.proj.feedback" in result.stdout


def test_inspect_shows_the_feedback_tensor_in_place_of_the_weight(tmp_path):
    result = bpc("inspect", ROOT / "specs" / "mnist_fc_fa.json", "--stage", "backward")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "backward:" in text and "forward:" not in text
    for layer in ("fc2", "fc3", "fc4", "fc5", "out"):
        assert "dense_grad_input(" in text
        assert f"{layer}_feedback)" in text and f"reads {layer}.feedback (B) instead of {layer}.weight (W)" in text
    for line in text.splitlines():
        if "dense_grad_input(" in line:
            assert "_weight" not in line.split("#")[0]
    bp = bpc("inspect", ROOT / "specs" / "mnist_fc_bp.json", "--stage", "backward").stdout
    assert "fc2_weight)" in bp and "REWRITTEN" not in bp
    dot = tmp_path / "g.dot"
    assert bpc("inspect", ROOT / "specs" / "mnist_lc_fa.json", "--format", "dot", "--out", dot).returncode == 0
    assert dot.read_text().startswith("digraph") and "REWRITTEN" in dot.read_text()


def test_schema_and_help():
    result = bpc("schema")
    assert result.returncode == 0 and "ExperimentSpec" in result.stdout
    assert "--dry-run" in bpc("run", "--help").stdout


def test_quickstart_trains_offline_under_10_percent(tmp_path):
    """The README's first command: FA on the embedded MNIST subset (no data directory, no network)."""
    out = tmp_path / "qs"
    result = bpc("run", ROOT / "specs" / "quickstart.json", "--out", out, "--no-progress",
                 env={"BPCOMPILE_DATA": str(tmp_path / "none"), "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_test_error"] < 10.0


@pytest.mark.parametrize("spec,needles", [
    ("mnist_fc_dfa", ["bpcompile.direct_feedback(", "REWRITTEN by dfa", "fc2_feedback, [256])"]),
    ("mnist_fc_ss", ["bpcompile.sign_feedback(fc2_weight", "REWRITTEN by sign_symmetry: reads sign(fc2.weight)"]),
    ("mnist_fc_wm", ["REWRITTEN by weight_mirror: reads fc2.feedback (B)", "mirror program", "noise_fc2"]),
    ("mnist_fc_kp", ["REWRITTEN by kolen_pollack: reads fc2.feedback (B)"]),
    ("cifar_lc_sdtp", ["target_lc1 = ", "local_loss_lc2 = ", "inverse_loss_lc3 = ", "# lc3 inverse",
                       "bpcompile.locally_connected_grad_input(", "lc2_inverse_weight", "noise_lc3: noise"]),
])
def test_inspect_shows_each_rules_rewritten_backward(spec, needles):
    result = bpc("inspect", ROOT / "specs" / f"{spec}.json", "--stage", "backward")
    assert result.returncode == 0, result.stderr
    for needle in needles:
        assert needle in result.stdout, needle
