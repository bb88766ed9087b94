"""The `bpcompile` command (also `python -m bpcompile`).

User errors (bad spec, missing file, layer that does not fit, rule not built
yet) print one paragraph and exit with code 2, without a traceback; a diverged
run exits with 3; Ctrl-C exits with 130. Nothing already written is lost:
run directories are only replaced with --overwrite, and files are written
atomically."""

import json
import sys
from pathlib import Path

import click
from rich.text import Text

from .console import make_console
from .errors import BpcompileError

stderr = make_console()
SPEC_PATH = click.Path(dir_okay=False, path_type=Path)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bpcompile")
def app():
    """Compile a declarative learning-rule spec into a training graph, and run it."""


def _set_option(f):
    return click.option("--set", "assignments", multiple=True, metavar="FIELD=VALUE",
                        help="Override a spec field, e.g. --set train.epochs=3 (repeatable; values parse as JSON).")(f)


def _load_plugins(ctx, param, files):
    from .plugins import load_plugins

    load_plugins(files)     # installed plug-ins (entry points) too, before any spec is read
    return files


def _plugin_option(f):
    return click.option("--plugin", "plugins", multiple=True, metavar="FILE.py", is_eager=True, expose_value=False,
                        callback=_load_plugins,
                        help="Load a rule plug-in (a Python file that registers a rule; repeatable). Installed "
                             "plug-ins (entry-point group bpcompile.rules) load without it.")(f)


def _device_option(f):
    return click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
                        help="Overrides train.device.")(f)


@app.command()
@click.argument("spec_path", metavar="SPEC", type=SPEC_PATH, required=False)
@_set_option
@_plugin_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory (default: runs/<name>-<time>).")
@_device_option
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Where the data set files are.")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Continue the run in this directory from its checkpoint (SPEC optional; may raise train.epochs); a "
                   "run without a checkpoint starts again from epoch 1.")
@click.option("--overwrite", is_flag=True, help="Replace the run files in an existing --out directory.")
@click.option("--dry-run", "dry_run_steps", type=click.IntRange(min=1), default=None, metavar="STEPS",
              help="Run STEPS steps on random data of the spec's shapes; writes nothing.")
@click.option("--no-progress", is_flag=True, help="No progress bar (epoch lines are still printed).")
@click.option("--seeds", default=None, metavar="S1,S2,...",
              help="Train once per seed (train.seed) into OUT/seed_<s>/ and report mean ± std; run the same command "
                   "again to continue after an interruption.")
@click.option("--tensorboard", is_flag=True, help="Also log to TensorBoard (adds train.loggers 'tensorboard'): event "
                                                    "files in RUN_DIR/tensorboard.")
@click.option("--wandb", "use_wandb", is_flag=True, help="Also log to Weights & Biases (adds train.loggers 'wandb', "
                                                         "offline unless the spec sets mode 'online').")
def run(spec_path, assignments, out, device, data_dir, resume_dir, overwrite, dry_run_steps, no_progress, seeds,
        tensorboard, use_wandb):
    """Train the experiment in SPEC (a JSON file). Under torchrun every process trains a shard of each batch."""
    from .runtime import dry_run, resume_experiment, run_experiment
    from .runtime.device import resolve_device
    from .runtime.distributed import Distributed
    from .runtime.loggers import with_loggers
    from .runtime.rundir import default_run_dir
    from .spec import load_spec

    if spec_path is None and resume_dir is None:
        raise click.UsageError("give a SPEC file, or --resume DIR to continue a run.")
    loggers = [name for name, wanted in (("tensorboard", tensorboard), ("wandb", use_wandb)) if wanted]
    if spec_path is None:   # --resume alone: --set and logger flags apply to the run's own spec
        own = resume_dir / "spec.json"
        spec = load_spec(own, assignments) if (assignments or loggers) and own.is_file() else None
    else:
        spec = load_spec(spec_path, assignments)
    if spec is not None and loggers:
        spec = with_loggers(spec, loggers)
    if dry_run_steps is not None and spec is None:
        raise click.UsageError("--dry-run needs a SPEC file.")
    if resume_dir is not None and (out is not None or overwrite):
        raise click.UsageError("--resume continues its own directory; it cannot be combined with --out or --overwrite.")
    if seeds is not None:
        if spec is None or dry_run_steps is not None or resume_dir is not None:
            raise click.UsageError("--seeds needs a SPEC and goes without --dry-run and --resume (run the same "
                                   "--seeds command again to continue).")
        _run_seeds(spec, seeds, out, device, data_dir, overwrite)
        return
    # torchrun sets WORLD_SIZE: join its process group (nccl on GPUs, gloo on CPUs); else a single process
    dist = Distributed.from_env(resolve_device(device or (spec.train.device if spec else "auto")).type)
    ended_normally = False
    try:
        if dry_run_steps is not None:
            dry_run(spec, dry_run_steps, device=device, console=stderr, dist=dist)
            ended_normally = True
            return
        progress = not no_progress
        if resume_dir is not None:
            summary = resume_experiment(resume_dir, spec=spec, device=device, data_dir=data_dir, console=stderr,
                                        show_progress=progress, dist=dist)
        else:   # every rank must name the same directory: rank 0's clock decides
            out = dist.broadcast_object(out or default_run_dir(spec.name))
            summary = run_experiment(spec, out=out, device=device, data_dir=data_dir, overwrite=overwrite,
                                     console=stderr, show_progress=progress, dist=dist)
        if dist.is_main:
            click.echo(json.dumps({k: summary[k] for k in ("name", "rule", "epochs", "final_test_error",
                                                           "best_test_error", "final_train_error", "wall_seconds",
                                                           "device")}))
        ended_normally = True
    finally:
        dist.close(wait=ended_normally)


