"""Human-readable dumps of a compiled program for `bpcompile inspect`.

The training graph is split into its forward part (what the loss and logits
depend on) and its backward part (the rest). Each custom-op node shows its
layer, role and implementation; nodes a rule pass changed are marked with
what changed."""

import torch
from torch.fx import Node

from .program import META_IMPL, META_LAYER, META_OP, META_REWRITE, META_ROLE, Program


def forward_nodes(program: Program) -> set[Node]:
    """Nodes the loss and logits outputs depend on."""
    graph = program.train_graph.graph
    output = next(n for n in graph.nodes if n.op == "output")
    sig = program.train_signature
    roots = [output.args[0][sig.output_index("loss")], output.args[0][sig.output_index("logits")]]
    seen, stack = set(), list(roots)
    while stack:
        node = stack.pop()
        if node in seen or not isinstance(node, Node):
            continue
        seen.add(node)
        stack.extend(node.all_input_nodes)
    return seen


def _target_name(node: Node) -> str:
    if META_OP in node.meta:
        return node.meta[META_OP].replace(".default", "")
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        return str(target).replace(".default", "")
    return getattr(target, "__name__", str(target))


def _arg(a) -> str:
    if isinstance(a, Node):
        return a.name
    if isinstance(a, (list, tuple)):
        return "[" + ", ".join(_arg(x) for x in a) + "]"
    return repr(a)


def _line(node: Node) -> str:
    args = [_arg(a) for a in node.args] + [f"{k}={_arg(v)}" for k, v in node.kwargs.items()]
    text = f"  {node.name} = {_target_name(node)}({', '.join(args)})"
    tags = []
    if META_LAYER in node.meta:
        tags.append(f"{node.meta[META_LAYER]} {node.meta[META_ROLE]}")
    if META_IMPL in node.meta:
        tags.append(f"impl={node.meta[META_IMPL]}")
    if tags:
        text += "    # " + ", ".join(tags)
    if META_REWRITE in node.meta:
        text += f"\n      ^ REWRITTEN by {node.meta[META_REWRITE]}"
    return text


def _inputs(program: Program) -> list[str]:
    lines = ["inputs:"]
    values = dict(program.network.named_parameters()) | dict(program.network.named_buffers()) | program.state
    placeholders = [n for n in program.train_graph.graph.nodes if n.op == "placeholder"]
    for slot, node in zip(program.train_signature.inputs, placeholders):
        shape = tuple(values[slot.name].shape) if slot.name in values else "(batch, ...)"
        note = "    # added by the rule pass" if slot.kind == "state" else ""
        lines.append(f"  {node.name}: {slot.kind} {slot.name} {shape}{note}")
    return lines


def _outputs(program: Program) -> list[str]:
    output = next(n for n in program.train_graph.graph.nodes if n.op == "output")
    return ["outputs:"] + [
        f"  {slot.kind} {slot.name} <- {_arg(value)}" for slot, value in zip(program.train_signature.outputs, output.args[0])
    ]


def dump_text(program: Program, stage: str = "all") -> str:
    forward = forward_nodes(program)
    body = [n for n in program.train_graph.graph.nodes if n.op not in ("placeholder", "output")]
    header = [
        f"# training program: rule {program.rule_name!r}, layers: "
        + ", ".join(f"{k}={v}" for k, v in program.layer_rules.items()),
        f"# {len(program.rewrites)} node(s) rewritten by the rule; device {program.device}",
    ]
    if program.backend != "fx":
        header.append(f"# backend {program.backend!r}: the runtime hands the step graph(s) below to torch.compile")
    if program.phases:
        turns = program.alternation
        block = f"blocks of {turns.block_batches} batches" if turns.block_batches else "the whole epoch"
        passes = {"inverse": turns.inverse_passes, "forward": turns.forward_passes}
        header.append(f"# schedule: alternating turns over {block}: " + ", then ".join(
            f"{passes[name]} pass(es) of the {name!r} part "
            f"({', '.join(sorted({s.kind for s in sig.outputs} - {'loss', 'logits'}))})"
            for name, (_, sig) in ((n, program.phases[n]) for n in program.schedule))
            + " of the program below")
    backward_title = "backward:"
    if any(s.kind == "target" for s in program.train_signature.outputs):
        backward_title = "backward (targets, inverse passes, local and inverse losses, updates):"
    out = header + [""] + _inputs(program) + [""]
    if stage in ("forward", "all"):
        out += ["forward:"] + [_line(n) for n in body if n in forward] + [""]
    if stage in ("backward", "all"):
        out += [backward_title] + [_line(n) for n in body if n not in forward] + [""]
    out += _outputs(program)
    if stage in ("backward", "all"):
        for name, (graph, signature) in program.extra_graphs.items():
            out += ["", f"{name} program (run by the rule's hooks, outside the training graph):", "inputs:"]
            placeholders = [n for n in graph.graph.nodes if n.op == "placeholder"]
            out += [f"  {node.name}: {slot.kind} {slot.name}" for slot, node in zip(signature.inputs, placeholders)]
            out += ["body:"] + [_line(n) for n in graph.graph.nodes if n.op not in ("placeholder", "output")]
            output = next(n for n in graph.graph.nodes if n.op == "output")
            out += ["outputs:"] + [f"  {slot.kind} {slot.name} <- {_arg(v)}" for slot, v in zip(signature.outputs, output.args[0])]
    return "\n".join(out) + "\n"


def dump_dot(program: Program, stage: str = "all") -> str:
    forward = forward_nodes(program)
    lines = ["digraph training_program {", "  rankdir=TB;", '  node [shape=box, fontname="monospace", fontsize=10];']
    keep = set()
    for node in program.train_graph.graph.nodes:
        in_stage = stage == "all" or (stage == "forward") == (node in forward) or node.op in ("placeholder", "output")
        if not in_stage:
            continue
        keep.add(node)
        colour = "lightgrey" if node.op == "placeholder" else ("lightblue" if node in forward else "moccasin")
        if node.op == "output":
            colour = "white"
        label = node.name if node.op in ("placeholder", "output") else f"{node.name}\\n{_target_name(node)}"
        if META_LAYER in node.meta:
            label += f"\\n[{node.meta[META_LAYER]} {node.meta[META_ROLE]}, {node.meta.get(META_IMPL, '')}]"
        extra = ""
        if META_REWRITE in node.meta:
            label += f"\\nREWRITTEN: {node.meta[META_REWRITE]}"
            colour, extra = "salmon", ", penwidth=2"
        lines.append(f'  "{node.name}" [label="{label}", style=filled, fillcolor={colour}{extra}];')
    for node in keep:
        for src in node.all_input_nodes:
            if src in keep:
                lines.append(f'  "{src.name}" -> "{node.name}";')
    lines.append("}")
    return "\n".join(lines) + "\n"
