"""The training runtime: data -> compiled step -> metrics -> checkpoints -> summary.

Everything the run does goes through the compiled program (CompiledStep /
CompiledEval); there is no second training code path. A run is reproducible
from spec + seed: initialisation, feedback tensors, data order and
augmentation are all seeded, and the data order of epoch e depends only on
(seed, e), so a resumed run continues exactly as an uninterrupted one.
"""

import math
import time
from pathlib import Path
from typing import Optional

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..compiler import compile_experiment
from ..compiler.check import check_memory
from ..compiler.dump import dump_text
from ..console import make_console
from ..data import load_dataset, make_loaders, random_batch
from ..errors import BpcompileError, TrainingDiverged
from ..spec.optim import cosine_decays_over_train_epochs
from ..spec import data_shapes, spec_from_dict, spec_to_json
from ..spec.io import read_spec_dict
from .checkpoint import WriteFailed, load_checkpoint, save_checkpoint
from .device import resolve_device, set_precision, versions
from .distributed import SINGLE_PROCESS, Distributed
from ..optim import build_forward_optimizer, build_scheduler
from .rundir import CHECKPOINT, RunDir, RunLock
from .loggers import close_loggers, open_loggers
from .metrics import AlignmentProbe
from .schedule import FORWARD_PHASES, epoch_steps, steps_per_epoch
from .step import CompiledEval, RuleStep

FINITE_CHECK_EVERY = 50  # steps between divergence checks (each one syncs the GPU)
PROBE_SIZE = 256         # examples in the fixed probe batch of the alignment metrics


def prepare_torch(spec, device_override: Optional[str], dist: Distributed = SINGLE_PROCESS) -> torch.device:
    device = dist.device(resolve_device(device_override or spec.train.device))
    set_precision(spec.train.precision)
    if spec.train.num_threads:
        torch.set_num_threads(spec.train.num_threads)
    return device


def nonfinite_tensor(named) -> Optional[str]:
    """'<name> holds non-finite values' for the first floating-point tensor of (name, tensor) pairs that does,
    else None (one sync for all of them)."""
    named = [(n, t) for n, t in named if t.is_floating_point() and t.numel()]
    if not named:
        return None
    finite = torch.stack([torch.isfinite(t).all() for _, t in named]).cpu()
    if bool(finite.all()):
        return None
    return f"{named[int((~finite).nonzero()[0])][0]} holds non-finite values"


def lr_problem(optimizer, epoch: int) -> Optional[str]:
    """A message if a learning rate of `optimizer` is not finite or beyond its parameters' float range (the
    optimiser's step would fail with "value cannot be converted ... without overflow"), else None."""
    for group in optimizer.param_groups:
        lr = float(group["lr"])
        floats = [p for p in group["params"] if p.is_floating_point()]
        limit = min((torch.finfo(p.dtype).max for p in floats), default=torch.finfo(torch.float32).max)
        if not (math.isfinite(lr) and abs(lr) <= limit):
            return f"the learning rate for epoch {epoch} is {lr:g}, not a usable number (at most {limit:.3g})"
    return None