def _run_seeds(spec, seeds: str, out, device, data_dir, overwrite) -> None:
    from .experiments import run_seeds
    from .runtime.rundir import default_run_dir

    try:
        values = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise BpcompileError(f"--seeds {seeds!r}: expected integers separated by commas, e.g. --seeds 1,2,3.") from None
    out = out or default_run_dir(f"{spec.name}-seeds")
    record = run_seeds(spec, values, out=out, device=device, data_dir=data_dir, overwrite=overwrite, console=stderr)
    click.echo(json.dumps({"name": spec.name, "out": str(out), "seeds": values, **record["aggregate"]}))


@app.command()
@click.argument("spec_path", metavar="SPEC", type=SPEC_PATH)
@_set_option
@_plugin_option
@click.option("--space", "space_path", type=SPEC_PATH, required=True,
              help="Search space JSON: {field path: {log_uniform|uniform: [lo, hi]} | {choice: [...]}}, e.g. "
                   "specs/spaces/bartunov_table4.json.")
@click.option("--trials", type=click.IntRange(min=1), required=True, help="Number of random configurations.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Overrides train.epochs of every trial.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the configurations (trial i's depends "
                                                                      "only on this seed and i).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Sweep directory (default: runs/<name>-sweep).")
@_device_option
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Where the data set files are.")
def sweep(spec_path, assignments, space_path, trials, epochs, seed, out, device, data_dir):
    """Random search over SPEC's fields: every trial a run directory, the best picked on the validation split.

    Resumable: the same command again skips finished trials and resumes an interrupted one."""
    from .experiments import load_space, run_sweep
    from .spec import load_spec

    spec = load_spec(spec_path, assignments)
    space = load_space(space_path)
    out = out or Path("runs") / f"{spec.name}-sweep"
    record = run_sweep(spec, space, trials=trials, out=out, epochs=epochs, seed=seed, device=device,
                       data_dir=data_dir, console=stderr)
    best = record.get("best") or {}
    click.echo(json.dumps({"name": spec.name, "out": str(out), "trials": trials,
                           "best_trial": best.get("trial"), "best_val_error": best.get("best_val_error"),
                           "test_error_at_best_val": best.get("test_error_at_best_val"),
                           "best_config": best.get("config")}))


@app.command()
@click.argument("run_dirs", metavar="RUN_DIR...", type=click.Path(exists=True, file_okay=False, path_type=Path),
                nargs=-1, required=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("report"), show_default=True,
              help="A directory (report.md and figures inside) or a .md file (figures in the folder of its name).")
@click.option("--reference", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Paper numbers to show beside each spec: JSON {spec name: {test, train, source}}, e.g. "
                   "results/reference/bartunov_table1.json.")
@click.option("--title", default="bpcompile report", show_default=True)
@click.option("--note", default=None, help="A paragraph under the title (e.g. how the runs were made).")
def report(run_dirs, out, reference, title, note):
    """Markdown table (one row per spec: mean ± std over seeds, the paper's number beside it) and learning-curve
    PNGs for run directories, --seeds directories and sweeps (their best trial)."""
    from .experiments import make_report

    path = make_report(list(run_dirs), out, reference, title=title, note=note)
    stderr.print(f"wrote {path}")


