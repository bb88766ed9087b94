"""Feedback alignment: each layer's input-gradient node reads a fixed random
feedback tensor B (same layout as W) instead of W.

delta_{l-1} = (B_l delta_l) * f'(a_{l-1}): the activation derivative and the
weight gradient are left as traced, only the weight argument of grad_input
changes. B_l is initialised like W_l (rule.feedback_init, default
network.init) from its own seeded stream."""

from ...nn.ops import WEIGHT_ARG
from ..trace import nodes_of

FEEDBACK_STREAM = 1


class FeedbackAlignment:
    name = "fa"

    def __init__(self, spec):
        self.spec = spec

    def rewrite(self, ctx, layers) -> None:
        scheme = getattr(self.spec, "feedback_init", None) or ctx.spec.network.init
        generator = ctx.generator(FEEDBACK_STREAM)
        for info in layers:
            # every layer draws B (so a layer's B does not depend on which others are FA) ...
            feedback = ctx.init_like_weight(info, scheme, generator)
            targets = nodes_of(ctx.graph, info.name, "grad_input")
            if not targets:
                continue  # ... but only layers whose input gradient is used (not the first) keep it
            name = f"{info.name}.feedback"
            placeholder = ctx.add_state(name, feedback)
            for node in targets:
                args = list(node.args)
                args[WEIGHT_ARG] = placeholder
                node.args = tuple(args)
                ctx.record(self.name, info.name, node, f"reads {name} (B) instead of {info.weight} (W)")