class Trainer:
    def __init__(self, spec, device: torch.device, splits, run_dir: Optional[RunDir], console: Console,
                 show_progress: bool = True, dist: Distributed = SINGLE_PROCESS):
        """With several processes (`dist`), every rank trains on its shard of each global batch and only rank 0
        writes (give the others run_dir=None) and prints."""
        self.spec, self.device, self.splits, self.run_dir, self.dist = spec, device, splits, run_dir, dist
        self.console = console if dist.is_main else make_console(quiet=True)
        self.show_progress = show_progress and dist.is_main
        self.program = compile_experiment(spec, device)
        network = self.program.network
        dist.broadcast_tensors(list(network.parameters()) + list(network.buffers()) + list(self.program.state.values()))
        if tuple(splits.input_shape) != tuple(self.program.network.input_shape):
            raise BpcompileError(
                f"data set {spec.data.name!r} gives inputs of shape {tuple(splits.input_shape)} but the network was "
                f"built for {tuple(self.program.network.input_shape)}."
            )
        self.evaluate = CompiledEval(self.program, spec.loss, dist)
        self.optimizer = build_forward_optimizer(spec.optimizer, self.program)
        self.step = RuleStep(self.program, self.optimizer, spec.train.seed, dist)
        self.scheduler = build_scheduler(spec.optimizer, self.optimizer, spec.train.epochs)
        loaders = make_loaders(spec, splits, device, PROBE_SIZE, dist.shard)
        self.train_loader = loaders.pop("train")
        self.step.batches_per_epoch = len(self.train_loader)
        probe = loaders.pop("probe")
        self.eval_loaders = {("train" if k == "train_eval" else k): v for k, v in loaders.items()}
        self.probe = AlignmentProbe(self.program, *next(iter(probe.epoch(0))))
        self.epoch = 0            # epochs completed
        self.started = False      # rule's on_train_start hooks ran (restored runs have)
        self.history: list[dict] = []
        self.last_checkpoint_epoch = 0
        self.wall_seconds = 0.0
        self.first_loss: Optional[float] = None   # the run's first training step's loss: the divergence bound's scale
        self.loggers: list = []                    # metrics.jsonl and train.loggers, open while fit() runs (rank 0)

    # ---- checkpoints -------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "network": self.program.network.state_dict(),
            "rule_state": self.program.state,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rule_step": self.step.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "wall_seconds": self.wall_seconds,
            "first_loss": self.first_loss,
            "spec": spec_to_json(self.spec, full=True),
        }

    def load_state_dict(self, payload: dict) -> None:
        self.program.network.load_state_dict(payload["network"])
        for name, tensor in payload["rule_state"].items():
            self.program.state[name].copy_(tensor)   # in place: the compiled step holds these tensors
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.step.load_state_dict(payload["rule_step"])
        self.started = True
        torch.set_rng_state(payload["torch_rng"])
        if payload.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
        self.epoch = payload["epoch"]
        self.last_checkpoint_epoch = self.epoch
        self.wall_seconds = payload.get("wall_seconds", 0.0)
        self.first_loss = payload.get("first_loss")

    def save(self) -> None:
        if self.run_dir is not None:
            save_checkpoint(self.run_dir.file(CHECKPOINT), self.state_dict())
            self.last_checkpoint_epoch = self.epoch

    # ---- training ----------------------------------------------------------
    def _progress(self) -> Progress:
        return Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=self.console, transient=True, disable=not (self.show_progress and self.console.is_terminal),
        )

    def _diverged(self, step: int, what: str) -> TrainingDiverged:
        where = str(self.run_dir.path) if self.run_dir else "(no run directory)"
        kept = (f"the last good checkpoint (epoch {self.last_checkpoint_epoch}) is kept in {where}"
                if self.last_checkpoint_epoch else "no checkpoint had been written yet")
        return TrainingDiverged(
            f"training diverged in epoch {self.epoch + 1}, by step {step}: {what}; {kept}. Lower "
            f"optimizer.lr or check the rule's settings."
        )

    def _check(self, step: int, loss_sum: torch.Tensor, count: int) -> float:
        """The divergence check: a finite mean loss below the bound, every loss output finite in every step, and
        whatever the rule checks (exploding targets), over all ranks, so every rank stops at the same step."""
        total, count = self.dist.sum([float(loss_sum), count], self.device)
        mean = total / max(count, 1)
        if not math.isfinite(mean):
            raise self._diverged(step, f"the loss is {mean}")
        # a finite loss far above the first is divergence too (lr 1e6 once logged losses of 3e7 as if all were well)
        factor = self.spec.train.divergence_factor
        if factor and self.first_loss is not None and mean > factor * max(self.first_loss, 1.0):
            raise self._diverged(step, f"the train loss is {mean:.4g}, over {factor:g} times max(the run's first "
                                       f"loss {self.first_loss:.4g}, 1)")
        problem = self.step.check()
        if self.dist.any(problem is not None, self.device):
            raise self._diverged(step, problem or "the rule's divergence check failed on another rank")
        return mean

    def _check_state(self, step: int) -> None:
        """At an epoch's end, before anything of it is written: finite parameters, buffers, rule state and
        optimiser state (never checkpoint garbage), and learning rates the next epoch can use."""
        problem = nonfinite_tensor(self._named_state())
        if not problem and self.epoch + 1 < self.spec.train.epochs:
            problem = lr_problem(self.optimizer, self.epoch + 2)
        if self.dist.any(problem is not None, self.device):
            raise self._diverged(step, problem or "a non-finite tensor on another rank")

    def _named_state(self) -> list:
        network = self.program.network
        named = list(network.named_parameters()) + list(network.named_buffers()) + list(self.program.state.items())
        names = {id(p): n for n, p in network.named_parameters()}
        for param, state in self.optimizer.state.items():
            named += [(f"the optimiser's {key} of {names.get(id(param), 'a parameter')}", value)
                      for key, value in state.items() if torch.is_tensor(value) and key != "step"]
        return named

    def train_epoch(self) -> dict:
        epoch = self.epoch
        started = time.perf_counter()
        loss_sum = torch.zeros((), device=self.device)
        errors = torch.zeros((), dtype=torch.long, device=self.device)
        count = 0
        label = f"epoch {epoch + 1}/{self.spec.train.epochs}"
        problem = lr_problem(self.optimizer, epoch + 1)   # the spec's lr, or a resumed run's scheduled one
        if problem:
            raise self._diverged(0, problem)
        self.step.epoch, self.step.epochs = epoch, self.spec.train.epochs
        steps, step = epoch_steps(self.program, self.train_loader, epoch), 0
        with self._progress() as bar:
            task = bar.add_task(label, total=steps_per_epoch(self.program, self.train_loader), loss="-")
            for step, (phase, index, (x, y)) in enumerate(steps, start=1):
                self.step.select(phase)
                loss, logits = self.step(x, y, self.train_loader.global_size(index))
                if self.first_loss is None and phase in FORWARD_PHASES:   # one sync, once per run
                    first, n = self.dist.sum([float(loss) * len(y), len(y)], self.device)
                    self.first_loss = first / n if math.isfinite(first) else None
                if phase in FORWARD_PHASES:   # the train loss and error of the weights as they learn
                    loss_sum += loss.detach() * len(y)
                    errors += (logits.argmax(1) != y).sum()
                    count += len(y)
                if step % FINITE_CHECK_EVERY == 0:
                    bar.update(task, loss=f"{self._check(step, loss_sum, count):.4f}")
                bar.advance(task)
        train_loss = self._check(step, loss_sum, count)
        errors, count = self.dist.sum([float(errors), count], self.device)
        # each rank's batch norm saw only its shards: evaluate and checkpoint with the ranks' mean statistics
        self.dist.average(list(self.program.network.buffers()))
        trained_lr = self.optimizer.param_groups[0]["lr"]    # the rate this epoch trained at, before the schedule steps
        self.scheduler.step()
        self._check_state(step)
        row = {"epoch": epoch + 1, "train_loss": train_loss, "train_error": 100.0 * float(errors) / max(count, 1),
               "lr": trained_lr, "train_seconds": time.perf_counter() - started}
        return row

    def start(self) -> None:
        """A fresh run: the rule's start hooks (weight mirror's first mirror phase), then the epoch-0 alignment."""
        self.step.start()
        self.started = True
        row = {"epoch": 0, "layers": self.probe.measure() if self.dist.is_main else {}}
        self.history.append(row)
        if self.run_dir is not None:
            self._record(row)

    def _record(self, row: dict) -> None:
        """One metrics line to every logger: metrics.jsonl first, then those of train.loggers."""
        for logger in self.loggers:
            logger.log_epoch(row)

    def fit(self) -> dict:
        """Train to train.epochs. summary.json says how the run ended: 'running' while it trains, then 'finished',
        'diverged', 'interrupted' (Ctrl-C) or 'failed' (with the error, e.g. a full disk)."""
        failed = True
        try:
            if self.run_dir is not None:
                self.loggers = open_loggers(self.spec, self.run_dir, self.epoch, lambda: dump_text(self.program))
            summary = self._fit()
            failed = False
            return summary
        except BaseException as err:
            status = ("diverged" if isinstance(err, TrainingDiverged) else
                      "interrupted" if isinstance(err, KeyboardInterrupt) else "failed")
            self._write_summary_best_effort(status, str(err) or type(err).__name__)
            if isinstance(err, WriteFailed):   # say what survived and how to go on
                kept = (f"the checkpoint of epoch {self.last_checkpoint_epoch} is kept" if self.last_checkpoint_epoch
                        else "no checkpoint had been written yet")
                where = f" {self.run_dir.path}" if self.run_dir else ""
                raise WriteFailed(f"{err} {kept[0].upper()}{kept[1:]}; fix that (free space, quota, permissions), "
                                  f"then continue with --resume{where}.") from err
            raise
        finally:
            close_loggers(self.loggers, failed)

    def _fit(self) -> dict:
        epochs = self.spec.train.epochs
        if not self.started:
            self.start()
        self._write_summary("running")
        while self.epoch < epochs:
            started = time.perf_counter()
            row = self.train_epoch()
            self.epoch += 1
            last = self.epoch == epochs
            if self.epoch % self.spec.train.eval_every == 0 or last:
                for split, loader in self.eval_loaders.items():
                    result = self.evaluate(loader)
                    if split == "train":      # train_error='full': replace the running estimate
                        row["train_error"], row["train_eval_loss"] = result["error"], result["loss"]
                    else:
                        row[f"{split}_error"], row[f"{split}_loss"] = result["error"], result["loss"]
                        if "top5_error" in result:
                            row[f"{split}_top5_error"] = result["top5_error"]
                row["layers"] = self.probe.measure() if self.dist.is_main else {}   # rank 0 logs them
            row["seconds"] = time.perf_counter() - started
            self.wall_seconds += row["seconds"]
            self.history.append(row)
            self._log(row)
            if self.run_dir is not None:
                self._record(row)
                if self.epoch % self.spec.train.checkpoint_every == 0 or last:
                    self.save()
                self._write_summary("running" if not last else "finished")
        return self.summary("finished")

    def _log(self, row: dict) -> None:
        parts = [f"epoch {row['epoch']}/{self.spec.train.epochs}", f"loss {row['train_loss']:.4f}",
                 f"train err {row['train_error']:.2f}%"]
        for split in ("val", "test"):
            if f"{split}_error" in row:
                parts.append(f"{split} err {row[f'{split}_error']:.2f}%")
            if f"{split}_top5_error" in row:
                parts.append(f"{split} top-5 err {row[f'{split}_top5_error']:.2f}%")
        parts.append(f"{row['seconds']:.1f}s")
        self.console.print("  ".join(parts))

    def summary(self, status: str, error: Optional[str] = None) -> dict:
        evaluated = [r for r in self.history if "test_error" in r]
        best = min(evaluated, key=lambda r: r["test_error"]) if evaluated else None
        last = self.history[-1] if self.history else {}
        return {
            "name": self.spec.name,
            "rule": self.spec.rule.name,
            "status": status,
            "error": error[:500] if error else None,
            "epochs": self.epoch,
            "final_test_error": evaluated[-1]["test_error"] if evaluated else None,
            "best_test_error": best["test_error"] if best else None,
            "best_epoch": best["epoch"] if best else None,
            "final_test_top5_error": evaluated[-1].get("test_top5_error") if evaluated else None,
            "final_val_error": evaluated[-1].get("val_error") if evaluated else None,
            "final_train_error": last.get("train_error"),
            "final_train_loss": last.get("train_loss"),
            "wall_seconds": self.wall_seconds,
            "seed": self.spec.train.seed,
            "data_source": self.splits.source,
            **versions(self.device),
        }

    def _write_summary(self, status: str, error: Optional[str] = None) -> None:
        if self.run_dir is not None:
            self.run_dir.write_summary(self.summary(status, error))

    def _write_summary_best_effort(self, status: str, error: str) -> None:
        """How the run ended, if the disk allows: a failure here must not hide the error that ended the run."""
        try:
            self._write_summary(status, error)
        except Exception:
            pass


