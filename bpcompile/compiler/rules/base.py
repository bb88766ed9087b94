"""The rule API: what a rule pass is, and what it sees (the training graph, its signature, a place for state).

A rule is a spec model plus a RulePass subclass registered with `@register_rule(SpecModel)`
(rules/registry.py). A gradient-family pass implements `rewrite(ctx, layers)`, called once with the
parametric layers it trains (after rule_overrides). It may add graph inputs (state tensors such as
feedback weights), retarget or replace nodes, add graph outputs, record each change as a `Rewrite` so
`inspect` can show it, add extra graphs (weight mirror's mirror program), and register `RuleHooks`: what
the rule does around each training step (Kolen-Pollack's paired update, weight mirror's mirror phases,
batch-random magnitudes). A 'target_propagation'-family pass implements `build(ctx)` instead and returns
the program it traced itself (rules/target_propagation.py). docs/writing-a-rule.md walks through one."""

from dataclasses import dataclass, field

import torch
from torch.fx import GraphModule

from ...nn.init import init_tensor
from ...nn.ops import WEIGHT_ARG
from ..program import META_DTYPE, META_REWRITE, Rewrite, Signature, Slot
from ..streams import seeded_generator
from ..trace import add_input, placeholders


@dataclass
class RewriteContext:
    graph: GraphModule
    signature: Signature
    network: torch.nn.Module
    spec: object                     # the ExperimentSpec
    state: dict = field(default_factory=dict)
    rewrites: list = field(default_factory=list)
    hooks: list = field(default_factory=list)
    extra_graphs: dict = field(default_factory=dict)   # name -> (GraphModule, Signature), shown by inspect
    decay_exempt: set = field(default_factory=set)     # parameters a rule decays itself (the optimiser's L2 skips them)

    def generator(self, owner: str, purpose: str) -> torch.Generator:
        """A CPU generator of the seed stream (owner, purpose) (compiler/streams.py), so state tensors
        never shift the forward initialisation (BP and FA runs share W)."""
        return seeded_generator(self.spec.train.seed, owner, purpose)

    def add_state(self, name: str, tensor: torch.Tensor) -> torch.fx.Node:
        """Register a state tensor and return its new graph input."""
        self.state[name] = tensor
        return add_input(self.graph, self.signature, Slot("state", name))

    def init_like_weight(self, info, scheme, generator) -> torch.Tensor:
        """A tensor of the layer's weight layout, initialised by `scheme` with the layer's fans."""
        weight = dict(self.network.named_parameters())[info.weight]
        tensor = torch.empty(weight.shape, dtype=weight.dtype)
        return init_tensor(tensor, scheme, info.fan_in, info.fan_out, generator).to(weight.device)

    def record(self, rule: str, layer: str, node: torch.fx.Node, description: str) -> None:
        node.meta[META_REWRITE] = f"{rule}: {description}"
        self.rewrites.append(Rewrite(rule, layer, node.name, description))

    def retarget_weight(self, rule: str, info, node: torch.fx.Node, new_weight: torch.fx.Node, what: str) -> None:
        """Point a grad_input node's weight argument at `new_weight` (a feedback tensor or an expression of W),
        cast like the weight it replaces (bf16 graphs read a bf16 copy of W)."""
        args = list(node.args)
        args[WEIGHT_ARG] = self.cast_like(new_weight, args[WEIGHT_ARG], node)
        node.args = tuple(args)
        self.record(rule, info.name, node, f"reads {what} instead of {info.weight} (W)")

    def cast_like(self, value: torch.fx.Node, like: torch.fx.Node, before: torch.fx.Node) -> torch.fx.Node:
        """`value`, cast (a new node before `before`) to the dtype `like` had when traced, if that is a
        reduced-precision float (bf16 autocast); state tensors and parameters are fp32."""
        if not isinstance(like, torch.fx.Node):
            return value
        dtype = like.meta.get(META_DTYPE) or getattr(like.meta.get("val"), "dtype", None)
        if dtype not in (torch.bfloat16, torch.float16):
            return value
        with self.graph.graph.inserting_before(before):
            return self.graph.graph.call_function(torch.ops.aten._to_copy.default, (value,), {"dtype": dtype})

    def param_node(self, name: str) -> torch.fx.Node:
        return placeholders(self.graph, self.signature)[name]


