"""Sign symmetry: each layer's input gradient reads sign(W), with magnitudes, instead of W.

The stand-in is a `sign_feedback(W, magnitude, scale)` node computed from the current W inside the backward
graph, so it never goes stale. Variants (Liao et al. 2016's names):
  sign, usf: sign(W) * s                 (uniform sign-concordant feedback; Xiao et al.'s "sign-symmetry")
  frsf:      sign(W) * M, M drawn once   (fixed random magnitudes, a state tensor)
  brsf:      sign(W) * M, M redrawn before every batch (a hook)
The per-layer scale s and the law of M follow `rule.magnitudes` (see `layer_scale` and `draw_magnitude`):
  xiao:     s = sqrt(2 / (k^2 C_out)) for conv and LC layers, 1 / sqrt(fan_in) for dense layers; M ~ |N(0, s^2)|
            (conv, LC) or U(0, s) (dense): willwx/sign-symmetry, modules/af_conv2d_module.py, af_linear_module.py
  biotorch: s = sqrt(2 / (fan_in + fan_out)), the Xavier std; M = |U(-a, a)|, a = sqrt(6 / (fan_in + fan_out)):
            jsalbert/biotorch, layers/fa_constructor/{linear,conv}.py
  unit:     s = 1, M ~ |N(0, 1)| (Liao et al.'s plain sign, meant for Batch Manhattan or batch norm)
rule.scale replaces s. rule.batch_manhattan replaces each of the rule's parameter updates by its element-wise
sign before the optimiser (Liao et al.; Xiao et al.'s optim/bm_nsc_sgd.py), a rewrite of the graph's outputs."""

import math

import torch

from ...spec import SignSymmetry as SignSymmetrySpec
from ..program import META_LAYER, META_ROLE
from ..streams import seeded_generator
from ..trace import nodes_of
from .base import RuleHooks, RulePass
from .fa import weight_elements
from .registry import register_rule


def layer_scale(magnitudes: str, info) -> float:
    """s, the scale of the layer's feedback under the `magnitudes` convention (fans in the conv convention)."""
    if magnitudes == "xiao":
        return 1.0 / math.sqrt(info.fan_in) if info.type == "dense" else math.sqrt(2.0 / info.fan_out)
    if magnitudes == "biotorch":
        return math.sqrt(2.0 / (info.fan_in + info.fan_out))
    return 1.0


def magnitude_law(magnitudes: str, info) -> str:
    """How M is drawn: 'half_normal' (|N(0, s^2)|), 'uniform' (U(0, s)) or 'abs_uniform' (|U(-sqrt(3) s, sqrt(3) s)|)."""
    if magnitudes == "xiao" and info.type == "dense":
        return "uniform"
    if magnitudes == "biotorch":
        return "abs_uniform"
    return "half_normal"


@torch.no_grad()
def draw_magnitude(tensor: torch.Tensor, law: str, scale: float, generator: torch.Generator) -> torch.Tensor:
    """Fill `tensor` in place with magnitudes M >= 0 of the given law and scale."""
    if law == "half_normal":
        return tensor.normal_(0.0, scale, generator=generator).abs_()
    if law == "uniform":
        return tensor.uniform_(0.0, scale, generator=generator)
    bound = math.sqrt(3.0) * scale          # U(-a, a) has std a / sqrt(3): the Xavier draw when s is its std
    return tensor.uniform_(-bound, bound, generator=generator).abs_()


@register_rule(SignSymmetrySpec)
class SignSymmetry(RulePass):
    def __init__(self, spec):
        # rule 'feedback' with source='sign' states the parts only: it gets sign symmetry's default options
        super().__init__(spec if spec.name == "sign_symmetry" else SignSymmetrySpec())

    def state_elements(self, network, layers) -> int:
        return weight_elements(network, layers)     # frSF's M (budgeted for every variant)

    def rewrite(self, ctx, layers) -> None:
        params = dict(ctx.network.named_parameters())
        generator = ctx.generator("sign_symmetry", "magnitudes")
        variant = self.spec.variant
        hooks = SignHooks(variant, ctx.spec.train.seed)
        for info in layers:
            if self.spec.batch_manhattan:
                batch_manhattan(ctx, self.name, info)
            targets = nodes_of(ctx.graph, info.name, "grad_input")
            if not targets:
                continue
            scale = self.spec.scale if self.spec.scale is not None else layer_scale(self.spec.magnitudes, info)
            weight = params[info.weight]
            magnitude_node = None
            magnitude = None
            law = magnitude_law(self.spec.magnitudes, info)
            if variant in ("frsf", "brsf"):
                magnitude = draw_magnitude(torch.empty(weight.shape), law, scale, generator).to(weight.device)
                magnitude_node = ctx.add_state(f"{info.name}.magnitude", magnitude)
            feedback_scale = 1.0 if magnitude is not None else scale     # M already carries s
            hooks.layers.append((info.name, weight, magnitude, feedback_scale, law, scale))
            weight_node = ctx.param_node(info.weight)
            for node in targets:
                with ctx.graph.graph.inserting_before(node):
                    sign = ctx.graph.graph.call_function(
                        torch.ops.bpcompile.sign_feedback.default, (weight_node, magnitude_node, float(feedback_scale)))
                sign.meta[META_LAYER], sign.meta[META_ROLE] = info.name, "sign_feedback"
                what = f"sign({info.weight})" + (f" * {info.name}.magnitude" if magnitude is not None else "") + \
                    (f" * {feedback_scale:.4g}" if feedback_scale != 1.0 else "")
                ctx.retarget_weight(self.name, info, node, sign, what)
        ctx.hooks.append(hooks)


def batch_manhattan(ctx, rule: str, info) -> None:
    """Replace the graph's update of the layer's weight and bias by its element-wise sign."""
    output = next(n for n in ctx.graph.graph.nodes if n.op == "output")
    values = list(output.args[0])
    for i, slot in enumerate(ctx.signature.outputs):
        if slot.kind != "grad" or slot.name not in (info.weight, info.bias) or values[i] is None:
            continue
        with ctx.graph.graph.inserting_before(output):
            values[i] = ctx.graph.graph.call_function(torch.ops.aten.sign.default, (values[i],))
        ctx.record(rule, info.name, values[i], f"Batch Manhattan: the update of {slot.name} is the sign of its gradient")
    output.args = (tuple(values),)


class SignHooks(RuleHooks):
    """brSF redraws the magnitudes before every batch (from its own generator, checkpointed)."""

    def __init__(self, variant: str, seed: int):
        self.variant = variant
        self.layers = []          # (layer, W, magnitude or None, scale of sign(W) [* M], law of M, scale of M)
        self.generators = {}
        self.seed = seed

    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self.generators:
            self.generators[key] = seeded_generator(self.seed, "sign_symmetry", "redraw", device)
        return self.generators[key]

    def before_step(self, run) -> None:
        if self.variant != "brsf":
            return
        for _, _, magnitude, _, law, scale in self.layers:
            draw_magnitude(magnitude, law, scale, self._generator(magnitude.device))

    def feedback_tensors(self) -> dict:
        out = {}
        for name, weight, magnitude, feedback_scale, _, _ in self.layers:
            b = torch.sign(weight.detach())
            out[name] = (b * magnitude if magnitude is not None else b) * feedback_scale
        return out

    def state_dict(self) -> dict:
        return {key: g.get_state() for key, g in self.generators.items()}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            self._generator(torch.device(key)).set_state(value)