def _on_main(dist: Distributed, action):
    """Run `action` on rank 0 only; a user error it raises is raised on every rank (so none waits forever)."""
    message = None
    if dist.is_main:
        try:
            action()
        except BpcompileError as e:
            if not dist.enabled:
                raise
            message = str(e)
    message = dist.broadcast_object(message)
    if message:
        raise BpcompileError(message)


def _lock(run_path: Path, dist: Distributed, create: bool) -> RunLock:
    """Lock the run directory (rank 0 only) before anything else: before data and compiling, which take long,
    so that two runs started together into one directory cannot both pass the checks on its files."""
    lock = RunLock(run_path)
    _on_main(dist, lambda: lock.acquire(create))
    return lock


def run_experiment(spec, *, out: Path, device: Optional[str] = None, data_dir: Optional[str] = None,
                   overwrite: bool = False, console: Optional[Console] = None, show_progress: bool = True,
                   dist: Distributed = SINGLE_PROCESS) -> dict:
    """Train `spec` into a new run directory `out` (written by rank 0 alone); returns the summary."""
    console = console or make_console()
    lock = _lock(out, dist, create=True)
    try:
        _on_main(dist, lambda: RunDir.check_new(out, overwrite))   # fail fast, before loading and compiling
        return _fresh_run(spec, out, device, data_dir, overwrite, console, show_progress, dist)
    finally:
        lock.release()


