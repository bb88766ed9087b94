"""Where metrics lines go: metrics.jsonl always, TensorBoard and Weights & Biases when `train.loggers` asks.

A logger has `log_epoch(row)` (every metrics line, the dict with epoch, losses, errors, lr, seconds and
`layers`), `log_graph_text(text, path)` (the compiled graph's text, once per fresh run) and `close(failed)`.
TensorBoard and W&B flatten each line to scalars with the epoch as the step. Both packages are optional and
imported only when a spec asks for them. Only the process that writes the run directory (rank 0) logs."""

import secrets
from pathlib import Path

from ..errors import BpcompileError

GRAPH_FILE = "graph.txt"          # the compiled graph's text (`bpcompile inspect`), written for the loggers
WANDB_ID_FILE = "wandb_id.txt"    # the W&B run id, so a resumed run continues the same W&B run


def scalars(row: dict) -> dict[str, float]:
    """A metrics line as flat tags: 'train_loss', 'test_error', 'lr', ... and 'layers/<layer>/<metric>'."""
    out = {}

    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    for key, value in row.items():
        if key == "layers":
            for layer, metrics in value.items():
                out.update({f"layers/{layer}/{name}": float(v) for name, v in metrics.items() if number(v)})
        elif key != "epoch" and number(value):
            out[key] = float(value)
    return out


def with_loggers(spec, names: list[str]):
    """`spec` with the named loggers added to train.loggers (those it names already keep their settings)."""
    from ..spec import TensorBoardLog, WandbLog

    have = {logger.name for logger in spec.train.loggers}
    added = [{"tensorboard": TensorBoardLog, "wandb": WandbLog}[name]() for name in names if name not in have]
    return spec.model_copy(update={"train": spec.train.model_copy(update={"loggers": [*spec.train.loggers, *added]})})


def _missing(package: str, extra: str) -> BpcompileError:
    return BpcompileError(f"train.loggers asks for {extra}, but the {package!r} package is not installed: "
                          f"pip install 'bpcompile[{extra}]' (or pip install {package}), or remove the logger.")


class JsonlLogger:
    """metrics.jsonl, one JSON line per metrics line (the run directory appends it and truncates it on resume)."""

    def __init__(self, run_dir):
        self.run_dir = run_dir

    def log_epoch(self, row: dict) -> None:
        self.run_dir.append_metrics(row)

    def log_graph_text(self, text: str, path: Path) -> None:
        pass

    def close(self, failed: bool = False) -> None:
        pass


class TensorBoardLogger:
    def __init__(self, run_dir: Path, first_epoch: int):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing("tensorboard", "tensorboard") from None
        # a resumed run drops the events of epochs after its checkpoint, as metrics.jsonl does; a run started
        # again from scratch in its directory (no checkpoint yet) drops every earlier event
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=first_epoch + 1 if first_epoch else 0)

    def log_epoch(self, row: dict) -> None:
        for tag, value in scalars(row).items():
            self.writer.add_scalar(tag, value, global_step=row["epoch"])
        self.writer.flush()

    def log_graph_text(self, text: str, path: Path) -> None:
        # TensorBoard renders text as Markdown: indent by four spaces for a code block
        self.writer.add_text("compiled_graph", "\n".join("    " + line for line in text.splitlines()), global_step=0)

    def close(self, failed: bool = False) -> None:
        self.writer.close()


class WandbLogger:
    def __init__(self, settings, run_dir: Path, spec):
        try:
            import wandb
        except ImportError:
            raise _missing("wandb", "wandb") from None
        id_file = run_dir / WANDB_ID_FILE
        run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(8)
        id_file.write_text(run_id + "\n")
        try:
            self.run = wandb.init(project=settings.project, entity=settings.entity, name=spec.name, id=run_id,
                                  resume="allow", dir=str(run_dir), mode=settings.mode,
                                  config=spec.model_dump(mode="json", by_alias=True),
                                  settings=wandb.Settings(silent=True, console="off"))
        except Exception as err:      # no login, no network, a refused project: the user's to fix
            first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
            raise BpcompileError(f"train.loggers 'wandb' (mode {settings.mode!r}) could not start its run: {first}. "
                                 f"Use mode 'offline' (no network needed), or log in with `wandb login`.") from None

    def log_epoch(self, row: dict) -> None:
        self.run.log(scalars(row), step=row["epoch"])

    def log_graph_text(self, text: str, path: Path) -> None:
        self.run.save(str(path), base_path=str(path.parent), policy="now")

    def close(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


def open_loggers(spec, run_dir, first_epoch: int, graph_text) -> list:
    """metrics.jsonl's logger and the spec's others for the RunDir; `graph_text()` gives the compiled graph's
    text, which a fresh run (first_epoch 0) with other loggers writes to graph.txt and logs once."""
    loggers = [JsonlLogger(run_dir)]
    try:
        for settings in spec.train.loggers:
            if settings.name == "tensorboard":
                loggers.append(TensorBoardLogger(run_dir.path, first_epoch))
            else:
                loggers.append(WandbLogger(settings, run_dir.path, spec))
        if len(loggers) > 1 and first_epoch == 0:
            text = graph_text()
            path = run_dir.path / GRAPH_FILE
            path.write_text(text)
            for logger in loggers:
                logger.log_graph_text(text, path)
    except BaseException:
        close_loggers(loggers, failed=True)
        raise
    return loggers


def close_loggers(loggers: list, failed: bool = False) -> None:
    for logger in loggers:
        logger.close(failed)
