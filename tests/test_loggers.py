"""TensorBoard and W&B loggers: what a run logs is read back from the files the libraries wrote."""

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bpcompile.cli import app
from bpcompile.errors import BpcompileError
from bpcompile.spec import spec_from_dict
from test_cli import synthetic_raw


def train(tmp_path, *flags, epochs=2, name="run", extra=()):
    spec = tmp_path / "syn.json"
    spec.write_text(json.dumps(synthetic_raw(epochs=epochs)))
    out = tmp_path / name
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(out), "--no-progress", "--device", "cpu", *flags,
                                      *extra])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def expected_scalars(rows) -> dict:
    """tag -> {epoch: value}, from metrics.jsonl (the loggers' source)."""
    want = {}
    for row in rows:
        for key, value in row.items():
            if key == "layers":
                for layer, entry in value.items():
                    for metric, v in entry.items():
                        want.setdefault(f"layers/{layer}/{metric}", {})[row["epoch"]] = v
            elif key != "epoch":
                want.setdefault(key, {})[row["epoch"]] = value
    return want


def tensorboard_scalars(out: Path) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}, events


def test_tensorboard_event_file_holds_every_metric_and_the_graph(tmp_path):
    out = train(tmp_path, "--tensorboard")
    rows = metrics(out)
    found, events = tensorboard_scalars(out)
    want = expected_scalars(rows)
    assert {"train_loss", "test_error", "lr", "layers/lc1/update_angle", "layers/fc1/feedback_angle",
            "layers/lc1/delta_angle", "layers/out/feedback_norm_ratio"} <= set(want)
    assert set(found) == set(want)
    for tag, values in want.items():
        assert set(found[tag]) == set(values), tag
        for step, value in values.items():
            assert found[tag][step] == pytest.approx(value, rel=1e-6, abs=1e-6), (tag, step)
    graph = (out / "graph.txt").read_text()
    inspected = CliRunner().invoke(app, ["inspect", str(tmp_path / "syn.json")])
    assert graph == inspected.output and "grad_input" in graph
    text = events.Tensors("compiled_graph/text_summary")[0].tensor_proto.string_val[0].decode()
    assert [line.strip() for line in text.splitlines()] == [line.strip() for line in graph.splitlines()]
    assert json.loads((out / "spec.json").read_text())["train"]["loggers"] == [{"name": "tensorboard"}]


def test_a_resumed_run_continues_the_event_file_without_repeating_epochs(tmp_path):
    out = train(tmp_path, "--tensorboard", epochs=2)
    result = CliRunner().invoke(app, ["run", "--resume", str(out), "--set", "train.epochs=3", "--no-progress"])
    assert result.exit_code == 0, result.output
    found, _ = tensorboard_scalars(out)
    assert sorted(found["train_loss"]) == [1, 2, 3]
    assert sorted(found["layers/lc1/update_angle"]) == [0, 1, 2, 3]
    assert found["train_loss"] == pytest.approx({r["epoch"]: r["train_loss"] for r in metrics(out) if "train_loss" in r})


def wandb_records(path: Path):
    """The protobuf records of a W&B run file: a 7-byte header (':W&B', magic, version), then LevelDB log chunks
    (crc32, length, type) in 32 KiB blocks."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:               # a block's tail too short for a chunk header is padding
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):         # FULL or LAST
            yield Record.FromString(pending)
            pending = b""
        elif kind == 0:
            pending = b""


def test_wandb_offline_run_holds_every_metric_the_config_and_the_graph(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = train(tmp_path, "--wandb")
    runs = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and (out / "wandb_id.txt").read_text().strip() in runs[0].name
    history, config = {}, {}
    for record in wandb_records(runs[0]):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item}
            step = items.pop("_step", None)
            if step is None and record.history.HasField("step"):
                step = record.history.step.num
            for key, value in items.items():
                if not key.startswith("_"):
                    history.setdefault(key, {})[step] = value
        elif kind in ("config", "run"):           # the run record carries the config given to wandb.init
            updates = record.config.update if kind == "config" else record.run.config.update
            config.update({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in updates})
    want = expected_scalars(metrics(out))
    assert set(history) == set(want)
    for tag, values in want.items():
        assert history[tag] == pytest.approx(values, rel=1e-9), tag
    assert config["name"] == "syn" and config["rule"]["name"] == "fa"
    assert (runs[0].parent / "files" / "graph.txt").read_text() == (out / "graph.txt").read_text()


def test_a_logger_whose_package_is_missing_is_a_clean_error(tmp_path, monkeypatch, capsys):
    from bpcompile.cli import main

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)     # import fails as if not installed
    spec = tmp_path / "syn.json"
    spec.write_text(json.dumps(synthetic_raw()))
    with pytest.raises(SystemExit) as stop:
        main(["run", str(spec), "--out", str(tmp_path / "r"), "--tensorboard", "--no-progress"])
    output = capsys.readouterr().err
    assert stop.value.code == 2, output
    assert "tensorboard" in output and "pip install" in output and "Traceback" not in output
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["status"] == "failed" and "tensorboard" in summary["error"]


def test_each_logger_is_named_once():
    raw = synthetic_raw()
    raw["train"]["loggers"] = [{"name": "tensorboard"}, {"name": "tensorboard"}]
    with pytest.raises(BpcompileError, match="train.loggers"):
        spec_from_dict(raw)


def test_a_run_started_again_from_scratch_drops_its_earlier_events(tmp_path):
    """A run killed before its first checkpoint starts again in its directory: TensorBoard keeps one event per
    epoch, not the dead run's and the new one's."""
    out = train(tmp_path, "--tensorboard", epochs=2)
    (out / "checkpoint.pt").unlink()
    result = CliRunner().invoke(app, ["run", "--resume", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("train_loss")] == [1, 2]
    assert [e.step for e in events.Scalars("layers/lc1/update_angle")] == [0, 1, 2]