def _fresh_run(spec, out: Path, device, data_dir, overwrite: bool, console, show_progress: bool,
               dist: Distributed) -> dict:
    torch_device = prepare_torch(spec, device, dist)
    check_memory(spec, torch_device)            # before a synthetic set or a data file fills the memory
    splits = load_dataset(spec.data, data_dir=data_dir, seed=spec.train.seed)
    trainer = Trainer(spec, torch_device, splits, None, console, show_progress, dist)   # compile before touching the disk

    def create():
        trainer.run_dir = RunDir.create(out, overwrite)
        trainer.run_dir.write_spec(spec_to_json(spec, full=True))

    _on_main(dist, create)
    trainer.console.print(f"{spec.name}: rule {spec.rule.name}, {len(trainer.program.network.layer_table)} parametric "
                          f"layers, data {splits.source}, device {torch_device}"
                          + (f" x {dist.world} processes" if dist.enabled else "") + f", run dir {out}", markup=False)
    return trainer.fit()


def resume_experiment(run_path: Path, *, spec=None, device: Optional[str] = None, data_dir: Optional[str] = None,
                      console: Optional[Console] = None, show_progress: bool = True,
                      dist: Distributed = SINGLE_PROCESS) -> dict:
    """Continue a run from its checkpoint. A given spec may differ from the run's only in train.epochs. A run
    that never wrote a checkpoint (stopped in its first epochs) starts again from epoch 1 in its directory."""
    console = console or make_console()
    run_dir = RunDir.existing(run_path)
    lock = _lock(run_path, dist, create=False)
    try:
        return _resume(run_dir, spec, device, data_dir, console, show_progress, dist)
    finally:
        lock.release()


