"""The Python API (`bpcompile.train`, `compile`, `inspect`, `load`) from a script outside the repository."""

import json
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

import bpcompile
from bpcompile.cli import app
from test_cli import synthetic_raw


def test_train_from_a_script_outside_the_repository(tmp_path):
    (tmp_path / "syn.json").write_text(json.dumps(synthetic_raw(epochs=1)))
    script = tmp_path / "notebook.py"
    script.write_text(textwrap.dedent("""
        import json, bpcompile
        result = bpcompile.train("syn.json", out="run", overrides={"train.epochs": 2, "rule": {"name": "dfa"}})
        print(json.dumps({"summary": result.summary, "history": result.history, "run_dir": str(result.run_dir)}))
    """))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    run_dir = tmp_path / result["run_dir"]
    assert result["summary"] == json.loads((run_dir / "summary.json").read_text())
    assert result["summary"]["rule"] == "dfa" and result["summary"]["epochs"] == 2
    assert result["history"] == [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in result["history"]] == [0, 1, 2]


def test_train_takes_a_dict_or_a_spec_and_gives_the_clis_numbers(tmp_path):
    raw = synthetic_raw(epochs=2)
    (tmp_path / "syn.json").write_text(json.dumps(raw))
    cli = CliRunner().invoke(app, ["run", str(tmp_path / "syn.json"), "--out", str(tmp_path / "cli"), "--no-progress"])
    assert cli.exit_code == 0, cli.output
    from_dict = bpcompile.train(raw, out=tmp_path / "dict")
    from_spec = bpcompile.train(bpcompile.load(raw), out=tmp_path / "spec")
    want = json.loads((tmp_path / "cli" / "summary.json").read_text())["final_test_error"]
    assert from_dict.summary["final_test_error"] == from_spec.summary["final_test_error"] == want
    assert from_dict.summary["status"] == "finished"


def test_api_errors_are_the_clis(tmp_path):
    with pytest.raises(bpcompile.BpcompileError, match="train.epochs"):
        bpcompile.train(synthetic_raw(), out=tmp_path / "r", overrides={"train.epochs": -1})
    with pytest.raises(bpcompile.BpcompileError, match="3 classes"):
        bpcompile.compile(synthetic_raw(), overrides={"network.layers.5.units": 7})
    assert not (tmp_path / "r").exists()


def test_compile_and_inspect_match_the_cli(tmp_path):
    (tmp_path / "syn.json").write_text(json.dumps(synthetic_raw()))
    program = bpcompile.compile(tmp_path / "syn.json")
    assert [r.layer for r in program.rewrites] and "fc1.feedback" in program.state
    text = bpcompile.inspect(str(tmp_path / "syn.json"))
    assert text == CliRunner().invoke(app, ["inspect", str(tmp_path / "syn.json")]).output
