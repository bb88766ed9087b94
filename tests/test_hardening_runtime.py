"""The runtime's hardening: checkpoints load as tensors and plain data only (a crafted one runs no code), a full
disk is a user error naming the file, summary.json says how a run ended, divergence is caught in every loss output,
in learning rates, in parameters and in an exploding finite loss, `--resume` of a run without a checkpoint starts it
again, and one process at a time trains into a run directory."""

import errno
import fcntl
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console

from bpcompile import cli
from bpcompile.errors import BpcompileError, TrainingDiverged
from bpcompile.runtime import step as step_mod
from bpcompile.runtime import trainer as trainer_mod
from bpcompile.runtime.checkpoint import WriteFailed, load_checkpoint, write_json
from bpcompile.runtime.rundir import RunDir
from bpcompile.spec import spec_from_dict

from test_cli import synthetic_raw

ROOT = Path(__file__).resolve().parents[1]
QUIET = Console(quiet=True)
RUN_FILES = ["checkpoint.pt", "metrics.jsonl", "spec.json", "summary.json"]


def raw_spec(epochs=2, optimizer=None, rule=None):
    """test_cli's tiny synthetic run (8 steps an epoch), named 'tiny'."""
    return synthetic_raw("tiny", rule or "fa", epochs, optimizer)


def spec_file(tmp_path, **kw) -> Path:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(raw_spec(**kw)))
    return path


def run_cli(argv, capsys) -> tuple[int, str]:
    """`bpcompile ARGV` in-process: (exit code, stderr with rich's line wrapping undone)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(a) for a in argv])
    return exit_info.value.code, " ".join(capsys.readouterr().err.split())


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def finite_checkpoint(path: Path) -> bool:
    payload = load_checkpoint(path)
    tensors = list(payload["network"].values()) + list(payload["rule_state"].values())
    tensors += [v for state in payload["optimizer"]["state"].values() for v in state.values() if torch.is_tensor(v)]
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


# ---- 1. a checkpoint is data, never code ---------------------------------------------------------------------------
class RunsCode:
    """Unpickling this calls open(marker, 'w'): a crafted checkpoint's payload."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_crafted_checkpoint_runs_no_code_on_resume(tmp_path):
    out = tmp_path / "run"
    trainer_mod.run_experiment(spec_from_dict(raw_spec(epochs=1), "tiny"), out=out, console=QUIET)
    marker = tmp_path / "pwned"
    crafted = {"epoch": 1, "network": RunsCode(marker)}
    torch.save(crafted, tmp_path / "probe.pt")           # the exploit is real: a full unpickle runs it
    torch.load(tmp_path / "probe.pt", weights_only=False)
    assert marker.exists()
    marker.unlink()
    torch.save(crafted, out / "checkpoint.pt")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    result = subprocess.run([sys.executable, "-m", "bpcompile", "run", "--resume", str(out)], capture_output=True,
                            text=True, cwd=ROOT, timeout=300)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2, output
    assert "Traceback" not in output and not marker.exists()
    assert str(out / "checkpoint.pt") in output and "something other than tensors and plain data" in output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before      # nothing rewritten


def test_a_truncated_checkpoint_is_a_user_error_naming_the_file(tmp_path, capsys):
    out = tmp_path / "run"
    trainer_mod.run_experiment(spec_from_dict(raw_spec(epochs=1), "tiny"), out=out, console=QUIET)
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    code, err = run_cli(["run", "--resume", out, "--no-progress"], capsys)
    assert code == 2 and str(out / "checkpoint.pt") in err and "truncated or corrupt" in err
    assert len(err) < 2000


# ---- 2. disk full --------------------------------------------------------------------------------------------------
def test_a_full_disk_on_the_second_checkpoint_exits_2_and_keeps_the_first(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real_save = torch.save
    calls = []

    def save_on_a_full_disk(obj, f, *args, **kwargs):     # the second checkpoint (epoch 2) finds the disk full
        calls.append(1)
        if len(calls) == 2:
            f.write(b"the first bytes fit")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_on_a_full_disk)
    code, err = run_cli(["run", spec_file(tmp_path, epochs=3), "--out", out, "--no-progress"], capsys)
    monkeypatch.setattr(torch, "save", real_save)
    assert code == 2, err
    assert str(out / "checkpoint.pt") in err and "No space left on device (ENOSPC)" in err
    assert re.search(r"\d+\.\d [MG]iB free on that file system", err)
    assert "checkpoint of epoch 1 is kept" in err and f"--resume {out}" in err and len(err) < 2000
    assert sorted(p.name for p in out.iterdir()) == RUN_FILES            # no temp file left behind
    assert summary(out)["status"] == "failed" and "No space left on device" in summary(out)["error"]
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1

    code, err = run_cli(["run", "--resume", out, "--no-progress"], capsys)   # space freed: continue
    assert code == 0, err
    assert "resuming tiny from epoch 1" in err
    assert [r["epoch"] for r in metrics(out)] == [0, 1, 2, 3]
    assert summary(out)["status"] == "finished" and summary(out)["epochs"] == 3