def _resume(run_dir: RunDir, spec, device, data_dir, console, show_progress: bool, dist: Distributed) -> dict:
    run_path = run_dir.path
    saved = spec_from_dict(read_spec_dict(run_dir.file("spec.json")), f"run spec {run_dir.file('spec.json')}")
    if spec is not None:
        _check_resumable(saved, spec)
        _check_schedules_keep_their_span(saved, spec)
        saved = saved.model_copy(update={"train": saved.train.model_copy(update={"epochs": spec.train.epochs,
                                                                                 "loggers": spec.train.loggers})})
    spec = saved
    if not run_dir.file(CHECKPOINT).exists():   # killed before its first checkpoint: nothing to continue from
        if dist.is_main:
            console.print(f"{run_path} has no {CHECKPOINT} (the run stopped before its first checkpoint): starting "
                          f"it from scratch, from epoch 1", markup=False)
        return _fresh_run(spec, run_path, device, data_dir, True, console, show_progress, dist)
    payload = load_checkpoint(run_dir.file(CHECKPOINT))   # every rank reads it; first: a bad file fails fast
    torch_device = prepare_torch(spec, device, dist)
    check_memory(spec, torch_device)
    splits = load_dataset(spec.data, data_dir=data_dir, seed=spec.train.seed)
    trainer = Trainer(spec, torch_device, splits, run_dir if dist.is_main else None, console, show_progress, dist)
    try:
        trainer.load_state_dict(payload)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as err:
        raise BpcompileError(
            f"checkpoint {str(run_dir.file(CHECKPOINT))!r} does not fit the run in {str(run_path)!r} (its spec.json): "
            f"{type(err).__name__}: {str(err).strip().splitlines()[0][:300] if str(err).strip() else ''}. Restore "
            f"the checkpoint that belongs to this run, or start the run again with --overwrite."
        ) from err
    if dist.is_main:
        trainer.history = run_dir.truncate_metrics(trainer.epoch)
        run_dir.write_spec(spec_to_json(spec, full=True))
    dist.barrier()     # no rank runs ahead while rank 0 rewrites the metrics file
    trainer.console.print(f"resuming {spec.name} from epoch {trainer.epoch} of {spec.train.epochs} in {run_path}",
                          markup=False)
    if trainer.epoch >= spec.train.epochs:
        return trainer.summary("finished")
    return trainer.fit()


