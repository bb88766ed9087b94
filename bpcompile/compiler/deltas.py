"""Graphs that also return each layer's delta, for the per-sample delta angle (Akrout et al.'s metric).

A layer's delta is the error at its output (before the activation): the first argument of its grad_weight
node, whatever the rule put there (W^T, B, sign(W) or a direct projection of the output error). The copies
made here serve the alignment probe only; the training graphs are left as they are."""

import copy

from torch.fx import GraphModule

from .program import Signature, Slot
from .trace import copy_graph, nodes_of


def with_delta_outputs(graph: GraphModule, signature: Signature, layer_table) -> tuple[GraphModule, Signature]:
    """A copy of a gradient-family training graph with one more output per hidden parametric layer: its delta
    (Slot('delta', layer)). The top layer is left out: every gradient rule gives it the task loss's own error."""
    graph, signature = copy_graph(graph), copy.deepcopy(signature)
    output = next(n for n in graph.graph.nodes if n.op == "output")
    values = list(output.args[0])
    for info in layer_table[:-1]:
        found = nodes_of(graph, info.name, "grad_weight")
        if len(found) != 1:
            continue      # a layer without one grad_weight node (shared or untrained) has no single delta
        values.append(found[0].args[0])
        signature.outputs.append(Slot("delta", info.name))
    output.args = (tuple(values),)
    graph.recompile()
    return graph, signature
