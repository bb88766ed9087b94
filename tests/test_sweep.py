"""Search spaces and random-search sweeps (bpcompile.experiments.space / sweep)."""

import json
import math
from pathlib import Path

import pytest
from rich.console import Console

from bpcompile.errors import BpcompileError, TrainingDiverged
from bpcompile.experiments import space as space_mod
from bpcompile.experiments import sweep as sweep_mod
from bpcompile.experiments.space import (
    Choice,
    LogUniform,
    Uniform,
    load_space,
    parse_space,
    sample,
    split_paths,
    trial_rng,
)
from bpcompile.experiments.sweep import best_validation, default_validation_size, run_sweep, trial_config, trial_spec
from bpcompile.runtime import trainer as trainer_mod
from bpcompile.runtime.checkpoint import write_json
from bpcompile.spec import spec_from_dict, spec_to_json

REPO = Path(__file__).resolve().parent.parent
TABLE4 = REPO / "specs" / "spaces" / "bartunov_table4.json"
QUIET = Console(quiet=True)


def tiny_raw(name="tiny", rule="fa", epochs=2, validation_size=16, lr=0.01):
    return {
        "name": name,
        "data": {"name": "synthetic", "input_shape": [4], "num_classes": 3, "train_size": 64, "test_size": 32,
                 "batch_size": 16, "validation_size": validation_size},
        "network": {"layers": [{"type": "dense", "name": "fc1", "units": 8}, {"type": "activation", "fn": "tanh"},
                               {"type": "dense", "name": "out", "units": 3}]},
        "rule": {"name": rule},
        "optimizer": {"name": "adam", "lr": lr},
        "train": {"epochs": epochs, "device": "cpu"},
    }


def tiny_spec(**kw):
    return spec_from_dict(tiny_raw(**kw))


LR_SPACE = {"optimizer.lr": {"log_uniform": [1e-3, 0.3]}, "optimizer.betas.1": {"choice": [0.99, 0.999]},
            "rule.alpha": {"uniform": [0.01, 0.2]}}


# ---- search spaces ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, path", [
    ({"optimizer.lr": {"log_uniform": [0, 1e-3]}}, "optimizer.lr"),
    ({"optimizer.lr": {"log_uniform": [1e-3, 1e-4]}}, "optimizer.lr"),
    ({"rule.alpha": {"uniform": [0.2]}}, "rule.alpha"),
    ({"rule.alpha": {"uniform": ["a", 1]}}, "rule.alpha"),
    ({"rule.noise_sigma": {"normal": [0, 1]}}, "rule.noise_sigma"),
    ({"optimizer.eps": {"choice": []}}, "optimizer.eps"),
    ({"optimizer.eps": [1e-8]}, "optimizer.eps"),
    ({"optimizer.lr": {"uniform": [0, 1], "choice": [1]}}, "optimizer.lr"),
    ({"optimizer.lrr": {"uniform": [0, 1]}}, "optimizer.lrr"),
    ({"optimiser.lr": {"uniform": [0, 1]}}, "optimiser.lr"),
    ({"optimizer..lr": {"uniform": [0, 1]}}, "optimizer..lr"),
])
def test_space_errors_name_the_field_path(raw, path):
    with pytest.raises(BpcompileError) as err:
        parse_space({"optimizer.betas.1": {"choice": [0.99]}, **raw}, "space.json")
    message = str(err.value)
    assert f"`{path}`" in message and "space.json" in message and "\n" not in message
    assert "`optimizer.betas.1`" not in message     # the valid entry is not blamed


def test_space_collects_every_problem_in_one_paragraph(tmp_path):
    with pytest.raises(BpcompileError) as err:
        parse_space({"optimizer.lr": {"log_uniform": [-1, 1]}, "rule.alpha": {"uniform": [2, 1]}})
    assert "`optimizer.lr`" in str(err.value) and "`rule.alpha`" in str(err.value)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(BpcompileError, match="not valid JSON"):
        load_space(bad)
    with pytest.raises(BpcompileError, match="does not exist"):
        load_space(tmp_path / "missing.json")
    with pytest.raises(BpcompileError, match="names no field"):
        parse_space({"$comment": "empty"})


