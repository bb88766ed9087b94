"""`bpcompile sweep`, `bpcompile run --seeds` and `bpcompile report` through the command line."""

import json

from test_cli import assert_user_error, bpc


def tiny_spec(tmp_path):
    spec = {
        "name": "tiny",
        "data": {"name": "synthetic", "input_shape": [4], "num_classes": 3, "train_size": 64, "test_size": 32,
                 "batch_size": 16, "validation_size": 16},
        "network": {"layers": [{"type": "dense", "name": "fc1", "units": 8}, {"type": "activation", "fn": "tanh"},
                               {"type": "dense", "name": "out", "units": 3}]},
        "rule": {"name": "fa"},
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"epochs": 2},
    }
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(spec))
    return path


def test_sweep_then_the_same_command_again_does_no_new_work(tmp_path):
    spec = tiny_spec(tmp_path)
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}, "optimizer.eps": {"choice": [1e-8, 1e-4]}}))
    args = ("sweep", spec, "--space", space, "--trials", 2, "--epochs", 1, "--out", tmp_path / "sw")
    first = bpc(*args)
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    record = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    vals = {t["trial"]: t["best_val_error"] for t in record["trials"]}
    assert result["best_trial"] == min(vals, key=lambda t: (vals[t], t))
    metrics = (tmp_path / "sw" / "trial_000" / "metrics.jsonl").read_text()
    again = bpc(*args)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "sw" / "trial_000" / "metrics.jsonl").read_text() == metrics
    assert json.loads(again.stdout)["best_trial"] == result["best_trial"]


def test_bad_space_exits_2_naming_the_field(tmp_path):
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"optimizer.lr": {"log_uniform": [0.1]}}))
    result = bpc("sweep", tiny_spec(tmp_path), "--space", space, "--trials", 1, "--out", tmp_path / "sw")
    assert_user_error(result, "optimizer.lr")


def test_seeds_and_report(tmp_path):
    spec = tiny_spec(tmp_path)
    result = bpc("run", spec, "--seeds", "1,2", "--out", tmp_path / "seeds")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    errors = [json.loads((tmp_path / "seeds" / f"seed_{s}" / "summary.json").read_text())["final_test_error"]
              for s in (1, 2)]
    assert record["final_test_error"]["mean"] == sum(errors) / 2
    reference = tmp_path / "ref.json"
    reference.write_text(json.dumps({"tiny": {"test": 1.5, "train": 0.0, "source": "made up"}}))
    report = bpc("report", tmp_path / "seeds", "--out", tmp_path / "out.md", "--reference", reference,
                 "--title", "Tiny", "--note", "regenerate: bpcompile report ...")
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "out.md").read_text()
    assert text.startswith("# Tiny\n\nregenerate: bpcompile report ...")
    row = next(line for line in text.splitlines() if line.startswith("| tiny "))
    assert f"{sum(errors) / 2:.2f} ± " in row and "1.50" in row
    assert (tmp_path / "out" / "curves_tiny.png").stat().st_size > 1000
    assert "](out/curves_tiny.png)" in text
    assert_user_error(bpc("run", spec, "--seeds", "1,x", "--out", tmp_path / "s2"), "--seeds")
