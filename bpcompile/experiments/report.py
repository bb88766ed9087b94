"""A Markdown report of finished runs: one table row per spec, learning curves as PNGs.

    make_report([Path("seeds/mnist_fc_fa"), Path("sweeps/mnist_fc_dtp"), Path("runs/x")], Path("report"),
                reference=Path("results/reference/bartunov_table1.json"))

Each path may be a run directory (summary.json), a directory of runs found recursively (e.g. run_seeds's
seed_*/), or a sweep directory (sweep.json), of which only the best trial is taken. Runs are grouped by spec name.
Writes out/report.md, out/report.json (the same numbers) and out/curves_<spec>.png.
"""

import json
import math
import os
from pathlib import Path
from typing import Any, Optional

from ..errors import BpcompileError
from ..runtime.rundir import METRICS, SUMMARY, RunDir
from .seeds import aggregate
from .sweep import SWEEP_FILE, read_json

REPORT = "report.md"


# ---- finding runs --------------------------------------------------------------------------------------------------
def collect_runs(paths: list[Path]) -> tuple[list[Path], list[dict]]:
    """(run directories, sweeps): a sweep directory contributes its best trial only."""
    runs: list[Path] = []
    sweeps: list[dict] = []
    seen: set = set()

    def add(run: Path) -> None:
        key = run.resolve()
        if key not in seen:
            seen.add(key)
            runs.append(run)

    def walk(path: Path) -> None:
        if (path / SWEEP_FILE).is_file():
            sweep = read_json(path / SWEEP_FILE)
            if not isinstance(sweep, dict):
                raise BpcompileError(f"{str(path / SWEEP_FILE)!r} cannot be read as a sweep record.")
            best = sweep.get("best")
            done = sum(1 for t in sweep.get("trials", []) if t.get("status") == "finished")
            note = {"path": path, "name": sweep.get("name"), "best": best, "finished": done,
                    "num_trials": sweep.get("num_trials"), "run": None}
            if best and best.get("dir") and (path / best["dir"] / SUMMARY).is_file():
                note["run"] = path / best["dir"]
                add(path / best["dir"])
            sweeps.append(note)
        elif (path / SUMMARY).is_file():
            add(path)
        else:
            for child in sorted(p for p in path.iterdir() if p.is_dir()):
                walk(child)

    for path in paths:
        path = Path(path)
        if not path.is_dir():
            raise BpcompileError(f"{str(path)!r} is not a directory (give run, seed or sweep directories).")
        before = len(runs) + len(sweeps)
        walk(path)
        if len(runs) + len(sweeps) == before:
            raise BpcompileError(f"{str(path)!r} holds no run ({SUMMARY}) and no sweep ({SWEEP_FILE}).")
    return runs, sweeps


def load_reference(path: Optional[Path]) -> dict:
    """{spec name: {"test": %, "train": %, "source": text}}; keys starting with '$' or '_' are comments."""
    if path is None:
        return {}
    raw = read_json(Path(path))
    if not isinstance(raw, dict):
        raise BpcompileError(f"reference file {str(path)!r} is missing or not a JSON object of "
                             f"{{spec name: {{\"test\": x, \"train\": y, \"source\": \"...\"}}}}.")
    table = {}
    for name, entry in raw.items():
        if name.startswith(("$", "_")):
            continue
        if not isinstance(entry, dict) or not all(
                entry.get(k) is None or isinstance(entry.get(k), (int, float)) for k in ("test", "train")):
            raise BpcompileError(f"reference file {str(path)!r}: entry `{name}` must be an object with numeric "
                                 f"\"test\" and \"train\" (percent) and a \"source\".")
        table[name] = entry
    return table


# ---- the report ----------------------------------------------------------------------------------------------------
def _f(value: Optional[float]) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}"


def _rel(path: Path, base: Path) -> str:
    """`path` as the report links it: relative to the report's directory where possible."""
    try:
        return os.path.relpath(Path(path).resolve(), base.resolve())
    except ValueError:     # another drive
        return str(Path(path).resolve())


def _load(run: Path) -> dict:
    summary = read_json(run / SUMMARY)
    if not isinstance(summary, dict):
        raise BpcompileError(f"{str(run / SUMMARY)!r} cannot be read.")
    return {"path": run, "summary": summary, "metrics": RunDir(run).read_metrics() if (run / METRICS).exists() else []}


