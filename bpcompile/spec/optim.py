"""Optimisers (discriminated by `name`) and learning-rate schedules (by `name`).

Schedules step once per epoch. Forward, inverse (target propagation) and
feedback (weight mirror) parameters each get their own optimiser spec."""

from typing import Annotated, Literal, Optional, Union

from pydantic import Field

from .base import SpecModel


class ConstantLR(SpecModel):
    """The learning rate stays at the optimiser's lr."""

    name: Literal["constant"] = "constant"


class StepLR(SpecModel):
    """lr * gamma ** (epoch // step_epochs)."""

    name: Literal["step"] = "step"
    step_epochs: int = Field(30, gt=0)
    gamma: float = Field(0.1, gt=0)


class MultiStepLR(SpecModel):
    """lr * gamma ** (number of milestones passed)."""

    name: Literal["multistep"] = "multistep"
    milestones: list[int] = Field(default_factory=list)
    gamma: float = Field(0.1, gt=0)


class CosineLR(SpecModel):
    """Cosine decay from lr to min_lr over the run's epochs, after warmup_epochs of linear warm-up."""

    name: Literal["cosine"] = "cosine"
    min_lr: float = Field(0.0, ge=0)
    warmup_epochs: int = Field(0, ge=0)


ScheduleSpec = Annotated[Union[ConstantLR, StepLR, MultiStepLR, CosineLR], Field(discriminator="name")]


class Adam(SpecModel):
    """Adam (Kingma & Ba); weight_decay is L2 added to the update (torch.optim.Adam)."""

    name: Literal["adam"] = "adam"
    lr: float = Field(1e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    schedule: ScheduleSpec = Field(default_factory=ConstantLR)


class SGD(SpecModel):
    """SGD with (Nesterov) momentum and L2 weight decay."""

    name: Literal["sgd"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)
    schedule: ScheduleSpec = Field(default_factory=ConstantLR)


OptimizerSpec = Annotated[Union[Adam, SGD], Field(discriminator="name")]
OptionalOptimizer = Optional[OptimizerSpec]
