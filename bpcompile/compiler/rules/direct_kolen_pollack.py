"""Direct Kolen-Pollack (Webster et al., "Learning the connections in direct feedback alignment"; code
webstah/dkp-gist): DFA's direct feedback B_l, learned. Reached through rule 'feedback' with
source='learned', learning='kolen_pollack', topology='direct' (rules/feedback.py)."""

import math

import torch

from ...optim import build_optimizer
from ..program import META_LAYER, META_ROLE, Slot
from ..trace import nodes_of
from .base import RuleHooks, ScheduledOptimizer
from .dfa import DirectFeedbackAlignment, output_error
from .kolen_pollack import decay_factor


class DirectKolenPollack(DirectFeedbackAlignment):
    """Direct Kolen-Pollack (Webster et al., "Learning the connections in direct feedback alignment"; code
    webstah/dkp-gist): B_l, standing where a direct readout from layer l's input to the output would be, gets
    that readout's gradient e^T h_l (the layer's dense_grad_weight op on (e, flattened input), a new graph
    output), stepped by an optimiser of the forward optimiser's kind and settings whose learning rate follows
    the forward schedule (rule.feedback_schedule), then decayed as Kolen-Pollack decays (rule.decay)."""

    name = "direct_kolen_pollack"    # a parts-only pass (no spec of its own): rewrites are recorded under this name

    def rewrite(self, ctx, layers) -> None:
        created = self.add_direct_feedback(ctx, layers)
        error = output_error(ctx)
        output = next(n for n in ctx.graph.graph.nodes if n.op == "output")
        values = list(output.args[0])
        for info in layers:
            if info.name not in created:
                continue
            (grad_weight,) = nodes_of(ctx.graph, info.name, "grad_weight")
            layer_input = grad_weight.args[1]
            with ctx.graph.graph.inserting_before(output):
                flat = ctx.graph.graph.call_function(torch.ops.aten.reshape.default,
                                                     (layer_input, [-1, math.prod(info.in_shape)]))
                update = ctx.graph.graph.call_function(torch.ops.bpcompile.dense_grad_weight.default, (error, flat))
            update.meta[META_LAYER], update.meta[META_ROLE] = info.name, "feedback_grad"
            ctx.record(self.name, info.name, update, f"e^T h: the gradient of {info.name}.feedback (Kolen-Pollack, direct)")
            values.append(update)
            ctx.signature.outputs.append(Slot("state_grad", f"{info.name}.feedback"))
        output.args = (tuple(values),)
        feedback = [b for b, _ in created.values()]
        # B has no L2 term of its own: the decay below is Kolen-Pollack's
        optimizer = build_optimizer(ctx.spec.optimizer.model_copy(update={"weight_decay": 0.0}), feedback)
        follow = getattr(self.spec, "feedback_schedule", "forward") == "forward"
        ctx.hooks.append(DirectPairedUpdate(ScheduledOptimizer(optimizer, follow), feedback, self.spec.weight_decay,
                                            getattr(self.spec, "decay", "per_step")))


class DirectPairedUpdate(RuleHooks):
    def __init__(self, optimizer, feedback, weight_decay: float, mode: str = "per_step"):
        self.optimizer, self.feedback, self.weight_decay, self.mode = optimizer, feedback, weight_decay, mode

    @torch.no_grad()
    def after_step(self, run) -> None:
        self.optimizer.step(run)            # the graph put each B's gradient in B.grad
        factor = decay_factor(self.weight_decay, self.mode, run)
        for b in self.feedback:
            b.mul_(factor)

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
