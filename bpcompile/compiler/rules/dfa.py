"""Direct feedback alignment (Nokland 2016): the output error e = dL/da_L
reaches every hidden layer through its own fixed random matrix.

Each used grad_input node (the error a layer sends down to its input) is
replaced by `direct_feedback(e, B, input shape)` = e @ B, with B of shape
(classes, input features): delta_l = (B e) * f'(a_l) once the activation's
backward applies f'. In a plain chain no error computed by a layer above
reaches a layer below any more; in a ResNet the shortcuts still add the block
output's error to the block input's (the sum's backward is left as traced).
The state tensor '<layer>.feedback' is the B that delivers e to <layer>'s input.

B's default law is Nokland's: U(-1/sqrt(F), 1/sqrt(F)) with F the number of
input features the error lands on (anokland/dfa-torch, Models/ErrorFeedback.lua:
`self.mag = 1/math.sqrt(self.feedback:size(2))`, the hidden size); TinyDFA
(lightonai) draws U(-1, 1) and divides the projection by sqrt(F), the same law.
rule.feedback_init replaces it with an init scheme over (classes, F) with
fan_in = classes, fan_out = F (glorot_uniform is BioTorch's dense DFA law)."""

import math

import torch

from ...nn.init import init_tensor
from ...optim import build_optimizer
from ..program import META_LAYER, META_ROLE, Slot
from ..trace import nodes_of
from .base import RuleHooks, RulePass, ScheduledOptimizer
from .fa import FEEDBACK_STREAM
from .kolen_pollack import decay_factor


def output_error(ctx) -> torch.fx.Node:
    """e: the error at the top layer's pre-activation, i.e. the first argument of its grad_weight node."""
    top = ctx.network.layer_table[-1]
    (node,) = nodes_of(ctx.graph, top.name, "grad_weight")
    return node.args[0]


class DirectFeedbackAlignment(RulePass):
    name = "dfa"

    def rewrite(self, ctx, layers) -> None:
        self.add_direct_feedback(ctx, layers)

    def add_direct_feedback(self, ctx, layers) -> dict:
        """Replace each used grad_input node by e @ B; returns {layer: (B, its placeholder)}."""
        created = {}
        error = output_error(ctx)
        classes = ctx.network.output_shape[0]
        scheme = getattr(self.spec, "feedback_init", None)
        generator = ctx.generator(FEEDBACK_STREAM)
        for info in layers:
            features = math.prod(info.in_shape)
            device = dict(ctx.network.named_parameters())[info.weight].device
            feedback = torch.empty(classes, features)
            if scheme is None:     # Nokland's U(-1/sqrt(F), 1/sqrt(F))
                bound = 1.0 / math.sqrt(features)
                feedback.uniform_(-bound, bound, generator=generator)
            else:
                init_tensor(feedback, scheme, classes, features, generator)
            feedback = feedback.to(device)
            targets = nodes_of(ctx.graph, info.name, "grad_input")
            if not targets:
                continue
            name = f"{info.name}.feedback"
            placeholder = ctx.add_state(name, feedback)
            for node in targets:
                feedback_node = ctx.cast_like(placeholder, error, node)     # bf16 graphs: B in e's dtype
                with ctx.graph.graph.inserting_before(node):
                    direct = ctx.graph.graph.call_function(
                        torch.ops.bpcompile.direct_feedback.default, (error, feedback_node, list(info.in_shape)))
                direct.meta[META_LAYER], direct.meta[META_ROLE] = info.name, "direct_feedback"
                node.replace_all_uses_with(direct)
                ctx.graph.graph.erase_node(node)
                ctx.record(self.name, info.name, direct,
                           f"replaces {info.name}'s grad_input: the output error e @ {name} (B, {classes}x{features}) "
                           f"lands on {info.name}'s input; W is not read")
            created[info.name] = (feedback, placeholder)
        return created


class DirectKolenPollack(DirectFeedbackAlignment):
    """Direct Kolen-Pollack (Webster et al., "Learning the connections in direct feedback alignment"; code
    webstah/dkp-gist): B_l, standing where a direct readout from layer l's input to the output would be, gets
    that readout's gradient e^T h_l (the layer's dense_grad_weight op on (e, flattened input), a new graph
    output), stepped by an optimiser of the forward optimiser's kind and settings whose learning rate follows
    the forward schedule (rule.feedback_schedule), then decayed as Kolen-Pollack decays (rule.decay)."""

    name = "direct_kolen_pollack"

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
