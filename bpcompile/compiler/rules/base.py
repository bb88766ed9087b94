"""What a rule pass sees: the training graph, its signature, and a place for state.

A gradient-family rule pass is a class with a `name` and
`rewrite(ctx, layers)`, called once with the parametric layers it trains.
It may add graph inputs (state tensors such as feedback weights), retarget
nodes, and record each change as a `Rewrite` so `inspect` can show it."""

from dataclasses import dataclass, field

import torch
from torch.fx import GraphModule

from ...nn.init import init_tensor
from ..program import META_REWRITE, Rewrite, Signature, Slot
from ..trace import add_input


@dataclass
class RewriteContext:
    graph: GraphModule
    signature: Signature
    network: torch.nn.Module
    spec: object                     # the ExperimentSpec
    state: dict = field(default_factory=dict)
    rewrites: list = field(default_factory=list)

    def generator(self, purpose: int) -> torch.Generator:
        """A generator seeded from train.seed and a purpose number, so state tensors
        never shift the forward initialisation (BP and FA runs share W)."""
        return torch.Generator().manual_seed((self.spec.train.seed * 1_000_003 + purpose) % 2**63)

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
