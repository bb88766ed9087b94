"""Several seeds of one spec (bpcompile.experiments.seeds) and reports (bpcompile.experiments.report)."""

import json
import statistics
from pathlib import Path

import pytest
from rich.console import Console

from bpcompile.errors import BpcompileError
from bpcompile.experiments import aggregate, make_report, run_seeds
from test_sweep import _count_calls as count_calls
from bpcompile.experiments.report import load_reference
from bpcompile.runtime.checkpoint import write_json
from bpcompile.spec import spec_from_dict

REPO = Path(__file__).resolve().parent.parent
TABLE1 = REPO / "results" / "reference" / "bartunov_table1.json"
QUIET = Console(quiet=True)
PNG = b"\x89PNG\r\n\x1a\n"


def tiny_spec(name="tiny", epochs=2, lr=0.01):
    return spec_from_dict({
        "name": name,
        "data": {"name": "synthetic", "input_shape": [4], "num_classes": 3, "train_size": 64, "test_size": 32,
                 "batch_size": 16, "validation_size": 16},
        "network": {"layers": [{"type": "dense", "name": "fc1", "units": 8}, {"type": "activation", "fn": "tanh"},
                               {"type": "dense", "name": "out", "units": 3}]},
        "rule": {"name": "fa"},
        "optimizer": {"name": "adam", "lr": lr},
        "train": {"epochs": epochs, "device": "cpu"},
    })


def table_rows(report: Path) -> dict:
    """spec name -> {column header: cell} from the report's Markdown table."""
    lines = [line for line in report.read_text().splitlines() if line.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(head, cells))
    return rows


# ---- seeds ----------------------------------------------------------------------------------------------------------
def test_aggregate_matches_hand_computation():
    summaries = [
        {"status": "finished", "final_test_error": 2.0, "best_test_error": 1.5, "final_train_error": 0.5},
        {"status": "finished", "final_test_error": 3.0, "best_test_error": 2.5, "final_train_error": 0.0},
        {"status": "finished", "final_test_error": 7.0, "best_test_error": 2.0, "final_train_error": 1.0},
        {"status": "diverged", "final_test_error": 90.0, "best_test_error": 50.0, "final_train_error": 90.0},
    ]
    agg = aggregate(summaries)
    assert agg["count"] == 3 and agg["excluded"] == 1
    assert agg["final_test_error"]["mean"] == pytest.approx(4.0)
    # sample std: sqrt(((2-4)^2 + (3-4)^2 + (7-4)^2) / (3 - 1)) = sqrt(7)
    assert agg["final_test_error"]["std"] == pytest.approx(7 ** 0.5)
    assert agg["best_test_error"]["mean"] == pytest.approx(2.0)
    assert agg["best_test_error"]["std"] == pytest.approx(0.5)
    assert agg["final_train_error"]["mean"] == pytest.approx(0.5)
    assert agg["final_train_error"]["std"] == pytest.approx(0.5)
    one = aggregate(summaries[:1])
    assert one["count"] == 1 and one["final_test_error"] == {"mean": 2.0, "std": None, "n": 1}
    assert aggregate([])["count"] == 0 and aggregate([])["final_test_error"]["mean"] is None


