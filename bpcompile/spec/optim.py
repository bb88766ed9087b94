"""Optimisers (discriminated by `name`) and learning-rate schedules (by `name`).

Schedules step once per epoch. Forward, inverse (target propagation) and
feedback (weight mirror) parameters each get their own optimiser spec."""

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from .base import SpecModel

MAX_EPOCHS = 1_000_000


class ConstantLR(SpecModel):
    """The learning rate stays at the optimiser's lr."""

    name: Literal["constant"] = "constant"


class StepLR(SpecModel):
    """lr * gamma ** (epoch // step_epochs)."""

    name: Literal["step"] = "step"
    step_epochs: int = Field(30, gt=0, le=MAX_EPOCHS)
    gamma: float = Field(0.1, gt=0, le=1, description="Decay factor per step (a factor > 1 would grow the rate without bound).")


class MultiStepLR(SpecModel):
    """lr * gamma ** (number of milestones passed)."""

    name: Literal["multistep"] = "multistep"
    milestones: list[Annotated[int, Field(gt=0, le=MAX_EPOCHS)]] = Field(default_factory=list, max_length=1000)
    gamma: float = Field(0.1, gt=0, le=1, description="Decay factor per milestone (<= 1).")


class CosineLR(SpecModel):
    """Cosine decay from lr to min_lr over the run's epochs, after warmup_epochs of linear warm-up."""

    name: Literal["cosine"] = "cosine"
    min_lr: float = Field(0.0, ge=0)
    warmup_epochs: int = Field(0, ge=0, le=MAX_EPOCHS)
    epochs: Optional[int] = Field(
        None, gt=0, le=MAX_EPOCHS, description="Epochs the schedule spans, warm-up included (the rate stays at min_lr "
        "after them); default: the run's train.epochs. Set it to train a run in parts (bpcompile run --resume "
        "raising train.epochs) along one schedule: without it the span would move with train.epochs.")

    @model_validator(mode="after")
    def _warmup_within_span(self):
        if self.epochs is not None and self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be below epochs ({self.epochs}), the "
                             f"schedule's span")
        return self


ScheduleSpec = Annotated[Union[ConstantLR, StepLR, MultiStepLR, CosineLR], Field(discriminator="name")]


class Adam(SpecModel):
    """Adam (Kingma & Ba); weight_decay is L2 added to the update (torch.optim.Adam)."""

    name: Literal["adam"] = "adam"
    lr: float = Field(1e-3, gt=0)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = Field(
        (0.9, 0.999), description="Decay rates of the first and second moment estimates, each in [0, 1).")
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    schedule: ScheduleSpec = Field(default_factory=ConstantLR)

    @field_validator("betas", mode="before")
    @classmethod
    def _betas_from_json_list(cls, value):
        return tuple(value) if isinstance(value, list) else value   # JSON has arrays, not tuples


class SGD(SpecModel):
    """SGD with (Nesterov) momentum and L2 weight decay."""

    name: Literal["sgd"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)
    schedule: ScheduleSpec = Field(default_factory=ConstantLR)


OptimizerSpec = Annotated[Union[Adam, SGD], Field(discriminator="name")]
OptionalOptimizer = Optional[OptimizerSpec]


def cosine_decays_over_train_epochs(spec) -> list[str]:
    """Field paths of the experiment's cosine schedules without a span of their own (schedule.epochs), whose rates
    therefore depend on train.epochs: the forward optimiser's and target propagation's inverse optimiser's."""
    optimizers = {"optimizer": spec.optimizer, "rule.inverse_optimizer": getattr(spec.rule, "inverse_optimizer", None)}
    return [f"{path}.schedule" for path, optimizer in optimizers.items()
            if optimizer is not None and optimizer.schedule.name == "cosine" and optimizer.schedule.epochs is None]
