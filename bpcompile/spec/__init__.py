"""The spec language: pydantic models of an experiment, saved as JSON.

Build specs in Python with the typed models (or `paper.paper_experiment` for
Bartunov et al.'s cells), save them with `save_spec`, load them with
`load_spec`. `json_schema()` is the schema with every default documented.
"""

from .data import CIFAR10, MNIST, DataSpec, FashionMNIST, ImageNet, Synthetic, data_shapes
from .experiment import ExperimentSpec, LossName, NetworkSpec
from .init import GlorotNormal, GlorotUniform, InitSpec, KaimingNormal, Normal, Orthogonal, TorchDefault
from .io import apply_overrides, json_schema, load_spec, save_spec, spec_from_dict, spec_to_json
from .layers import (
    PARAMETRIC_TYPES, Activation, BatchNorm, Conv2d, Dense, Flatten, GlobalAvgPool, LayerSpec, LocallyConnected,
    Pool, ResidualBlock, ResNet,
)
from .optim import SGD, Adam, ConstantLR, CosineLR, MultiStepLR, OptimizerSpec, ScheduleSpec, StepLR
from .rules import (
    AOSDTP, BP, DFA, DTP, FA, SDTP, TP, Alternation, Feedback, GradientRuleSpec, KolenPollack,
    MirrorSettings, RuleOverride, RuleSpec, SignSymmetry, WeightMirror,
)
from .rule_registry import rule_family, rule_models, rule_names, rule_union
from .train import LoggerSpec, TensorBoardLog, TrainSpec, WandbLog

__all__ = [name for name in dir() if not name.startswith("_")]
