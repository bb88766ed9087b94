"""Feedback alignment: each layer's input-gradient node reads a fixed random
feedback tensor B (same layout as W) instead of W.

delta_{l-1} = (B_l delta_l) * f'(a_l-1): the activation derivative and the
weight gradient are left as traced, only the weight argument of grad_input
changes. B_l is drawn by the law W_l was drawn by (the layer's init, network.init or a
macro's head_init), or by rule.feedback_init, from its own seeded stream."""

import math

from ...spec import FA
from ..trace import nodes_of
from .base import RuleHooks, RulePass
from .registry import register_rule


def add_feedback_tensors(ctx, rule_name: str, spec, layers) -> dict:
    """Give every layer whose input gradient is used a feedback tensor B (W's layout) and retarget its
    grad_input nodes to it; returns {layer name: B}. Shared by FA, weight mirror and Kolen-Pollack."""
    generator = ctx.generator("feedback", "init")   # one stream for every rule with B: the same seed, the same B
    created = {}
    for info in layers:
        # B is drawn by the law W was drawn by (Lillicrap et al., BioTorch, Akrout et al.'s code), unless given
        scheme = getattr(spec, "feedback_init", None) or info.init or ctx.spec.network.init
        # every layer draws B (so a layer's B does not depend on which others use feedback) ...
        feedback = ctx.init_like_weight(info, scheme, generator)
        targets = nodes_of(ctx.graph, info.name, "grad_input")
        if not targets:
            continue  # ... but only layers whose input gradient is used (not the first) keep it
        name = f"{info.name}.feedback"
        placeholder = ctx.add_state(name, feedback)
        for node in targets:
            ctx.retarget_weight(rule_name, info, node, placeholder, f"{name} (B)")
        created[info.name] = feedback
    return created


def weight_elements(network, layers) -> int:
    """Elements of one W-shaped tensor per layer (a B per layer, for the size budget)."""
    return sum(math.prod(network.get_parameter(info.weight).shape) for info in layers)


@register_rule(FA)
class FeedbackAlignment(RulePass):
    def state_elements(self, network, layers) -> int:
        return weight_elements(network, layers)

    def rewrite(self, ctx, layers) -> None:
        feedback = add_feedback_tensors(ctx, self.name, self.spec, layers)
        ctx.hooks.append(FixedFeedback(feedback))


class FixedFeedback(RuleHooks):
    """FA's only hook: report B for the alignment metrics."""

    def __init__(self, feedback: dict):
        self.feedback = feedback

    def feedback_tensors(self) -> dict:
        return self.feedback