def _check_resumable(saved, given) -> None:
    a = saved.model_dump(mode="json")
    b = given.model_dump(mode="json")
    for spec in (a, b):           # what may change: the length, where metrics go, the editor's schema path
        spec["train"].pop("epochs"), spec["train"].pop("loggers"), spec.pop("schema_ref")
    if a != b:
        diffs = sorted(_diff_paths(a, b))
        raise BpcompileError(
            f"--resume: the given spec differs from the run's spec.json in {', '.join(diffs[:8])}; only train.epochs "
            f"(and train.loggers) may change when resuming."
        )


def _check_schedules_keep_their_span(saved, given) -> None:
    """A cosine schedule without its own span (schedule.epochs) spans train.epochs: raising train.epochs on resume
    would stretch it, so the resumed epochs would not train at the rates an uninterrupted run of that length has."""
    if given.train.epochs == saved.train.epochs:
        return
    spanning = cosine_decays_over_train_epochs(saved)
    if spanning:
        raise BpcompileError(
            f"--resume: the run's {' and '.join(spanning)} is a cosine decay over train.epochs "
            f"({saved.train.epochs}), so changing train.epochs to {given.train.epochs} would change the learning rate "
            f"of the epochs still to train and the run would match no uninterrupted run. Resume it with its own "
            f"train.epochs, or start it again with the schedule's span set (e.g. --set "
            f"{spanning[0]}.epochs={given.train.epochs}) to train it in parts.")


def _diff_paths(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in set(a) | set(b):
            yield from _diff_paths(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
    elif a != b:
        yield prefix


def dry_run(spec, steps: int, *, device: Optional[str] = None, console: Optional[Console] = None,
            dist: Distributed = SINGLE_PROCESS) -> list[float]:
    """Run `steps` training steps on random data of the spec's shapes; writes nothing. With several processes
    each rank steps on its shard of the same random global batches."""
    console = (console or make_console()) if dist.is_main else make_console(quiet=True)
    torch_device = prepare_torch(spec, device, dist)
    started = time.perf_counter()
    program = compile_experiment(spec, torch_device)
    compile_seconds = time.perf_counter() - started
    optimizer = build_forward_optimizer(spec.optimizer, program)
    step = RuleStep(program, optimizer, spec.train.seed, dist)
    step.start()
    shape, classes = data_shapes(spec.data)
    generator = torch.Generator().manual_seed(spec.train.seed)
    losses = []
    console.print(f"dry run of {spec.name}: rule {spec.rule.name}, compiled in {compile_seconds:.1f}s, "
                  f"{steps} step(s) of batch {spec.data.batch_size} on random data of shape {list(shape)}", markup=False)
    for i in range(steps):
        x, y = random_batch(shape, classes, spec.data.batch_size, generator)
        start, stop = dist.shard.bounds(len(y))
        x, y = x[start:stop].to(torch_device), y[start:stop].to(torch_device)
        t = time.perf_counter()
        phase = program.schedule[i % len(program.schedule)]   # an alternating schedule's phases: a step each
        step.select(phase)
        loss, _ = step(x, y, spec.data.batch_size)
        loss = dist.sum([float(loss) * len(y)], torch_device)[0] / spec.data.batch_size
        if not math.isfinite(loss):
            raise TrainingDiverged(f"dry run diverged at step {i + 1}: the loss is {loss}.")
        losses.append(loss)
        where = f" [{phase}]" if phase != "train" else ""
        console.print(f"  step {i + 1}{where}: loss {loss:.4f}  ({(time.perf_counter() - t) * 1e3:.1f} ms)")
    return losses