def test_run_seeds_aggregates_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "seeds"
    result = run_seeds(tiny_spec(), [0, 1], out=out, console=QUIET)
    assert json.loads((out / "seeds.json").read_text()) == json.loads(json.dumps(result))
    summaries = []
    for seed in (0, 1):
        run = out / f"seed_{seed}"
        assert json.loads((run / "spec.json").read_text())["train"]["seed"] == seed
        summaries.append(json.loads((run / "summary.json").read_text()))
        assert summaries[-1]["status"] == "finished" and summaries[-1]["seed"] == seed
    agg = result["aggregate"]
    assert agg["count"] == 2
    for key in ("final_test_error", "best_test_error", "final_train_error"):
        values = [s[key] for s in summaries]
        assert agg[key]["mean"] == pytest.approx(sum(values) / 2)
        assert agg[key]["std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
    assert [r["final_test_error"] for r in result["runs"]] == [s["final_test_error"] for s in summaries]

    # again: nothing to do; a summary lost after the last checkpoint is rewritten from the checkpoint
    (out / "seed_1" / "summary.json").unlink()
    finished = (out / "seed_0" / "metrics.jsonl").read_bytes()
    calls = count_calls(monkeypatch)
    again = run_seeds(tiny_spec(), [0, 1, 2], out=out, console=QUIET)
    assert calls == {"run": ["seed_2"], "resume": ["seed_1"]}
    assert (out / "seed_0" / "metrics.jsonl").read_bytes() == finished
    assert json.loads((out / "seed_1" / "summary.json").read_text())["status"] == "finished"
    assert again["aggregate"]["count"] == 3
    assert again["runs"][1]["final_test_error"] == summaries[1]["final_test_error"]

    with pytest.raises(BpcompileError, match=r"another spec .*optimizer\.lr"):
        run_seeds(tiny_spec(lr=0.02), [0], out=out, console=QUIET)
    calls["run"].clear(), calls["resume"].clear()
    run_seeds(tiny_spec(lr=0.02), [0], out=out, overwrite=True, console=QUIET)
    assert calls == {"run": ["seed_0"], "resume": []}
    assert json.loads((out / "seed_0" / "spec.json").read_text())["optimizer"]["lr"] == 0.02


# ---- reports --------------------------------------------------------------------------------------------------------
def fake_run(path: Path, name: str, final_test: float, best_test: float, train: float, *, epochs: int = 3,
             status: str = "finished", val: bool = False) -> dict:
    """A run directory as run_experiment leaves it (without the checkpoint)."""
    path.mkdir(parents=True)
    rows = [{"epoch": 0, "layers": {"fc1": {"update_angle": 50.0, "feedback_angle": 80.0}}}]
    for e in range(1, epochs + 1):
        row = {"epoch": e, "train_loss": 1.0 / e, "train_error": train + 10.0 / e, "test_error": final_test + 3 - e,
               "layers": {"fc1": {"update_angle": 50.0 - 5 * e, "feedback_angle": 80.0 - 10 * e},
                          "out": {"update_angle": 0.0}}}
        if val:
            row["val_error"] = final_test + 4 - e
        rows.append(row)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {"name": name, "rule": "fa", "status": status, "epochs": epochs, "final_test_error": final_test,
               "best_test_error": best_test, "final_train_error": train, "final_val_error": None}
    write_json(path / "summary.json", summary)
    (path / "spec.json").write_text(json.dumps({"name": name}))
    return summary


def test_report_table_equals_the_summaries_and_plots_exist(tmp_path):
    runs = tmp_path / "runs"
    fa = [fake_run(runs / "fa_seeds" / f"seed_{s}", "mnist_fc_fa", t, b, tr)
          for s, (t, b, tr) in enumerate([(2.0, 1.9, 0.1), (2.5, 2.4, 0.2), (3.1, 3.0, 0.3)])]
    fake_run(runs / "fa_seeds" / "seed_9", "mnist_fc_fa", 80.0, 70.0, 80.0, status="diverged")
    bp = fake_run(runs / "bp_run", "mnist_fc_bp", 1.5, 1.4, 0.0, epochs=5)
    sweep = runs / "dtp_sweep"
    trials = [fake_run(sweep / f"trial_{i:03d}", "mnist_fc_dtp", t, t - 0.5, 1.0, val=True)
              for i, t in enumerate([9.0, 3.3, 1.0])]
    write_json(sweep / "sweep.json", {
        "name": "mnist_fc_dtp", "num_trials": 3,
        "trials": [{"trial": i, "dir": f"trial_{i:03d}", "status": "finished"} for i in range(3)],
        "best": {"trial": 1, "dir": "trial_001", "config": {"optimizer.lr": 1e-4}, "best_val_error": 4.3,
                 "best_val_epoch": 3, "test_error_at_best_val": 3.3}})
    reference = tmp_path / "ref.json"
    reference.write_text(json.dumps({"$comment": "x", "mnist_fc_fa": {"test": 1.85, "train": 0.0, "source": "T1"},
                                     "mnist_fc_bp": {"test": 1.48, "train": 0.0, "source": "T1"}}))

    report = make_report([runs / "fa_seeds", runs / "bp_run", sweep], tmp_path / "report", reference=reference)
    assert report == tmp_path / "report" / "report.md"
    rows = table_rows(report)
    assert set(rows) == {"mnist_fc_fa", "mnist_fc_bp", "mnist_fc_dtp"}

    tests = [s["final_test_error"] for s in fa]
    fa_row = rows["mnist_fc_fa"]
    assert fa_row["runs"] == "3 (+1 not finished)" and fa_row["epochs"] == "3"
    mean, std = statistics.mean(tests), statistics.stdev(tests)
    assert fa_row["test error % (mean ± std)"] == f"{mean:.2f} ± {std:.2f}"
    assert fa_row["best-epoch test error %"] == f"{statistics.mean(s['best_test_error'] for s in fa):.2f}"
    assert fa_row["train error %"] == f"{statistics.mean(s['final_train_error'] for s in fa):.2f}"
    assert fa_row["paper test %"] == "1.85" and fa_row["measured − paper"] == f"{mean - 1.85:+.2f}"
    best = statistics.mean(s["best_test_error"] for s in fa)
    assert fa_row["best-epoch − paper"] == f"{best - 1.85:+.2f}" != fa_row["measured − paper"]
    assert fa_row["paper train %"] == "0.00"

    bp_row = rows["mnist_fc_bp"]
    assert bp_row["runs"] == "1" and bp_row["epochs"] == "5"
    assert bp_row["test error % (mean ± std)"] == f"{bp['final_test_error']:.2f} ± -"
    assert bp_row["measured − paper"] == f"{bp['final_test_error'] - 1.48:+.2f}"

    dtp_row = rows["mnist_fc_dtp"]      # the sweep's best trial only
    assert dtp_row["runs"] == "1"
    assert dtp_row["test error % (mean ± std)"] == f"{trials[1]['final_test_error']:.2f} ± -"
    assert dtp_row["paper test %"] == "-" and dtp_row["measured − paper"] == dtp_row["best-epoch − paper"] == "-"
    text = report.read_text()
    assert "trial_001" in text and "trial_000" not in text and "trial_002" not in text
    assert "val error 4.30% at epoch 3" in text and "test error at that epoch 3.30%" in text

    for name in rows:
        png = tmp_path / "report" / f"curves_{name}.png"
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 5000
        assert f"]({png.name})" in text
    numbers = json.loads((tmp_path / "report" / "report.json").read_text())
    assert {r["name"]: r["test_error_mean"] for r in numbers["rows"]}["mnist_fc_fa"] == pytest.approx(mean)


def test_report_of_real_runs_with_the_paper_reference(tmp_path):
    spec = tiny_spec(name="mnist_fc_fa")
    run_seeds(spec, [0, 1], out=tmp_path / "seeds", console=QUIET)
    report = make_report([tmp_path / "seeds"], tmp_path / "report", reference=TABLE1)
    summaries = [json.loads((tmp_path / "seeds" / f"seed_{s}" / "summary.json").read_text()) for s in (0, 1)]
    row = table_rows(report)["mnist_fc_fa"]
    tests = [s["final_test_error"] for s in summaries]
    assert row["runs"] == "2" and row["epochs"] == "2"
    assert row["test error % (mean ± std)"] == f"{statistics.mean(tests):.2f} ± {statistics.stdev(tests):.2f}"
    assert row["train error %"] == f"{statistics.mean(s['final_train_error'] for s in summaries):.2f}"
    assert row["paper test %"] == "1.85" and row["paper train %"] == "0.00"
    assert (tmp_path / "report" / "curves_mnist_fc_fa.png").read_bytes()[:8] == PNG


def test_report_refuses_paths_without_runs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BpcompileError, match="holds no run"):
        make_report([tmp_path / "empty"], tmp_path / "out")
    with pytest.raises(BpcompileError, match="not a directory"):
        make_report([tmp_path / "missing"], tmp_path / "out")


