"""Trace the network into FX graphs with make_fx (public APIs only).

The training graph is the joint forward + backward of one step: make_fx over
a function that calls the network functionally and then
`torch.autograd.grad`, so every backward op is a graph node. With
tracing_mode='symbolic' the graph serves any batch size. Each node of a
parametric op family is tagged with its layer and role.
"""

import torch
from torch.fx import GraphModule
from torch.func import functional_call

from ..nn.losses import task_loss
from ..nn.ops import WEIGHT_ARG, role_of
from .graph_cache import network_facts, traced
from .precision import to_channels_last
from .program import META_LAYER, META_OP, META_ROLE, Signature, Slot


def trace_batch_size(network, extra=()) -> int:
    """A batch size for tracing that equals no other input dimension (of the network or of the
    `extra` tensors a rule adds): symbolic tracing gives equal input sizes one symbol ("duck
    sizing"), which would tie the batch to, say, a 7x7 feature map."""
    dims = set(network.input_shape)
    for tensor in list(network.parameters()) + list(network.buffers()) + list(extra):
        dims.update(tensor.shape)
    candidate = 5
    while candidate in dims:
        candidate += 1
    return candidate


def _example_inputs(network, params, buffers, with_target: bool):
    batch = trace_batch_size(network)
    device = params[0].device if params else torch.device("cpu")
    x = torch.zeros(batch, *network.input_shape, device=device)
    example = [p.detach().requires_grad_(True) for p in params] + [b.detach() for b in buffers] + [x]
    if with_target:
        example.append(torch.zeros(batch, dtype=torch.long, device=device))
    return example


def _flat_state(network):
    """Parameter and buffer names and tensors, and a function that maps flat graph inputs back to a state dict."""
    names = [n for n, _ in network.named_parameters()]
    buffer_names = [n for n, _ in network.named_buffers()]
    params = [p for _, p in network.named_parameters()]
    buffers = [b for _, b in network.named_buffers()]

    def unflatten(flat):
        return dict(zip(names + buffer_names, flat[: len(names) + len(buffer_names)]))

    return names, buffer_names, params, buffers, unflatten


def trace_training_graph(network, loss_name: str, channels_last: bool = False) -> tuple[GraphModule, Signature]:
    """Joint forward + backward of one BP step: (params, buffers, x, y) -> (loss, logits, grads).
    channels_last: the image batch is made NHWC at the top of the graph."""
    names, buffer_names, params, buffers, unflatten = _flat_state(network)

    def step(*flat):
        state = unflatten(flat)
        p = {n: state[n] for n in names}
        x, y = flat[-2], flat[-1]
        if channels_last:
            x = to_channels_last(x)
        logits = functional_call(network, state, (x,))
        loss = task_loss(loss_name, logits, y)
        grads = torch.autograd.grad(loss, list(p.values()))
        return (loss.detach(), logits.detach(), *grads)

    network.train()
    key = {"what": "train", "network": network_facts(network), "loss": loss_name, "channels_last": channels_last}
    graph, _ = traced(step, _example_inputs(network, params, buffers, True), key)
    signature = Signature(
        inputs=[Slot("param", n) for n in names] + [Slot("buffer", n) for n in buffer_names]
        + [Slot("input", "x"), Slot("target", "y")],
        outputs=[Slot("loss", "loss"), Slot("logits", "logits")] + [Slot("grad", n) for n in names],
    )
    _name_placeholders(graph, signature)
    cleanup(graph)
    tag_layers(graph, signature, network)
    return graph, signature


def trace_eval_graph(network, channels_last: bool = False) -> tuple[GraphModule, Signature]:
    """Forward pass in evaluation mode: (params, buffers, x) -> logits."""
    names, buffer_names, params, buffers, unflatten = _flat_state(network)

    def forward(*flat):
        x = to_channels_last(flat[-1]) if channels_last else flat[-1]
        return (functional_call(network, unflatten(flat), (x,)),)

    network.eval()
    with torch.no_grad():
        example = [t.detach() for t in _example_inputs(network, params, buffers, False)]
        key = {"what": "eval", "network": network_facts(network), "channels_last": channels_last}
        graph, _ = traced(forward, example, key)
    network.train()
    signature = Signature(
        inputs=[Slot("param", n) for n in names] + [Slot("buffer", n) for n in buffer_names] + [Slot("input", "x")],
        outputs=[Slot("logits", "logits")],
    )
    _name_placeholders(graph, signature)
    cleanup(graph)
    tag_layers(graph, signature, network)
    return graph, signature


