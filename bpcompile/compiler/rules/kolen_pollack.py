"""Kolen-Pollack (Akrout et al. 2019): learn with FA through B, and give B
the same update as W, and the same weight decay.

The graph rewrite is FA's. The hook snapshots each W before the forward
optimiser steps and adds the optimiser's actual update U = W_after - W_before
to B (B has W's layout, so this is the transposed update of the paper), then
decays both by (1 - weight_decay). Whatever the optimiser (SGD, Adam, ...),
W - B therefore shrinks by (1 - weight_decay) every step."""

import torch

from .base import RuleHooks, RulePass
from .fa import add_feedback_tensors


class KolenPollack(RulePass):
    name = "kolen_pollack"

    def rewrite(self, ctx, layers) -> None:
        feedback = add_feedback_tensors(ctx, self.name, self.spec, layers)
        params = dict(ctx.network.named_parameters())
        pairs = [(info.name, params[info.weight], feedback.get(info.name)) for info in layers]
        ctx.hooks.append(PairedUpdate(pairs, self.spec.weight_decay))


class PairedUpdate(RuleHooks):
    def __init__(self, pairs, weight_decay: float):
        self.pairs = pairs            # (layer, W, B or None: the first layer has no B but still decays)
        self.weight_decay = weight_decay
        self.before = []

    def before_step(self, run) -> None:
        self.before = [w.detach().clone() for _, w, b in self.pairs if b is not None]

    @torch.no_grad()
    def after_step(self, run) -> None:
        olds = iter(self.before)
        for _, w, b in self.pairs:
            if b is not None:
                b.add_(w - next(olds))
                b.mul_(1.0 - self.weight_decay)
            w.mul_(1.0 - self.weight_decay)
        self.before = []

    def feedback_tensors(self) -> dict:
        return {name: b for name, _, b in self.pairs if b is not None}