def test_table4_space_file():
    space = load_space(TABLE4)
    p = space.params
    assert p["optimizer.lr"] == LogUniform(log_uniform=(1e-5, 3e-4))
    assert p["rule.inverse_optimizer.lr"] == LogUniform(log_uniform=(1e-5, 3e-4))
    assert p["optimizer.betas.0"] == Choice(choice=[0.9]) == p["rule.inverse_optimizer.betas.0"]
    assert p["optimizer.betas.1"] == Choice(choice=[0.99, 0.999]) == p["rule.inverse_optimizer.betas.1"]
    assert p["optimizer.eps"] == Choice(choice=[1e-4, 1e-6, 1e-8]) == p["rule.inverse_optimizer.eps"]
    assert p["rule.alpha"] == Uniform(uniform=(0.01, 0.2))
    assert p["rule.noise_sigma"] == Uniform(uniform=(0.01, 0.3))
    assert parse_space(space.to_json()) == space        # the file form round-trips
    # DTP has every field; SDTP no alpha; BP none of the rule's
    for name, missing in [("mnist_fc_dtp", []), ("mnist_lc_sdtp_parallel", ["rule.alpha"]),
                          ("mnist_fc_bp", [k for k in p if k.startswith("rule.")])]:
        spec = spec_from_dict(json.loads((REPO / "specs" / f"{name}.json").read_text()))
        assert split_paths(space, spec)[1] == sorted(missing)


def test_sampling_is_deterministic_per_seed_and_trial_and_in_bounds():
    space = load_space(TABLE4)
    configs = [sample(space, trial_rng(7, i)) for i in range(300)]
    assert configs == [sample(space, trial_rng(7, i)) for i in range(300)]
    assert configs[:5] != [sample(space, trial_rng(8, i)) for i in range(5)]
    assert len({c["optimizer.lr"] for c in configs}) == 300
    for c in configs:
        assert set(c) == set(space.params)
        assert 1e-5 <= c["optimizer.lr"] <= 3e-4 and 1e-5 <= c["rule.inverse_optimizer.lr"] <= 3e-4
        assert 0.01 <= c["rule.alpha"] <= 0.2 and 0.01 <= c["rule.noise_sigma"] <= 0.3
        assert c["optimizer.betas.0"] == 0.9 and c["optimizer.betas.1"] in (0.99, 0.999)
        assert c["optimizer.eps"] in (1e-4, 1e-6, 1e-8)
    assert {c["optimizer.eps"] for c in configs} == {1e-4, 1e-6, 1e-8}
    logs = [math.log10(c["optimizer.lr"]) for c in configs]      # log-uniform: both decades get samples
    assert min(logs) < -4.5 and max(logs) > -3.9
    # file order does not matter, and skipping a path does not change the others' values
    reordered = parse_space(dict(reversed(list(space.to_json().items()))))
    assert sample(reordered, trial_rng(7, 3)) == configs[3]
    fewer = trial_config(space, 7, 3, ["optimizer.lr"])
    assert fewer == {"optimizer.lr": configs[3]["optimizer.lr"]}


def test_default_validation_sizes():
    from bpcompile.spec import CIFAR10, MNIST, FashionMNIST, Synthetic

    assert default_validation_size(MNIST()) == default_validation_size(FashionMNIST()) == 10000
    assert default_validation_size(CIFAR10()) == 10000
    assert default_validation_size(MNIST(subset="embedded")) == 800
    assert default_validation_size(Synthetic(train_size=64)) == 6


# ---- a real sweep --------------------------------------------------------------------------------------------------
def test_sweep_picks_the_trial_with_the_lowest_validation_error(tmp_path):
    spec = tiny_spec(epochs=3)
    result = run_sweep(spec, LR_SPACE, trials=3, out=tmp_path / "sw", epochs=2, seed=1, console=QUIET)
    assert json.loads((tmp_path / "sw" / "sweep.json").read_text()) == json.loads(json.dumps(result))
    assert result["skipped_paths"] == ["rule.alpha"] and result["complete"]
    assert result["validation"] == {"size": 16, "set_by_sweep": False}
    per_trial = []
    for i, record in enumerate(result["trials"]):
        run = tmp_path / "sw" / f"trial_{i:03d}"
        assert record["dir"] == run.name and record["status"] == "finished"
        saved = json.loads((run / "spec.json").read_text())
        assert saved["train"]["epochs"] == 2                           # epochs overrides the spec's 3
        assert saved["optimizer"]["lr"] == record["config"]["optimizer.lr"]
        assert saved["optimizer"]["betas"][1] == record["config"]["optimizer.betas.1"]
        assert record["config"] == trial_config(parse_space(LR_SPACE), 1, i, ["optimizer.betas.1", "optimizer.lr"])
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        evaluated = [r for r in rows if "val_error" in r]
        assert len(evaluated) == 2
        best = min(evaluated, key=lambda r: (r["val_error"], r["epoch"]))
        assert record["best_val_error"] == best["val_error"] and record["best_val_epoch"] == best["epoch"]
        assert record["test_error_at_best_val"] == best["test_error"]
        per_trial.append((best["val_error"], i, best["test_error"], best["epoch"]))
    val, trial, test, epoch = min(per_trial)
    assert result["best"]["trial"] == trial and result["best"]["best_val_error"] == val
    assert result["best"]["test_error_at_best_val"] == test and result["best"]["best_val_epoch"] == epoch
    assert result["best"]["dir"] == f"trial_{trial:03d}"


