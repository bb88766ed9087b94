"""Sign symmetry: each layer's input gradient reads sign(W) instead of W.

The stand-in is a `sign_feedback(W, magnitude, scale)` node computed from
the current W inside the backward graph, so it never goes stale. Variants
(Liao et al. 2016, Xiao et al. 2018):
  sign: sign(W) * scale (scale default 1)
  usf:  sign(W) * scale, scale default sqrt(2 / fan_out) (Xiao et al.'s fixed scale)
  frsf: sign(W) * M * scale, M = |N(0, 1)| drawn once (a state tensor)
  brsf: sign(W) * M * scale, M = |N(0, 1)| redrawn before every batch (a hook)"""

import math

import torch

from ..program import META_LAYER, META_ROLE
from ..trace import nodes_of
from .base import RuleHooks, RulePass

MAGNITUDE_STREAM = 2


def default_scale(variant: str, info) -> float:
    return math.sqrt(2.0 / info.fan_out) if variant == "usf" else 1.0


class SignSymmetry(RulePass):
    name = "sign_symmetry"

    def __init__(self, spec):
        super().__init__(spec)
        self.variant = getattr(spec, "variant", "sign")

    def rewrite(self, ctx, layers) -> None:
        params = dict(ctx.network.named_parameters())
        generator = ctx.generator(MAGNITUDE_STREAM)
        hooks = SignHooks(self.variant, ctx.spec.train.seed)
        for info in layers:
            targets = nodes_of(ctx.graph, info.name, "grad_input")
            if not targets:
                continue
            scale = self.spec.scale if getattr(self.spec, "scale", None) else default_scale(self.variant, info)
            weight = params[info.weight]
            magnitude_node = None
            magnitude = None
            if self.variant in ("frsf", "brsf"):
                magnitude = torch.randn(weight.shape, generator=generator).abs_().to(weight.device)
                magnitude_node = ctx.add_state(f"{info.name}.magnitude", magnitude)
            hooks.layers.append((info.name, weight, magnitude, scale))
            weight_node = ctx.param_node(info.weight)
            for node in targets:
                with ctx.graph.graph.inserting_before(node):
                    sign = ctx.graph.graph.call_function(
                        torch.ops.bpcompile.sign_feedback.default, (weight_node, magnitude_node, float(scale)))
                sign.meta[META_LAYER], sign.meta[META_ROLE] = info.name, "sign_feedback"
                what = f"sign({info.weight})" + (f" * {info.name}.magnitude" if magnitude is not None else "") + \
                    (f" * {scale:.4g}" if scale != 1.0 else "")
                ctx.retarget_weight(self.name, info, node, sign, what)
        ctx.hooks.append(hooks)


class SignHooks(RuleHooks):
    """brSF redraws the magnitudes before every batch (from its own generator, checkpointed)."""

    def __init__(self, variant: str, seed: int):
        self.variant = variant
        self.layers = []          # (layer, W, magnitude or None, scale)
        self.generators = {}
        self.seed = seed

    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self.generators:
            self.generators[key] = torch.Generator(device=device).manual_seed(self.seed * 1_000_003 + 17)
        return self.generators[key]

    def before_step(self, run) -> None:
        if self.variant != "brsf":
            return
        for _, weight, magnitude, _ in self.layers:
            magnitude.normal_(generator=self._generator(magnitude.device)).abs_()

    def feedback_tensors(self) -> dict:
        out = {}
        for name, weight, magnitude, scale in self.layers:
            b = torch.sign(weight.detach())
            out[name] = (b * magnitude if magnitude is not None else b) * scale
        return out

    def state_dict(self) -> dict:
        return {key: g.get_state() for key, g in self.generators.items()}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            self._generator(torch.device(key)).set_state(value)