def test_failed_writes_of_metrics_and_summaries_name_the_file(tmp_path):
    run = RunDir(tmp_path)
    (tmp_path / "metrics.jsonl").mkdir()                 # open(..., 'a') fails with an OSError
    with pytest.raises(WriteFailed, match="metrics.jsonl") as info:
        run.append_metrics({"epoch": 1})
    assert "free on that file system" in str(info.value)
    with pytest.raises(WriteFailed, match="No such file or directory"):
        write_json(tmp_path / "gone" / "summary.json", {"status": "running"})


# ---- 3. summary.json says how the run ended ------------------------------------------------------------------------
def test_summary_says_running_then_interrupted(tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_epoch = trainer_mod.Trainer.train_epoch
    seen = []

    def epoch_then_ctrl_c(self):
        seen.append(summary(out)["status"])
        if self.epoch == 1:
            raise KeyboardInterrupt
        return real_epoch(self)

    monkeypatch.setattr(trainer_mod.Trainer, "train_epoch", epoch_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        trainer_mod.run_experiment(spec_from_dict(raw_spec(epochs=3), "tiny"), out=out, console=QUIET)
    assert seen == ["running", "running"]
    assert summary(out)["status"] == "interrupted" and summary(out)["epochs"] == 1

    # the last summary cannot be written either: the interrupt still comes through, not the write error
    real_write = RunDir.write_summary

    def full_disk_at_the_end(self, record):
        if record["status"] != "running":
            raise WriteFailed("could not write summary.json: No space left on device")
        return real_write(self, record)

    monkeypatch.setattr(RunDir, "write_summary", full_disk_at_the_end)
    with pytest.raises(KeyboardInterrupt):
        trainer_mod.run_experiment(spec_from_dict(raw_spec(epochs=3), "tiny"), out=tmp_path / "again",
                                   console=QUIET)


# ---- 4. divergence -------------------------------------------------------------------------------------------------
def test_an_exploding_finite_loss_is_divergence(tmp_path, monkeypatch, capsys):
    """SGD at lr 1e6: the loss is a finite 2e6 from the first epoch on; it used to be logged as a result."""
    path = spec_file(tmp_path, epochs=3, optimizer={"name": "sgd", "lr": 1e6})
    code, err = run_cli(["run", path, "--out", tmp_path / "run", "--no-progress"], capsys)
    assert code == 3, err
    assert "diverged in epoch 1" in err and "over 1000 times" in err and "first loss" in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists() and summary(tmp_path / "run")["status"] == "diverged"
    code, err = run_cli(["run", path, "--out", tmp_path / "unbounded", "--no-progress",   # the bound alone stopped it
                         "--set", "train.divergence_factor=null"], capsys)
    assert code == 0, err


def _with_step_gamma(gamma: float, epochs: int):
    """A spec whose step schedule multiplies lr by `gamma` each epoch, built past the spec's own bounds on gamma."""
    spec = spec_from_dict(raw_spec(epochs=epochs, optimizer={
        "name": "adam", "lr": 1e-2, "schedule": {"name": "step", "step_epochs": 1, "gamma": 0.5}}), "tiny")
    schedule = spec.optimizer.schedule.model_copy(update={"gamma": gamma})
    return spec.model_copy(update={"optimizer": spec.optimizer.model_copy(update={"schedule": schedule})})


def test_a_huge_step_gamma_stops_before_a_garbage_checkpoint(tmp_path):
    """gamma 1e30: epoch 2 trains at lr 1e28; it used to checkpoint the wreck, then crash at lr 1e58."""
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="diverged in epoch 2"):
        trainer_mod.run_experiment(_with_step_gamma(1e30, 3), out=out, console=QUIET)
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1 and finite_checkpoint(out / "checkpoint.pt")
    assert [r["epoch"] for r in metrics(out)] == [0, 1] and summary(out)["status"] == "diverged"


def test_an_unusable_learning_rate_is_divergence_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="learning rate for epoch 2 is 1e\\+43"):
        trainer_mod.run_experiment(_with_step_gamma(1e45, 2), out=out, console=QUIET)
    assert not (out / "checkpoint.pt").exists() and [r["epoch"] for r in metrics(out)] == [0]
    sgd = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    assert trainer_mod.lr_problem(sgd, 1) is None
    for lr in (1e45, math.inf, math.nan):
        sgd.param_groups[0]["lr"] = lr
        assert "not a usable number" in trainer_mod.lr_problem(sgd, 1)


def test_non_finite_parameters_are_never_checkpointed(tmp_path, monkeypatch):
    """A NaN that reaches a parameter in an epoch's last step (its loss was still finite) stops the run before
    that epoch's checkpoint."""
    real_step = step_mod.RuleStep.__call__

    def step_then_poison(self, x, y, global_size=None):
        result = real_step(self, x, y, global_size)
        if self.count == 16:                              # the last step of epoch 2
            with torch.no_grad():
                dict(self.program.network.named_parameters())["out.bias"][0] = math.nan
        return result

    monkeypatch.setattr(step_mod.RuleStep, "__call__", step_then_poison)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="out.bias holds non-finite values"):
        trainer_mod.run_experiment(spec_from_dict(raw_spec(epochs=2), "tiny"), out=out, console=QUIET)
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1 and finite_checkpoint(out / "checkpoint.pt")