def test_table1_reference_file():
    table = load_reference(TABLE1)
    specs = {p.stem for p in (REPO / "specs").glob("*.json")}
    mnist = {s for s in specs if s.startswith(("mnist_fc_", "mnist_lc_"))} - {"mnist_fc_ss", "mnist_fc_wm", "mnist_fc_kp"}
    assert set(table) == mnist | {"mnist_conv_bp"}
    expected = {"mnist_fc_bp": (0.00, 1.48), "mnist_fc_dtp": (0.00, 1.83), "mnist_fc_dtp_parallel": (0.44, 2.86),
                "mnist_fc_sdtp_parallel": (1.14, 3.52), "mnist_fc_ao_sdtp": (0.00, 1.86), "mnist_fc_dfa": (0.85, 2.75),
                "mnist_lc_fa": (0.00, 1.26), "mnist_lc_dfa": (0.23, 2.05), "mnist_lc_sdtp": (0.00, 1.90),
                "mnist_lc_ao_sdtp_parallel": (0.00, 1.92), "mnist_lc_bp": (0.00, 1.17), "mnist_conv_bp": (0.00, 1.01)}
    for name, (train, test) in expected.items():
        assert (table[name]["train"], table[name]["test"]) == (train, test)
        assert "Table 1" in table[name]["source"]