class RulePass:
    """A rule pass, built from its rule spec. `name` and `family` are set by @register_rule.

    Subclasses implement `rewrite` (gradient family) or `build` (target_propagation family) and may
    override the class attributes and `check`, `for_spec`, `state_elements`."""

    name = "rule"
    family = "gradient"
    supports_bf16 = True              # the rule's graphs handle train.precision='bf16'
    supports_channels_last = True     # ... and train.channels_last
    kept_outputs: tuple = ()          # output kinds the runtime keeps after each step (run.last_outputs: logs, check)
    loss_outputs: tuple = ()          # output kinds that are losses, checked finite every step ('loss' always is)

    def __init__(self, spec):
        self.spec = spec

    @classmethod
    def for_spec(cls, spec) -> "RulePass":
        """The pass for this spec; a rule made of parts returns the pass its parts select."""
        return cls(spec)

    def check(self, spec, network, layers) -> None:
        """Refuse, with a BpcompileError naming the layer or field, what this rule cannot train; called
        by `validate` too (network may be a meta-device plan)."""

    def state_elements(self, network, layers) -> int:
        """Elements of the state tensors the rule adds for these layers, for the size budget (an estimate
        from the layer table; nothing is allocated)."""
        return 0

    def rewrite(self, ctx: RewriteContext, layers) -> None:
        raise NotImplementedError(f"rule {self.name!r} (gradient family) must implement rewrite(ctx, layers)")

    def build(self, ctx: RewriteContext) -> dict:
        """Target-propagation family: trace the rule's own program into ctx; returns the Program fields it
        sets: graph, signature, and optionally phases, schedule, alternation, noise_shapes, loss_reduction."""
        raise NotImplementedError(f"rule {self.name!r} (target_propagation family) must implement build(ctx)")


def schedule_factor(run) -> float:
    """The forward learning-rate schedule's current factor (lr now / base lr), which feedback learning rates
    follow; 1 outside a run (hooks called directly)."""
    optimizer = getattr(run, "optimizer", None)
    if optimizer is None:
        return 1.0
    group = optimizer.param_groups[0]
    return group["lr"] / group.get("initial_lr", group["lr"])


def forward_lr(run) -> float | None:
    """The forward optimiser's current learning rate, or None outside a run."""
    optimizer = getattr(run, "optimizer", None)
    return None if optimizer is None else optimizer.param_groups[0]["lr"]


class ScheduledOptimizer:
    """A feedback optimiser whose learning rate follows the forward schedule (follow=True) or stays fixed."""

    def __init__(self, optimizer, follow: bool):
        self.optimizer, self.follow = optimizer, follow
        self.base = [group["lr"] for group in optimizer.param_groups]

    def step(self, run) -> None:
        factor = schedule_factor(run) if self.follow else 1.0
        for group, base in zip(self.optimizer.param_groups, self.base):
            group["lr"] = base * factor
        self.optimizer.step()

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)
        for group, base in zip(self.optimizer.param_groups, self.base):
            group["lr"] = base      # step() sets the scheduled lr again


class RuleHooks:
    """What a rule does around each training step; the runtime calls these on every rule's hooks.

    `run` gives access to the program, the forward optimiser and the step count. Hooks keep their own
    generators; `state_dict` / `load_state_dict` carry them through checkpoints so resumed runs match."""

    def on_train_start(self, run) -> None:
        """Once, before the first step of a fresh run (not on resume)."""

    def before_step(self, run) -> None:
        """Before the training graph runs on a batch."""

    def before_update(self, run) -> None:
        """After the graph ran (its updates are in .grad, reduced over processes), just before the forward
        optimiser steps."""

    def after_step(self, run) -> None:
        """After the forward optimiser has stepped."""

    def check(self, run) -> str | None:
        """Every few steps: a message if the rule's state has diverged (the loss is checked anyway)."""
        return None

    def feedback_tensors(self) -> dict:
        """layer -> the tensor standing in for W (W's layout) now, for the alignment metrics."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