def spec_row(name: str, runs: list[dict], reference: dict) -> dict:
    """The table's numbers for one spec (means over its finished runs)."""
    summaries = [r["summary"] for r in runs]
    agg = aggregate(summaries)
    epochs = sorted({s.get("epochs") for s in summaries if s.get("status") == "finished"} - {None})
    ref = reference.get(name, {})
    test = agg["final_test_error"]["mean"]
    best = agg["best_test_error"]["mean"]
    paper = ref.get("test")
    return {
        "name": name,
        "rule": summaries[0].get("rule"),
        "runs": agg["count"],
        "not_finished": agg["excluded"],
        "epochs": epochs,
        "device": ", ".join(sorted({str(s.get("device_name") or s.get("device")) for s in summaries})),
        "test_error_mean": test,
        "test_error_std": agg["final_test_error"]["std"],
        "best_test_error_mean": best,
        "train_error_mean": agg["final_train_error"]["mean"],
        "paper_test": ref.get("test"),
        "paper_train": ref.get("train"),
        "paper_source": ref.get("source"),
        "difference": test - paper if test is not None and paper is not None else None,
        # the paper's own statistic: the best test error over the epochs (Bartunov et al.: "best errors achieved")
        "best_difference": best - paper if best is not None and paper is not None else None,
        "run_dirs": [str(r["path"]) for r in runs],
    }