def _fake_runs(monkeypatch, plan):
    """Replace the sweep's run_experiment by one that writes a run directory with planned metrics:
    plan[trial] = (val errors, test errors, diverges)."""
    calls = []

    def fake_run(spec, *, out, overwrite, **kw):
        trial = int(Path(out).name.split("_")[1])
        calls.append(trial)
        vals, tests, diverges = plan[trial]
        out.mkdir(parents=True, exist_ok=True)
        (out / "spec.json").write_text(spec_to_json(spec, full=True))
        rows = [{"epoch": e + 1, "train_loss": 1.0, "train_error": 50.0, "val_error": v, "test_error": t}
                for e, (v, t) in enumerate(zip(vals, tests))]
        (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        summary = {"name": spec.name, "status": "diverged" if diverges else "finished", "epochs": len(rows),
                   "final_test_error": tests[-1], "final_val_error": vals[-1], "final_train_error": 50.0}
        write_json(out / "summary.json", summary)
        if diverges:
            raise TrainingDiverged("training diverged in epoch 3: the loss is nan")
        return summary

    monkeypatch.setattr(sweep_mod, "run_experiment", fake_run)
    return calls


def test_selection_uses_validation_never_test_and_skips_diverged_trials(tmp_path, monkeypatch):
    _fake_runs(monkeypatch, {
        0: ([40.0, 25.0], [5.0, 4.0], False),     # the lowest test error, but not the lowest validation error
        1: ([20.0, 30.0], [50.0, 10.0], False),   # the lowest validation error, at epoch 1
        2: ([10.0, 5.0], [1.0, 1.0], True),       # diverged: not a candidate
        3: ([20.0, 20.0], [2.0, 2.0], False),     # ties trial 1 on validation: the earlier trial wins
    })
    result = run_sweep(tiny_spec(), {"optimizer.lr": {"choice": [0.01]}}, trials=4, out=tmp_path / "sw",
                       console=QUIET)
    assert [t["status"] for t in result["trials"]] == ["finished", "finished", "diverged", "finished"]
    assert "diverged" in result["trials"][2]["message"]
    best = result["best"]
    assert (best["trial"], best["best_val_error"], best["best_val_epoch"], best["test_error_at_best_val"]) == \
        (1, 20.0, 1, 50.0)
    assert best_validation([{"epoch": 0}, {"epoch": 1, "val_error": 3.0, "test_error": 9.0},
                            {"epoch": 2, "val_error": 3.0, "test_error": 1.0}]) == \
        {"best_val_error": 3.0, "best_val_epoch": 1, "test_error_at_best_val": 9.0}


def test_invalid_sampled_configuration_is_recorded_not_raised(tmp_path, monkeypatch):
    calls = _fake_runs(monkeypatch, {0: ([10.0], [10.0], False), 1: ([10.0], [10.0], False)})
    space = {"optimizer.lr": {"choice": [-1.0]}, "optimizer.eps": {"choice": [1e-8]}}
    result = run_sweep(tiny_spec(), space, trials=2, out=tmp_path / "sw", console=QUIET)
    assert calls == [] and result["best"] is None and result["complete"]
    for record in result["trials"]:
        assert record["status"] == "failed" and record["dir"] is None
        assert "optimizer.lr" in record["message"]


def test_validation_split_is_added_when_the_spec_has_none(tmp_path):
    result = run_sweep(tiny_spec(validation_size=0), {"optimizer.lr": {"uniform": [0.01, 0.02]}}, trials=1,
                       out=tmp_path / "sw", epochs=1, console=QUIET)
    assert result["validation"] == {"size": 6, "set_by_sweep": True}
    saved = json.loads((tmp_path / "sw" / "trial_000" / "spec.json").read_text())
    assert saved["data"]["validation_size"] == 6
    assert result["trials"][0]["best_val_error"] is not None and result["best"]["trial"] == 0


# ---- resuming -------------------------------------------------------------------------------------------------------
def _count_calls(monkeypatch):
    calls = {"run": [], "resume": []}
    real_run, real_resume = sweep_mod.run_experiment, sweep_mod.resume_experiment

    def run(spec, *, out, **kw):
        calls["run"].append(Path(out).name)
        return real_run(spec, out=out, **kw)

    def resume(path, **kw):
        calls["resume"].append(Path(path).name)
        return real_resume(path, **kw)

    monkeypatch.setattr(sweep_mod, "run_experiment", run)
    monkeypatch.setattr(sweep_mod, "resume_experiment", resume)
    return calls


def _strip_times(rows):
    return [{k: v for k, v in r.items() if k not in ("seconds", "train_seconds")} for r in rows]


def _metrics(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_interrupted_sweep_finishes_without_rerunning_finished_trials(tmp_path, monkeypatch):
    out = tmp_path / "sw"
    real_save = trainer_mod.Trainer.save
    interrupted = []

    def save_then_interrupt(self):       # Ctrl-C right after trial_001 checkpoints its first epoch
        real_save(self)
        if self.run_dir is not None and self.run_dir.path.name == "trial_001" and self.epoch == 1 and not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer_mod.Trainer, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(tiny_spec(), LR_SPACE, trials=3, out=out, epochs=2, seed=3, console=QUIET)
    record = json.loads((out / "sweep.json").read_text())
    assert [t["status"] for t in record["trials"]] == ["finished", "running"]
    assert (out / "trial_001" / "checkpoint.pt").exists()
    assert json.loads((out / "trial_001" / "summary.json").read_text())["status"] == "interrupted"
    # trial_002 as if it had crashed before its first checkpoint: a spec and a half-written metrics file
    (out / "trial_002").mkdir()
    (out / "trial_002" / "metrics.jsonl").write_text('{"epoch": 0, "layers": {}}\n{"epoch": 1, "trunc')
    finished = out / "trial_000" / "metrics.jsonl"
    before = (finished.read_bytes(), finished.stat().st_mtime_ns, (out / "trial_000" / "summary.json").read_bytes())

    calls = _count_calls(monkeypatch)
    result = run_sweep(tiny_spec(), LR_SPACE, trials=3, out=out, epochs=2, seed=3, console=QUIET)
    assert calls == {"run": ["trial_002"], "resume": ["trial_001"]}
    assert (finished.read_bytes(), finished.stat().st_mtime_ns,
            (out / "trial_000" / "summary.json").read_bytes()) == before
    assert [t["status"] for t in result["trials"]] == ["finished"] * 3 and result["complete"]
    for i in range(3):
        assert [r["epoch"] for r in _metrics(out / f"trial_{i:03d}" / "metrics.jsonl")] == [0, 1, 2]
    # the resumed trial ends exactly where an uninterrupted run of its configuration does
    spec_1 = trial_spec(sweep_mod.sweep_base(tiny_spec(), 2)[0], result["trials"][1]["config"], 1)
    trainer_mod.run_experiment(spec_1, out=tmp_path / "straight", console=QUIET)
    assert _strip_times(_metrics(out / "trial_001" / "metrics.jsonl")) == \
        _strip_times(_metrics(tmp_path / "straight" / "metrics.jsonl"))

    # a third run has nothing left to do
    calls["run"].clear(), calls["resume"].clear()
    again = run_sweep(tiny_spec(), LR_SPACE, trials=3, out=out, epochs=2, seed=3, console=QUIET)
    assert calls == {"run": [], "resume": []} and again["best"] == result["best"]


def test_restart_with_another_spec_space_or_seed_is_refused(tmp_path, monkeypatch):
    _fake_runs(monkeypatch, {0: ([10.0], [10.0], False), 1: ([12.0], [10.0], False)})
    out = tmp_path / "sw"
    space = {"optimizer.lr": {"log_uniform": [1e-3, 1e-2]}}
    run_sweep(tiny_spec(), space, trials=1, out=out, seed=5, console=QUIET)
    with pytest.raises(BpcompileError, match=r"search space differs in optimizer\.lr"):
        run_sweep(tiny_spec(), {"optimizer.lr": {"log_uniform": [1e-3, 2e-2]}}, trials=1, out=out, seed=5,
                  console=QUIET)
    with pytest.raises(BpcompileError, match="seed differs"):
        run_sweep(tiny_spec(), space, trials=1, out=out, seed=6, console=QUIET)
    with pytest.raises(BpcompileError, match=r"spec differs in optimizer\.lr"):
        run_sweep(tiny_spec(lr=0.02), space, trials=1, out=out, seed=5, console=QUIET)
    with pytest.raises(BpcompileError, match=r"spec differs in train\.epochs"):
        run_sweep(tiny_spec(), space, trials=1, out=out, seed=5, epochs=7, console=QUIET)
    # the same sweep with more trials continues
    result = run_sweep(tiny_spec(), space, trials=2, out=out, seed=5, console=QUIET)
    assert [t["trial"] for t in result["trials"]] == [0, 1] and result["best"]["trial"] == 0
    # a directory holding something else is not taken over
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(BpcompileError, match="no sweep.json"):
        run_sweep(tiny_spec(), space, trials=1, out=tmp_path / "other", console=QUIET)


def test_space_module_public_names():
    assert space_mod.sample is sample and callable(space_mod.has_path)
    assert space_mod.has_path({"a": [1, {"b": None}]}, "a.1.b") and not space_mod.has_path({"a": [1]}, "a.1")
