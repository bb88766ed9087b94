"""Kolen-Pollack (Akrout et al. 2019): learn with FA through B, and give B
the same update as W, and the same weight decay.

The graph rewrite is FA's. The hook adds the forward optimiser's actual update
U = W_after - W_before to B (B has W's layout, so this is the transposed update
of the paper; see PairedUpdate for how without copying W), then
decays both by the same factor, so whatever the optimiser (SGD, Adam, ...)
W - B shrinks by that factor every step:
  decay='per_step':  (1 - lambda)             Akrout et al.'s Delta W = -eta grad - lambda W
  decay='lr_scaled': (1 - lr_t * lambda)      lr_t the forward optimiser's scheduled lr now, so the decay
                                              shrinks with the schedule as an L2 term's does under BP
The layers' W are exempt from the optimiser's L2 term (this decay replaces it); their biases, batch norm
and the other rules' layers keep it, as under every other rule."""

import torch

from ...spec import KolenPollack as KolenPollackSpec
from .base import RuleHooks, RulePass, forward_lr
from .fa import add_feedback_tensors, weight_elements
from .registry import register_rule


@register_rule(KolenPollackSpec)
class KolenPollack(RulePass):
    def state_elements(self, network, layers) -> int:
        return weight_elements(network, layers)

    def rewrite(self, ctx, layers) -> None:
        feedback = add_feedback_tensors(ctx, self.name, self.spec, layers)
        params = dict(ctx.network.named_parameters())
        pairs = [(info.name, params[info.weight], feedback.get(info.name)) for info in layers]
        ctx.decay_exempt.update(info.weight for info in layers)
        ctx.hooks.append(PairedUpdate(pairs, self.spec.weight_decay, getattr(self.spec, "decay", "per_step")))


def decay_factor(weight_decay: float, mode: str, run) -> float:
    """The factor W and B are multiplied by after a step."""
    if mode == "lr_scaled":
        lr = forward_lr(run)
        return 1.0 - weight_decay * (lr if lr is not None else 1.0)
    return 1.0 - weight_decay


class PairedUpdate(RuleHooks):
    """B gets W's update without a copy of W: just before the optimiser steps, B holds B - W (the graph has
    read B by then); after it, B - W + W_new is B plus the update. With decay factor f:
    W <- f W_new, B <- f (B - W) + W."""

    def __init__(self, pairs, weight_decay: float, mode: str = "per_step"):
        self.pairs = pairs            # (layer, W, B or None: the first layer has no B but still decays)
        self.weight_decay, self.mode = weight_decay, mode

    @torch.no_grad()
    def before_update(self, run) -> None:
        for _, w, b in self.pairs:
            if b is not None:
                b.sub_(w)

    @torch.no_grad()
    def after_step(self, run) -> None:
        factor = decay_factor(self.weight_decay, self.mode, run)
        for _, w, b in self.pairs:
            if factor != 1.0:
                w.mul_(factor)
            if b is not None:
                torch.add(w, b, alpha=factor, out=b)      # b = W + f (B - W_old), one pass

    def feedback_tensors(self) -> dict:
        return {name: b for name, _, b in self.pairs if b is not None}
