"""The compiled training program: FX graphs, their signatures, rule state.

A graph's inputs and outputs are flat tensors; its `Signature` says what each
one is (a parameter, a buffer, a rule's state tensor, the batch, a gradient),
so the runtime can feed and read it without knowing the rule."""

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch.fx import GraphModule

# Node meta keys written by the compiler passes (read by dump.py)
META_LAYER = "bpcompile_layer"      # parametric layer the node belongs to
META_ROLE = "bpcompile_role"        # 'forward' | 'grad_input' | 'grad_weight'
META_OP = "bpcompile_op"            # custom op name before lowering
META_IMPL = "bpcompile_impl"        # implementation chosen by lowering
META_REWRITE = "bpcompile_rewrite"  # what a rule pass changed, in words
META_DTYPE = "bpcompile_dtype"      # the dtype a tensor-valued node was traced with (kept by the graph cache)


@dataclass(frozen=True)
class Slot:
    kind: str   # inputs: param, buffer, state, noise, input, target
                # outputs: loss, logits, grad, state_grad, and any kind a rule adds (target propagation:
                # target, local_loss, inverse_loss); the metrics' probe graphs add delta
    name: str   # e.g. 'fc1.weight', 'fc1.feedback', 'x'


@dataclass
class Signature:
    inputs: list[Slot]
    outputs: list[Slot]

    def input_names(self, kind: str) -> list[str]:
        return [s.name for s in self.inputs if s.kind == kind]

    def output_index(self, kind: str, name: Optional[str] = None) -> int:
        for i, s in enumerate(self.outputs):
            if s.kind == kind and (name is None or s.name == name):
                return i
        raise KeyError((kind, name))


@dataclass
class Rewrite:
    """A change a rule pass made, for `inspect` and the tests."""

    rule: str
    layer: str
    node: str
    description: str


@dataclass
class Program:
    """What `compile_experiment` returns and the runtime executes."""

    train_graph: GraphModule          # params, buffers, state, x, y -> loss, logits, grads
    train_signature: Signature
    eval_graph: GraphModule           # params, buffers, x -> logits
    eval_signature: Signature
    network: torch.nn.Module          # owns the parameters and buffers
    layer_rules: dict[str, str]       # parametric layer -> rule name that trains it
    rule_name: str
    state: dict[str, torch.Tensor] = field(default_factory=dict)   # rule state (feedback tensors ...)
    rewrites: list[Rewrite] = field(default_factory=list)
    device: torch.device = torch.device("cpu")
    hooks: list = field(default_factory=list)             # RuleHooks the runtime calls around each step
    extra_graphs: dict = field(default_factory=dict)      # e.g. 'mirror' -> (GraphModule, Signature)
    probe_graph: Optional[GraphModule] = None             # the BP training graph, for alignment metrics
    probe_signature: Optional[Signature] = None
    rule_probe_graph: Optional[GraphModule] = None        # the rule's training graph returning deltas too (gradient
    rule_probe_signature: Optional[Signature] = None      # rules; target propagation has no deltas)
    # the schedule: the phases that take turns (the default single phase 'train' is train_graph;
    # target propagation's alternating schedule has 'inverse' and 'forward', taking turns as
    # `alternation` says: runtime/schedule.py)
    phases: dict = field(default_factory=dict)            # phase name -> (GraphModule, Signature)
    schedule: list = field(default_factory=lambda: ["train"])
    alternation: Optional[object] = None                  # rule.alternation when phases take turns
    noise_shapes: dict = field(default_factory=dict)      # 'noise' input name -> per-example shape
    loss_reduction: str = "sum"                           # how the local / inverse losses reduce over units
    decay_exempt: set = field(default_factory=set)        # parameters the rule decays itself (no optimiser L2)
    kept_outputs: tuple = ()        # output kinds the runtime keeps after each step (the rules' kept_outputs)
    loss_outputs: tuple = ("loss",)  # output kinds that are losses, checked finite every step
    backend: str = "fx"             # how the runtime executes the step graphs (train.backend; runtime/backend.py)

    def phase(self, name: str) -> tuple[GraphModule, Signature]:
        return self.phases.get(name, (self.train_graph, self.train_signature))

    def graph_inputs(self, signature: Signature, x: torch.Tensor, y: Optional[torch.Tensor] = None,
                     noise=None) -> list:
        """The flat input list of a graph, in its signature's order. noise(name, shape) draws a 'noise'
        input of the given full shape; without it noise inputs are zeros (the metrics' clean pass)."""
        params = dict(self.network.named_parameters())
        buffers = dict(self.network.named_buffers())
        values = []
        for slot in signature.inputs:
            if slot.kind == "param":
                values.append(params[slot.name])
            elif slot.kind == "buffer":
                values.append(buffers[slot.name])
            elif slot.kind == "state":
                values.append(self.state[slot.name])
            elif slot.kind == "input":
                values.append(x)
            elif slot.kind == "target":
                values.append(y)
            elif slot.kind == "noise":
                shape = (x.shape[0], *self.noise_shapes[slot.name])
                values.append(noise(slot.name, shape) if noise else torch.zeros(shape, device=x.device, dtype=x.dtype))
        return values
