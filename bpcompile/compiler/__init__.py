"""Compile a spec into a training program, stage by stage, with checks between the stages:

    check    spec -> network (nn.build) and the rule of every layer (check.py)
    trace    joint fwd+bwd FX graph and the eval graph (trace.py)
    rules    the gradient rules rewrite the training graph, or a whole-program rule (target propagation)
             builds its own; rules may add graphs (weight mirror's mirror program)
    lower    every graph of the program, with one `prefer` (lower.py)
    -> Program (what the runtime executes)

After trace and rules every graph passes graph.lint(), matches its signature and has its input-gradient
nodes tagged; after lowering no custom op with an implementation is left (graph_checks.py)."""

import copy

import torch

from .check import check_spec, input_spec
from .deltas import with_delta_outputs
from .graph_checks import check_lowered, check_signature, check_tagged
from .lower import lower
from .precision import trace_context
from .program import Program, Rewrite, Signature, Slot
from .rules import apply_rules, pass_for, program_pass
from .rules.base import RewriteContext
from .trace import copy_graph, trace_eval_graph, trace_training_graph

__all__ = ["Program", "Rewrite", "Signature", "Slot", "check_spec", "compile_experiment", "input_spec"]


def _check_graphs(graphs: dict, stage: str) -> None:
    for name, (graph, signature) in graphs.items():
        check_signature(graph, signature, name, stage)
        check_tagged(graph, name, stage)


def compile_experiment(spec, device: torch.device | str = "cpu", prefer: tuple[str, ...] | None = None) -> Program:
    """prefer: implementation order for lowering, e.g. ('triton', 'reference'); default: by device."""
    device = torch.device(device)
    train = spec.train
    network, assigned, _ = check_spec(spec, device)
    network.to(device)
    with trace_context(train.precision, device):
        train_graph, train_sig = trace_training_graph(network, spec.loss, train.channels_last)
        eval_graph, eval_sig = trace_eval_graph(network, train.channels_last)
    _check_graphs({"train": (train_graph, train_sig), "eval": (eval_graph, eval_sig)}, "trace")
    # the untouched BP program: the reference the alignment metrics compare the rule's updates with
    probe_graph, probe_sig = copy_graph(train_graph), copy.deepcopy(train_sig)
    ctx = RewriteContext(graph=train_graph, signature=train_sig, network=network, spec=spec)
    whole = program_pass(spec)
    fields = {}
    if whole is not None:
        # a whole-program rule (target propagation) emits its own program instead of rewriting BP's
        built = whole.build(ctx)
        train_graph, train_sig = built.pop("graph"), built.pop("signature")
        fields = built          # phases, schedule, alternation, noise shapes, loss reduction
        passes = [whole]
    else:
        apply_rules(ctx, assigned)
        # the metrics' copies of the rule's and BP's graphs that also return every hidden layer's delta
        fields["rule_probe_graph"], fields["rule_probe_signature"] = with_delta_outputs(
            train_graph, train_sig, network.layer_table)
        probe_graph, probe_sig = with_delta_outputs(probe_graph, probe_sig, network.layer_table)
        passes = [pass_for(rule) for rule in {r.model_dump_json(): r for r in assigned.values()}.values()]
    graphs = {"train": (train_graph, train_sig), "eval": (eval_graph, eval_sig), "probe": (probe_graph, probe_sig)}
    graphs.update({f"phase {name}": phase for name, phase in fields.get("phases", {}).items()})
    if "rule_probe_graph" in fields:
        graphs["rule probe"] = (fields["rule_probe_graph"], fields["rule_probe_signature"])
    graphs.update({f"rule graph {name}": extra for name, extra in ctx.extra_graphs.items()})
    _check_graphs(graphs, "the rule passes")
    for name, (graph, _) in graphs.items():
        lower(graph, device, prefer)
        check_lowered(graph, name)
    return Program(
        train_graph=train_graph, train_signature=train_sig, eval_graph=eval_graph, eval_signature=eval_sig,
        network=network, layer_rules={k: v.name for k, v in assigned.items()}, rule_name=spec.rule.name,
        state=ctx.state, rewrites=ctx.rewrites, device=device, hooks=ctx.hooks, extra_graphs=ctx.extra_graphs,
        probe_graph=probe_graph, probe_signature=probe_sig, decay_exempt=ctx.decay_exempt,
        kept_outputs=tuple(dict.fromkeys(kind for p in passes for kind in p.kept_outputs)),
        loss_outputs=("loss", *dict.fromkeys(kind for p in passes for kind in p.loss_outputs)),
        backend=train.backend, **fields,
    )
