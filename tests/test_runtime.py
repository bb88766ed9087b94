"""Runtime pieces: schedules, optimisers, atomic writes, run directories."""

import json
import math

import pytest
import torch

from bpcompile.errors import BpcompileError
from bpcompile.runtime.checkpoint import load_checkpoint, save_checkpoint, write_json
from bpcompile.optim import build_optimizer, build_scheduler
from bpcompile.runtime.rundir import RunDir
from bpcompile.spec import SGD, Adam, CosineLR, MultiStepLR, StepLR


def lrs(spec, epochs):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer(spec, [param])
    sched = build_scheduler(spec, opt, epochs)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_schedules_follow_their_formulas():
    assert lrs(Adam(lr=1.0), 3) == [1.0, 1.0, 1.0]
    assert lrs(SGD(lr=1.0, schedule=StepLR(step_epochs=2, gamma=0.5)), 5) == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert lrs(SGD(lr=1.0, schedule=MultiStepLR(milestones=[1, 3], gamma=0.1)), 4) == pytest.approx([1.0, 0.1, 0.1, 0.01])
    cosine = lrs(SGD(lr=1.0, schedule=CosineLR(min_lr=0.1, warmup_epochs=2)), 6)
    assert cosine[:2] == pytest.approx([0.5, 1.0])                       # linear warm-up
    expected = [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert cosine[2:] == pytest.approx(expected)
    # a span of its own (3 epochs) in a 5-epoch run: the decay ends at min_lr (0 here) and stays there
    assert lrs(SGD(lr=1.0, schedule=CosineLR(epochs=3)), 5) == pytest.approx([1.0, 0.75, 0.25, 0.0, 0.0])


def test_optimizers_get_the_spec_settings():
    param = torch.nn.Parameter(torch.zeros(1))
    adam = build_optimizer(Adam(lr=3e-4, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1), [param])
    assert isinstance(adam, torch.optim.Adam)
    assert {k: adam.param_groups[0][k] for k in ("lr", "betas", "eps", "weight_decay")} == \
        {"lr": 3e-4, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.1}
    sgd = build_optimizer(SGD(lr=0.1, momentum=0.5, nesterov=True, weight_decay=1e-4), [param])
    assert sgd.param_groups[0]["nesterov"] and sgd.param_groups[0]["momentum"] == 0.5


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"ok": 1})
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})          # not JSON-serialisable: fails mid-write
    assert json.loads(path.read_text()) == {"ok": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]   # no temp file left behind


def test_checkpoint_loads_onto_the_cpu(tmp_path):
    payload = {"rng": torch.get_rng_state(), "w": torch.ones(2)}
    save_checkpoint(tmp_path / "c.pt", payload)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded["rng"].device.type == "cpu" and torch.equal(loaded["w"], payload["w"])
    torch.set_rng_state(loaded["rng"])               # an RNG state must stay a CPU ByteTensor


def test_run_directory_is_protected_and_metrics_truncate_to_the_checkpoint(tmp_path):
    run = RunDir.create(tmp_path / "r", overwrite=False)
    for epoch in (1, 2, 3):
        run.append_metrics({"epoch": epoch})
    with pytest.raises(BpcompileError, match="already exists"):
        RunDir.create(tmp_path / "r", overwrite=False)
    assert [r["epoch"] for r in run.truncate_metrics(2)] == [1, 2]
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2]
    (tmp_path / "r" / "notes.txt").write_text("mine")
    RunDir.create(tmp_path / "r", overwrite=True)     # --overwrite removes the run's files, nothing else
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["notes.txt"]
    with pytest.raises(BpcompileError, match="no run there"):
        RunDir.existing(tmp_path / "elsewhere")