@app.command()
@click.argument("spec_path", metavar="SPEC", type=SPEC_PATH)
@_set_option
@_plugin_option
@click.option("--stage", type=click.Choice(["forward", "backward", "all"]), default="all", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "dot"]), default="text", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write here instead of stdout.")
@_device_option
def inspect(spec_path, assignments, stage, fmt, out, device):
    """Show the compiled training graph of SPEC: forward, rewritten backward, implementations."""
    from .compiler import compile_experiment
    from .compiler.dump import dump_dot, dump_text
    from .runtime.checkpoint import write_text
    from .runtime.device import resolve_device
    from .spec import load_spec

    spec = load_spec(spec_path, assignments)
    program = compile_experiment(spec, resolve_device(device or "cpu"))
    text = (dump_dot if fmt == "dot" else dump_text)(program, stage)
    if out is None:
        click.echo(text, nl=False)
    else:
        write_text(out, text)
        stderr.print(f"wrote {out}")


@app.command()
@click.argument("spec_paths", metavar="SPEC...", type=SPEC_PATH, nargs=-1, required=True)
@_set_option
@_plugin_option
@click.option("--compile", "full", is_flag=True,
              help="Also build the network (on the CPU) and run the whole compile pipeline with its checks between "
                   "stages: trace, every rule pass (a plug-in's rewrite too), lowering.")
def validate(spec_paths, assignments, full):
    """Check specs: schema, layer shapes, size budget, rule availability (what `run` checks before it trains;
    the memory of the machine it trains on is judged by `run`). Exit 2 if any fails. Without --compile nothing
    is allocated (the network is planned on the meta device), so a spec too large for this machine validates."""
    from .compiler import check_spec, compile_experiment
    from .spec import load_spec
    from .spec.reading import clip

    failed = 0
    for path in spec_paths:
        try:
            spec = load_spec(path, assignments)
            network, _, estimate = check_spec(spec)
            if full:
                compile_experiment(spec, "cpu")
            click.echo(f"ok      {clip(str(path), 200)}: {spec.name}, rule {spec.rule.name}, "
                       f"{len(network.layer_table)} parametric layers, {estimate.parameters:,} parameters, needs at "
                       f"least {estimate.describe().split(' at least')[0]}")
        except BpcompileError as err:
            failed += 1
            click.echo(f"invalid {clip(str(path), 200)}: {err}")
    if failed:
        raise SystemExit(2)


@app.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write here instead of stdout.")
@_plugin_option
def schema(out):
    """Print the JSON Schema of specs (every field, default and description)."""
    from .spec import json_schema

    from .runtime.checkpoint import write_text

    text = json.dumps(json_schema(), indent=2) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        write_text(out, text)


def _os_error_message(err: OSError) -> str:
    import errno

    from .runtime.checkpoint import free_space

    where = f" {err.filename!r}" if err.filename else ""
    text = f"cannot use{where}: {err.strerror or err}."
    if err.errno in (errno.ENOSPC, errno.EDQUOT) and err.filename:
        text += f" {free_space(Path(err.filename).resolve())}."
    return text + " Files written before this one are kept."


def _out_of_memory(what: str) -> None:
    stderr.print(Text.assemble(("error: ", "bold red"), (
        f"the run ran out of {what}. `bpcompile validate SPEC` prints the least the spec needs; lower "
        f"data.batch_size or data.eval_batch_size, or make the network smaller. Files written so far (the last "
        f"checkpoint among them) are kept.")), soft_wrap=True)
    sys.exit(2)


def main(argv=None) -> None:
    try:
        app.main(args=argv, prog_name="bpcompile", standalone_mode=False)
    except click.exceptions.Abort:
        stderr.print("aborted")
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except BpcompileError as err:
        # Text, not markup: messages hold brackets such as network.layers[3]
        stderr.print(Text.assemble(("error: ", "bold red"), str(err)), soft_wrap=True)
        sys.exit(err.exit_code)
    except MemoryError:
        _out_of_memory("host memory")
    except RuntimeError as err:
        # torch.OutOfMemoryError (a RuntimeError) on a GPU, "can't allocate memory" on the CPU: the size budget
        # refuses what can never fit, but a run can still exceed what the machine has free
        text = str(err)
        if type(err).__name__ == "OutOfMemoryError" or "can't allocate memory" in text or "out of memory" in text:
            _out_of_memory("GPU memory" if "CUDA" in text or "GPU" in text else "memory")
        raise
    except OSError as err:
        # a file we were asked to write or read (--out on a full or read-only disk, a vanished directory)
        stderr.print(Text.assemble(("error: ", "bold red"), _os_error_message(err)), soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        stderr.print("interrupted: files written so far (the last checkpoint among them) are kept; continue with --resume "
                     "(a sweep or --seeds: run the same command again).")
        sys.exit(130)
    except SystemExit:
        raise
    sys.exit(0)
