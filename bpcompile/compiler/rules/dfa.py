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
fan_in = classes, fan_out = F (glorot_uniform is BioTorch's dense DFA law).

rule.conv_feedback 'kernel' gives conv layers BioTorch's form instead
(jsalbert/biotorch, layers/dfa/conv.py): B is a (classes, C_in, k, k) kernel
and `direct_feedback_conv` convolves e, repeated over the layer's output
positions, back through it; B is drawn by glorot_uniform over that tensor
(torch's fans: C_in k^2 in, classes k^2 out), as BioTorch's xavier_uniform_."""

import math

import torch

from ...nn.init import init_tensor
from ...spec import DFA, GlorotUniform
from ..program import META_LAYER, META_ROLE
from ..trace import nodes_of
from .base import RulePass
from .registry import register_rule


def output_error(ctx) -> torch.fx.Node:
    """e: the error at the top layer's pre-activation, i.e. the first argument of its grad_weight node."""
    top = ctx.network.layer_table[-1]
    (node,) = nodes_of(ctx.graph, top.name, "grad_weight")
    return node.args[0]


@register_rule(DFA)
class DirectFeedbackAlignment(RulePass):
    def state_elements(self, network, layers) -> int:
        classes = network.output_shape[0]
        return sum(math.prod(feedback_shape(self.spec, info, classes)) for info in layers)

    def rewrite(self, ctx, layers) -> None:
        self.add_direct_feedback(ctx, layers)

    def add_direct_feedback(self, ctx, layers) -> dict:
        """Replace each used grad_input node by e @ B (or BioTorch's conv form); returns {layer: (B, its
        placeholder)}."""
        created = {}
        error = output_error(ctx)
        classes = ctx.network.output_shape[0]
        generator = ctx.generator("feedback", "init")    # FA's stream (fa.py)
        for info in layers:
            device = dict(ctx.network.named_parameters())[info.weight].device
            feedback = draw_feedback(self.spec, info, classes, generator).to(device)
            targets = nodes_of(ctx.graph, info.name, "grad_input")
            if not targets:
                continue
            name = f"{info.name}.feedback"
            placeholder = ctx.add_state(name, feedback)
            kernel_form = uses_kernel_form(self.spec, info)
            for node in targets:
                feedback_node = ctx.cast_like(placeholder, error, node)     # bf16 graphs: B in e's dtype
                with ctx.graph.graph.inserting_before(node):
                    if kernel_form:
                        direct = ctx.graph.graph.call_function(
                            torch.ops.bpcompile.direct_feedback_conv.default,
                            (error, feedback_node, list(info.in_shape), info.geometry["stride"],
                             info.geometry["padding"]))
                    else:
                        direct = ctx.graph.graph.call_function(
                            torch.ops.bpcompile.direct_feedback.default, (error, feedback_node, list(info.in_shape)))
                direct.meta[META_LAYER], direct.meta[META_ROLE] = info.name, "direct_feedback"
                node.replace_all_uses_with(direct)
                ctx.graph.graph.erase_node(node)
                how = ("e repeated over its output positions, convolved back through the kernel "
                       if kernel_form else "the output error e @ ")
                ctx.record(self.name, info.name, direct,
                           f"replaces {info.name}'s grad_input: {how}{name} (B, {'x'.join(map(str, feedback.shape))}) "
                           f"lands on {info.name}'s input; W is not read")
            created[info.name] = (feedback, placeholder)
        return created


def uses_kernel_form(spec, info) -> bool:
    return getattr(spec, "conv_feedback", "dense") == "kernel" and info.type == "conv2d"


def feedback_shape(spec, info, classes: int) -> tuple:
    if uses_kernel_form(spec, info):
        kernel = info.geometry["kernel"]
        return (classes, info.in_shape[0], kernel, kernel)
    return (classes, math.prod(info.in_shape))


def draw_feedback(spec, info, classes: int, generator: torch.Generator) -> torch.Tensor:
    """B of one layer by the rule's law (module docstring)."""
    shape = feedback_shape(spec, info, classes)
    feedback = torch.empty(shape)
    scheme = getattr(spec, "feedback_init", None)
    if len(shape) == 4:        # BioTorch's kernel: torch's fans of a (classes, C_in, k, k) tensor
        receptive = shape[2] * shape[3]
        init_tensor(feedback, scheme or GlorotUniform(), shape[1] * receptive,
                    shape[0] * receptive, generator)
    elif scheme is None:       # Nokland's U(-1/sqrt(F), 1/sqrt(F))
        bound = 1.0 / math.sqrt(shape[1])
        feedback.uniform_(-bound, bound, generator=generator)
    else:
        init_tensor(feedback, scheme, classes, shape[1], generator)
    return feedback
