"""Checks between compiler stages (after torch.fx's passes/infra: a pass that breaks an invariant is
caught where it ran, not later as a wrong number). Each raises CompilerInvariantError naming the graph,
the stage and what broke; they are cheap (one walk over the nodes) and always on."""

from torch.fx import GraphModule

from ..errors import BpcompileError
from ..nn.ops import implementations, role_of
from .program import META_LAYER, META_ROLE, Signature


class CompilerInvariantError(BpcompileError):
    """A compiler stage (or a rule pass) left a graph in a state the next stage cannot take: a bug."""


def _fail(graph_name: str, stage: str, what: str):
    raise CompilerInvariantError(f"after {stage}, graph {graph_name!r}: {what}. This is a bug in bpcompile or in "
                                 f"the rule pass that ran before; please report it with the spec.")


def check_signature(graph: GraphModule, signature: Signature, graph_name: str, stage: str) -> None:
    """graph.lint() passes, and the signature describes the graph's inputs and outputs one to one."""
    try:
        graph.graph.lint()
    except Exception as error:       # lint raises RuntimeError or AssertionError, with the node
        _fail(graph_name, stage, f"torch.fx lint failed: {error}")
    inputs = [n for n in graph.graph.nodes if n.op == "placeholder"]
    if len(inputs) != len(signature.inputs):
        _fail(graph_name, stage, f"{len(inputs)} placeholders but {len(signature.inputs)} input slots")
    output = next((n for n in graph.graph.nodes if n.op == "output"), None)
    values = output.args[0] if output is not None else ()
    count = len(values) if isinstance(values, (tuple, list)) else 1
    if count != len(signature.outputs):
        _fail(graph_name, stage, f"{count} outputs but {len(signature.outputs)} output slots")


def check_tagged(graph: GraphModule, graph_name: str, stage: str) -> None:
    """Every input-gradient node carries its layer and role (rule passes find the nodes they rewrite by them)."""
    for node in graph.graph.nodes:
        found = role_of(node.target) if node.op == "call_function" else None
        if found is not None and found[1] == "grad_input" and not (node.meta.get(META_LAYER) and node.meta.get(META_ROLE)):
            _fail(graph_name, stage, f"the input-gradient node {node.name!r} has no layer tag")


def check_lowered(graph: GraphModule, graph_name: str, stage: str = "lowering") -> None:
    """No bpcompile custom op that has implementations is left for the dispatcher."""
    for node in graph.graph.nodes:
        if (node.op == "call_function" and getattr(node.target, "namespace", None) == "bpcompile"
                and implementations(node.target)):
            _fail(graph_name, stage, f"node {node.name!r} still calls the custom op {node.target} (not lowered)")
