"""The whole experiment: network, rule, data, loss, optimiser and training."""

from typing import Literal, Optional

from pydantic import ConfigDict, Field, model_validator

from .base import SpecModel
from .data import DataSpec, InputShape, MNIST, check_input_shape
from .init import GlorotUniform, InitSpec
from .layers import LayerSpec
from .optim import Adam, OptimizerSpec
from .rule_registry import hold_rule_field, rule_family
from .rules import BP, RuleOverride, RuleSpec
from .train import TrainSpec

LossName = Literal["softmax_cross_entropy", "sigmoid_cross_entropy", "mse"]


class NetworkSpec(SpecModel):
    """Layers applied in order to inputs of `input_shape` (default: the data set's)."""

    input_shape: Optional[InputShape] = Field(None, description="(C, H, W) or (features,); default: taken from the data set.")
    init: InitSpec = Field(default_factory=GlorotUniform, description="Default initialisation of every parametric layer.")
    layers: list[LayerSpec] = Field(min_length=1, max_length=10_000)

    @model_validator(mode="after")
    def _unique_names(self):
        check_input_shape(self.input_shape, "network.input_shape")
        seen = set()
        for i, layer in enumerate(self.layers):
            name = getattr(layer, "name", None)
            if name is None:
                continue
            if name in seen:
                raise ValueError(f"layer name {name!r} is used twice (second time at layers[{i}])")
            seen.add(name)
        return self


class ExperimentSpec(SpecModel):
    """One experiment. Losses: 'softmax_cross_entropy' (softmax + negative log
    likelihood), 'sigmoid_cross_entropy' (per-class sigmoid against one-hot
    labels), 'mse' (mean squared error of the outputs against one-hot labels)."""

    model_config = ConfigDict(populate_by_name=True)      # "$schema" in files, schema_ref in Python

    schema_ref: Optional[str] = Field(
        None, alias="$schema", max_length=4096,
        description="Where an editor finds this file's JSON Schema, for completion and checks: a path relative to "
        "the file (the shipped specs give specs/schema.json) or a URL. Written by `bpcompile schema --out FILE`; "
        "bpcompile never opens it.",
    )
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=200)
    description: str = Field("", max_length=100_000)
    data: DataSpec = Field(default_factory=MNIST)
    network: NetworkSpec
    loss: LossName = "softmax_cross_entropy"
    rule: RuleSpec = Field(default_factory=BP)
    rule_overrides: list[RuleOverride] = Field(
        default_factory=list, description="Per-layer rules; checked against the built network's layer names."
    )
    optimizer: OptimizerSpec = Field(default_factory=Adam, description="Optimiser of the forward parameters.")
    train: TrainSpec = Field(default_factory=TrainSpec)

    @model_validator(mode="after")
    def _overrides_need_gradient_rule(self):
        if self.rule_overrides and rule_family(self.rule.name) != "gradient":
            raise ValueError(
                f"rule_overrides mix gradient-family rules into a {self.rule.name!r} network, which has no gradients to override"
            )
        return self


hold_rule_field(ExperimentSpec, "rule")