def test_a_non_finite_inverse_loss_in_any_step_is_divergence(tmp_path, monkeypatch):
    """Target propagation's inverse loss goes NaN in step 2 only: the checks, which read the last step's outputs
    every few steps, used to miss it."""
    real_call = step_mod.CompiledStep.__call__
    calls = []

    def nan_inverse_loss_once(self, x, y, noise=None):
        outputs = list(real_call(self, x, y, noise))
        calls.append(1)
        if len(calls) == 2:
            for i, slot in enumerate(self.signature.outputs):
                if slot.kind == "inverse_loss":
                    outputs[i] = torch.full_like(outputs[i], math.nan)
        return outputs

    monkeypatch.setattr(step_mod.CompiledStep, "__call__", nan_inverse_loss_once)
    rule = {"name": "dtp", "schedule": "parallel", "noise_sigma": 0.1}
    with pytest.raises(TrainingDiverged, match="the inverse loss of layer '(fc1|out)' was not finite"):
        trainer_mod.run_experiment(spec_from_dict(raw_spec(epochs=1, rule=rule), "tiny"), out=tmp_path / "run",
                                   console=QUIET)


# ---- 5. --resume of a run killed before its first checkpoint -------------------------------------------------------
def test_resume_without_a_checkpoint_starts_the_run_again(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    path = spec_file(tmp_path, epochs=2)

    def killed(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_mod.Trainer, "save", killed)        # stopped before epoch 1's checkpoint
    with pytest.raises(KeyboardInterrupt):
        trainer_mod.run_experiment(spec_from_dict(raw_spec(epochs=2), "tiny"), out=out, console=QUIET)
    monkeypatch.undo()
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "trunc')                             # and a half-written line
    assert not (out / "checkpoint.pt").exists()

    code, err = run_cli(["run", "--resume", out, "--no-progress"], capsys)
    assert code == 0, err
    assert f"{out} has no checkpoint.pt" in err and "starting it from scratch, from epoch 1" in err
    straight = tmp_path / "straight"
    assert run_cli(["run", path, "--out", straight, "--no-progress"], capsys)[0] == 0

    def strip(rows):
        return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]

    assert strip(metrics(out)) == strip(metrics(straight))
    assert sorted(p.name for p in out.iterdir()) == RUN_FILES and summary(out)["status"] == "finished"


# ---- 6. one process per run directory ------------------------------------------------------------------------------
def hold_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def test_a_locked_run_directory_is_refused_before_loading_data(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    trainer_mod.run_experiment(spec_from_dict(raw_spec(epochs=1), "tiny"), out=out, console=QUIET)
    empty = tmp_path / "empty"
    empty.mkdir()
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def no_data(*args, **kwargs):
        raise AssertionError("data loaded although the directory is locked")

    monkeypatch.setattr(trainer_mod, "load_dataset", no_data)
    fds = [hold_lock(out), hold_lock(empty)]                  # as another bpcompile process would
    try:
        code, err = run_cli(["run", spec_file(tmp_path), "--out", empty, "--no-progress"], capsys)
        assert code == 2 and f"another bpcompile process is using '{empty}'" in err
        assert list(empty.iterdir()) == []
        code, err = run_cli(["run", "--resume", out, "--no-progress"], capsys)
        assert code == 2 and f"another bpcompile process is using '{out}'" in err
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    finally:
        for fd in fds:
            os.close(fd)


def test_the_lock_is_held_for_the_whole_run_and_leaves_no_file(tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_epoch = trainer_mod.Trainer.train_epoch
    refused = []

    def epoch_while_probing_the_lock(self):
        with pytest.raises(BlockingIOError):
            hold_lock(out)
        refused.append(self.epoch)
        return real_epoch(self)

    monkeypatch.setattr(trainer_mod.Trainer, "train_epoch", epoch_while_probing_the_lock)
    trainer_mod.run_experiment(spec_from_dict(raw_spec(epochs=2), "tiny"), out=out, console=QUIET)
    assert refused == [0, 1]
    os.close(hold_lock(out))                                  # released at the end
    assert sorted(p.name for p in out.iterdir()) == RUN_FILES


def test_a_run_that_fails_before_writing_leaves_no_directory(tmp_path, monkeypatch, capsys):
    def missing(*args, **kwargs):
        raise BpcompileError("data set files not found")

    monkeypatch.setattr(trainer_mod, "load_dataset", missing)
    code, err = run_cli(["run", spec_file(tmp_path), "--out", tmp_path / "a" / "b" / "run"], capsys)
    assert code == 2 and "data set files not found" in err
    assert not (tmp_path / "a").exists()
