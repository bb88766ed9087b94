"""Lowering: give every custom-op node a concrete implementation.

Custom-op nodes become direct calls of the chosen implementation function
(no dispatcher hop per call). On CPU that is the plain-PyTorch 'reference';
Triton implementations, registered per op in the op families, are preferred
on CUDA once they exist. The choice is recorded in node.meta for `inspect`."""

import torch
from torch.fx import GraphModule

from ..nn.ops import implementations
from .program import META_IMPL, META_OP


def preference(device: torch.device) -> tuple[str, ...]:
    return ("triton", "reference") if device.type == "cuda" else ("reference",)


def lower(graph: GraphModule, device: torch.device) -> None:
    order = preference(device)
    for node in graph.graph.nodes:
        if node.op != "call_function":
            continue
        impls = implementations(node.target)
        if not impls:
            continue
        choice = next(name for name in order if name in impls)
        node.meta.setdefault(META_OP, str(node.target))
        node.meta[META_IMPL] = choice
        node.target = impls[choice]
    graph.recompile()