def _table(rows: list[dict], with_reference: bool) -> list[str]:
    head = ["spec", "rule", "runs", "epochs", "device", "test error % (mean ± std)", "best-epoch test error %",
            "train error %"]
    if with_reference:
        head += ["paper test %", "measured − paper", "best-epoch − paper", "paper train %"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        epochs = "-" if not r["epochs"] else (str(r["epochs"][0]) if len(r["epochs"]) == 1
                                              else f"{r['epochs'][0]}-{r['epochs'][-1]}")
        runs = str(r["runs"]) + (f" (+{r['not_finished']} not finished)" if r["not_finished"] else "")
        cells = [r["name"], str(r["rule"]), runs, epochs, r["device"],
                 f"{_f(r['test_error_mean'])} ± {_f(r['test_error_std'])}",
                 _f(r["best_test_error_mean"]), _f(r["train_error_mean"])]
        if with_reference:
            diffs = ["-" if d is None else f"{d:+.2f}" for d in (r["difference"], r["best_difference"])]
            cells += [_f(r["paper_test"]), *diffs, _f(r["paper_train"])]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot_curves(name: str, runs: list[dict], path: Path) -> bool:
    """Errors, loss and per-layer alignment angles against epoch, every run of the spec in one figure."""
    from matplotlib.figure import Figure  # no pyplot: no global backend; Figure.savefig renders with Agg
    from matplotlib.ticker import MaxNLocator

    def series(rows, key):
        pts = [(r["epoch"], r[key]) for r in rows if r.get(key) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    def angle_series(rows, layer, key):
        pts = [(r["epoch"], r["layers"][layer][key]) for r in rows
               if isinstance(r.get("layers"), dict) and r["layers"].get(layer, {}).get(key) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    layers: list[str] = []
    for run in runs:
        for row in run["metrics"]:
            for layer in (row.get("layers") or {}):
                if layer not in layers:
                    layers.append(layer)
    angle_keys = [k for k in ("update_angle", "delta_angle", "feedback_angle")
                  if any(angle_series(run["metrics"], layer, k)[0] for run in runs for layer in layers)]
    if not any(run["metrics"] for run in runs):
        return False
    panels = ["error", "loss"] + angle_keys
    ncols = 2
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(6 * ncols, 4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    colors = {"train_error": "C0", "test_error": "C1", "val_error": "C2"}
    for i, run in enumerate(runs):
        rows = run["metrics"]
        for key, color in colors.items():
            x, y = series(rows, key)
            if x:
                axes[0].plot(x, y, color=color, alpha=0.8, marker="." if len(x) < 30 else None,
                             label=key.replace("_", " ") if i == 0 else None)
        x, y = series(rows, "train_loss")
        if x:
            axes[1].plot(x, y, color="C0", alpha=0.8, marker="." if len(x) < 30 else None,
                         label="train loss" if i == 0 else None)
        for p, key in enumerate(angle_keys, start=2):
            for j, layer in enumerate(layers):
                x, y = angle_series(rows, layer, key)
                if x:
                    axes[p].plot(x, y, color=f"C{j % 10}", alpha=0.8, marker="." if len(x) < 30 else None,
                                 label=layer if i == 0 else None)
    titles = {"error": "error (%)", "loss": "train loss", "update_angle": "update vs BP angle (degrees)",
              "delta_angle": "per-sample delta vs BP angle (degrees)",
              "feedback_angle": "W^T vs B angle (degrees)"}
    for ax, panel in zip(axes, panels):
        ax.set_title(titles[panel])
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    fig.suptitle(f"{name} ({len(runs)} run{'s' if len(runs) != 1 else ''})")
    fig.savefig(path, dpi=90)
    return True


def make_report(run_dirs: list[Path], out: Path, reference: Optional[Path] = None, title: str = "bpcompile report",
                note: Optional[str] = None) -> Path:
    """Write the report for the runs in `run_dirs` and return its path: `out` is a directory (out/report.md,
    report.json, curves_<spec>.png) or a Markdown file (out.md, with report.json and the figures in the folder
    of the same name beside it). `note` is a paragraph under the title (e.g. how to regenerate the report)."""
    out = Path(out)
    report, figures = (out, out.with_suffix("")) if out.suffix == ".md" else (out / REPORT, out)
    ref = load_reference(reference)
    paths, sweeps = collect_runs([Path(p) for p in run_dirs])
    figures.mkdir(parents=True, exist_ok=True)
    base = report.parent
    groups: dict[str, list[dict]] = {}
    for path in paths:
        run = _load(path)
        name = run["summary"].get("name") or path.name
        groups.setdefault(name, []).append(run)

    rows = [spec_row(name, runs, ref) for name, runs in groups.items()]
    lines = [f"# {title}", ""] + ([note, ""] if note else [])
    lines += _table(rows, bool(ref))
    legend = ("Errors in percent. *test error*: the final epoch's test error, mean ± sample standard deviation over "
              "the spec's finished runs (seeds; \"-\" for a single run). *best-epoch test error*: each run's lowest "
              "test error over its evaluated epochs (chosen on the test set, so optimistic), averaged. *train error*: "
              "the final epoch's.")
    lines += ["", legend]
    if ref:
        lines += ["", (f"*paper*: from `{reference}` (each row's source is in report.json); *measured − paper*: the "
                       f"test error mean minus the paper's test error; *best-epoch − paper*: the best-epoch test error "
                       f"minus the paper's, the like-for-like comparison where a paper reports its best epoch (as "
                       f"Bartunov et al. do), optimistic in the same way.")]
    if sweeps:
        lines += ["", "## Sweeps", ""]
        for s in sweeps:
            best = s["best"]
            if not best:
                lines.append(f"* `{_rel(s['path'], base)}` ({s['name']}): no finished trial yet "
                             f"({s['finished']} of {s['num_trials']} finished).")
                continue
            lines.append(
                f"* `{_rel(s['path'], base)}` ({s['name']}): best of {s['finished']} finished trials (of "
                f"{s['num_trials']}) by validation error: trial {best['trial']} (`{best['dir']}`), val error "
                f"{_f(best['best_val_error'])}% at epoch {best['best_val_epoch']}, test error at that epoch "
                f"{_f(best['test_error_at_best_val'])}%; config "
                + ", ".join(f"`{k}={v:.4g}`" if isinstance(v, float) else f"`{k}={json.dumps(v)}`"
                            for k, v in (best.get("config") or {}).items()) + ".")
    lines += ["", "## Learning curves", ""]
    for row in rows:
        runs = groups[row["name"]]
        figure = figures / f"curves_{row['name']}.png"
        lines += [f"### {row['name']}", ""]
        if plot_curves(row["name"], runs, figure):
            row["curves"] = _rel(figure, base)
            lines += [f"![{row['name']}]({row['curves']})", ""]
        else:
            lines += ["(no metrics logged)", ""]
        lines += ["Runs: " + ", ".join(
            f"`{_rel(r['path'], base)}`" + ("" if r["summary"].get("status") == "finished"
                                           else f" ({r['summary'].get('status')})") for r in runs), ""]
    report.write_text("\n".join(lines).rstrip() + "\n")
    (figures / "report.json").write_text(json.dumps({"rows": rows, "sweeps": [
        {**{k: v for k, v in s.items() if k not in ("path", "run")}, "path": str(s["path"]),
         "run": str(s["run"]) if s["run"] else None} for s in sweeps]}, indent=2, default=_json_default) + "\n")
    return report


def _json_default(value: Any) -> Any:
    return str(value)