def _name_placeholders(graph: GraphModule, signature: Signature) -> None:
    """Placeholders named after what they hold (fc1_weight, x, y) so dumps read well."""
    placeholders = [n for n in graph.graph.nodes if n.op == "placeholder"]
    for node, slot in zip(placeholders, signature.inputs):
        node.target = node.name = slot.name.replace(".", "_")
    graph.recompile()


def cleanup(graph: GraphModule) -> None:
    """Drop detach nodes (identities for values) and dead code."""
    for node in list(graph.graph.nodes):
        if node.op == "call_function" and node.target is torch.ops.aten.detach.default:
            node.replace_all_uses_with(node.args[0])
            graph.graph.erase_node(node)
    graph.graph.eliminate_dead_code()
    graph.recompile()


def copy_graph(graph: GraphModule) -> GraphModule:
    """A copy of `graph` to rewrite on its own: new nodes (same names, targets and arguments) with copies of
    their meta dicts. The meta values (the traced fake tensors) are shared, not deep-copied: copy.deepcopy of
    a ResNet-50 graph spends seconds copying symbolic shapes that no pass changes."""
    new = torch.fx.Graph()
    values = {}
    result = new.graph_copy(graph.graph, values)
    old_output = next(n for n in graph.graph.nodes if n.op == "output")
    new.output(result).meta = dict(old_output.meta)
    return GraphModule(graph, new)


def select_outputs(graph: GraphModule, signature: Signature, drop_kinds) -> tuple[GraphModule, Signature]:
    """A copy of the graph without the outputs of `drop_kinds` and what only they needed (dead code); the
    inputs stay. The graph a phase would trace on its own, without tracing it again."""
    graph = copy_graph(graph)
    output = next(n for n in graph.graph.nodes if n.op == "output")
    kept = [(slot, value) for slot, value in zip(signature.outputs, output.args[0]) if slot.kind not in drop_kinds]
    output.args = (tuple(value for _, value in kept),)
    graph.graph.eliminate_dead_code()
    graph.recompile()
    return graph, Signature(inputs=list(signature.inputs), outputs=[slot for slot, _ in kept])


def placeholders(graph: GraphModule, signature: Signature) -> dict[str, torch.fx.Node]:
    nodes = [n for n in graph.graph.nodes if n.op == "placeholder"]
    return {slot.name: node for slot, node in zip(signature.inputs, nodes)}


def through_casts(node):
    """The value under any dtype casts: bf16 graphs read each weight through a cast to bf16 and return each
    gradient through a cast to fp32."""
    while isinstance(node, torch.fx.Node) and node.target is torch.ops.aten._to_copy.default:
        node = node.args[0]
    return node


def tag_layers(graph: GraphModule, signature: Signature, network) -> None:
    """Tag each parametric op node with its layer and role (META_LAYER, META_ROLE, META_OP)."""
    weight_to_layer = {info.weight: info.name for info in network.layer_table}
    by_placeholder = {node: weight_to_layer.get(name) for name, node in placeholders(graph, signature).items()}
    output_node = next(n for n in graph.graph.nodes if n.op == "output")
    produces = {}
    for slot, value in zip(signature.outputs, output_node.args[0]):
        if slot.kind == "grad" and value is not None:
            produces[through_casts(value)] = weight_to_layer.get(slot.name)
    for node in graph.graph.nodes:
        found = role_of(node.target) if node.op == "call_function" else None
        if found is None:
            continue
        family, role = found
        layer = by_placeholder.get(through_casts(node.args[WEIGHT_ARG])) if role != "grad_weight" else produces.get(node)
        node.meta[META_LAYER] = layer
        node.meta[META_ROLE] = role
        node.meta[META_OP] = str(node.target)


def nodes_of(graph: GraphModule, layer: str, role: str) -> list[torch.fx.Node]:
    return [n for n in graph.graph.nodes if n.meta.get(META_LAYER) == layer and n.meta.get(META_ROLE) == role]


def add_input(graph: GraphModule, signature: Signature, slot: Slot) -> torch.fx.Node:
    """Append a placeholder (after the existing parameter/buffer/state inputs, before x and y)."""
    existing = [n for n in graph.graph.nodes if n.op == "placeholder"]
    first_data = next(i for i, s in enumerate(signature.inputs) if s.kind in ("input", "target"))
    with graph.graph.inserting_before(existing[first_data]):
        node = graph.graph.placeholder(slot.name.replace(".", "_"))
    signature.inputs.insert(first_data, slot)
    return node
