"""Compile a spec into a training program: build, trace, rewrite, lower.

    spec -> network (nn.build) -> joint fwd+bwd FX graph (trace) -> rule passes
         -> lowering -> Program (what the runtime executes)
"""

import copy

import torch

from .check import check_spec, input_spec
from .deltas import with_delta_outputs
from .lower import lower
from .precision import trace_context
from .program import Program, Rewrite, Signature, Slot
from ..spec import TARGET_PROPAGATION_RULES
from .rules import apply_rules
from .rules.base import RewriteContext
from .rules.target_propagation import compile_target_propagation
from .trace import trace_eval_graph, trace_training_graph

__all__ = ["Program", "Rewrite", "Signature", "Slot", "check_spec", "compile_experiment", "input_spec"]


def compile_experiment(spec, device: torch.device | str = "cpu", prefer: tuple[str, ...] | None = None) -> Program:
    """prefer: implementation order for lowering, e.g. ('triton', 'reference'); default: by device."""
    device = torch.device(device)
    train = spec.train
    target_propagation = spec.rule.name in TARGET_PROPAGATION_RULES
    network, assigned, _ = check_spec(spec, device)
    network.to(device)
    with trace_context(train.precision, device):
        train_graph, train_sig = trace_training_graph(network, spec.loss, train.channels_last)
        eval_graph, eval_sig = trace_eval_graph(network, train.channels_last)
    # the untouched BP program: the reference the alignment metrics compare the rule's updates with
    probe_graph, probe_sig = copy.deepcopy(train_graph), copy.deepcopy(train_sig)
    ctx = RewriteContext(graph=train_graph, signature=train_sig, network=network, spec=spec)
    tp_fields = {}
    if target_propagation:
        # target propagation emits its own program (targets, inverses, local losses) instead of rewriting BP's
        built = compile_target_propagation(ctx)
        train_graph, train_sig = built.pop("graph"), built.pop("signature")
        tp_fields = built          # phases, schedule, alternation, noise shapes, loss reduction
    else:
        apply_rules(ctx, assigned)
        # the metrics' copies of the rule's and BP's graphs that also return every hidden layer's delta
        tp_fields["rule_probe_graph"], tp_fields["rule_probe_signature"] = with_delta_outputs(
            train_graph, train_sig, network.layer_table)
        probe_graph, probe_sig = with_delta_outputs(probe_graph, probe_sig, network.layer_table)
    graphs = [train_graph, eval_graph, probe_graph] + [g for g, _ in tp_fields.get("phases", {}).values()]
    if "rule_probe_graph" in tp_fields:
        graphs.append(tp_fields["rule_probe_graph"])
    for graph in graphs:
        lower(graph, device, prefer)
    return Program(
        train_graph=train_graph, train_signature=train_sig, eval_graph=eval_graph, eval_signature=eval_sig,
        network=network, layer_rules={k: v.name for k, v in assigned.items()}, rule_name=spec.rule.name,
        state=ctx.state, rewrites=ctx.rewrites, device=device, hooks=ctx.hooks, extra_graphs=ctx.extra_graphs,
        probe_graph=probe_graph, probe_signature=probe_sig, decay_exempt=ctx.decay_exempt, **tp_fields,
    )
