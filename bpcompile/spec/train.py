"""Training loop settings."""

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, field_validator

from .base import SpecModel


class TensorBoardLog(SpecModel):
    """TensorBoard event files in the run directory's `tensorboard/` (`tensorboard --logdir RUN_DIR`): every
    scalar of a metrics line (losses, errors, learning rate, seconds, and each layer's metrics as
    `layers/<layer>/<metric>`) at its epoch, and the compiled graph's text. Needs the `tensorboard` package
    (`pip install 'bpcompile[tensorboard]'`)."""

    name: Literal["tensorboard"] = "tensorboard"


class WandbLog(SpecModel):
    """Weights & Biases: the same scalars (step = epoch), the resolved spec as the run's config, and the compiled
    graph's text as a file. Needs the `wandb` package (`pip install 'bpcompile[wandb]'`)."""

    name: Literal["wandb"] = "wandb"
    project: str = Field("bpcompile", pattern=r"^[A-Za-z0-9_.-]+$", max_length=128)
    entity: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9_.-]+$", max_length=128, description="W&B team or user (default: yours).")
    mode: Literal["offline", "online"] = Field(
        "offline", description="'offline': the run is written under the run directory's `wandb/`, no network needed "
        "(upload it later with `wandb sync`); 'online': streamed to the W&B server (needs `wandb login`).",
    )


LoggerSpec = Annotated[Union[TensorBoardLog, WandbLog], Field(discriminator="name")]


class TrainSpec(SpecModel):
    """Epochs, seed, device, precision and the evaluation/checkpoint cadence."""

    epochs: int = Field(10, gt=0, le=1_000_000)
    seed: int = Field(0, ge=0, lt=2**32, description="Seeds initialisation, feedback tensors, data order and augmentation.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto': cuda when available, else cpu.")
    precision: Literal["fp32", "tf32", "bf16"] = Field(
        "fp32", description="'tf32': fp32 with TF32 matrix products on GPU; 'bf16': bf16 autocast."
    )
    channels_last: bool = Field(
        False, description="Keep 4-D activations in channels-last (NHWC) memory format: faster convolutions on GPUs "
                           "with tensor cores, especially with precision 'bf16'."
    )
    backend: Literal["fx", "inductor"] = Field(
        "fx", description="How the compiled training step runs: 'fx' executes the rewritten FX graph directly; "
        "'inductor' hands the same graph to torch.compile (Inductor), which fuses the plain-PyTorch ops and "
        "keeps Triton kernels opaque. Inductor compiles on the first step (seconds to a minute) and again for "
        "the epoch's last, shorter batch; on the CPU it needs a C++ compiler and measured slower than 'fx' "
        "for every rule (benchmarks/results/backend_cpu.json). Evaluation and the alignment probes run FX.",
    )
    eval_every: int = Field(1, gt=0, le=1_000_000, description="Evaluate on the test (and validation) split every N epochs and at the end.")
    checkpoint_every: int = Field(1, gt=0, le=1_000_000, description="Write the checkpoint every N epochs and at the end.")
    train_error: Literal["running", "full"] = Field(
        "running",
        description="'running': error of the training batches as they are trained on; 'full': an extra evaluation pass over the training set.",
    )
    max_steps_per_epoch: Optional[int] = Field(None, gt=0, le=2**31, description="Cut epochs short (quick experiments).")
    divergence_factor: Optional[float] = Field(
        1000.0, gt=1, le=1e30, description="Stop the run as diverged (exit 3) when the mean train loss exceeds this "
        "many times max(the first step's loss, 1); null: no bound (non-finite values still stop it).",
    )
    num_threads: Optional[int] = Field(None, gt=0, le=4096, description="CPU threads for torch (default: torch's choice).")
    loggers: list[LoggerSpec] = Field(
        default_factory=list, max_length=2, description="Where metrics go besides metrics.jsonl (always written): "
        "'tensorboard' and / or 'wandb' (`bpcompile run --tensorboard` / `--wandb` add them).",
    )

    @field_validator("loggers")
    @classmethod
    def _each_logger_once(cls, loggers):
        names = [logger.name for logger in loggers]
        if len(set(names)) != len(names):
            raise ValueError(f"each logger may be named once (got {names})")
        return loggers
