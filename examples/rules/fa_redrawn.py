"""Feedback alignment whose feedback is re-drawn every `every` steps (a rule no paper in our set has).

Is it the alignment of W with a fixed B that makes FA learn? With B re-drawn, W cannot align with it.
Until the first redraw the rule is FA exactly (B is drawn from FA's seed stream); each redraw fills
every B afresh by its initial law, from the rule's own stream. Load it with `--plugin`:

    bpcompile run examples/rules/fa_redrawn.json --plugin examples/rules/fa_redrawn.py
"""

from typing import Literal, Optional

import torch
from pydantic import Field

from bpcompile.rules import InitSpec, RuleHooks, RulePass, SpecModel, init_tensor, nodes_of, register_rule, seeded_generator


class FARedrawn(SpecModel):
    """FA with B re-drawn by its initial law every `every` steps."""

    name: Literal["fa_redrawn"] = "fa_redrawn"
    every: int = Field(100, ge=1, description="Steps between redraws of every B (after step every, 2 every, ...).")
    feedback_init: Optional[InitSpec] = Field(None, description="Law of B; default: the law W was drawn by.")


@register_rule(FARedrawn)
class FARedrawnPass(RulePass):
    def state_elements(self, network, layers) -> int:
        return sum(network.get_parameter(info.weight).numel() for info in layers)

    def rewrite(self, ctx, layers) -> None:
        generator = ctx.generator("feedback", "init")          # FA's stream: the first B is FA's B
        redraws = []
        for info in layers:
            law = self.spec.feedback_init or info.init or ctx.spec.network.init
            feedback = ctx.init_like_weight(info, law, generator)
            targets = nodes_of(ctx.graph, info.name, "grad_input")   # the first layer has none
            if not targets:
                continue
            placeholder = ctx.add_state(f"{info.name}.feedback", feedback)
            for node in targets:
                ctx.retarget_weight(self.name, info, node, placeholder, f"{info.name}.feedback (B, re-drawn)")
            redraws.append((info, law, feedback))
        ctx.hooks.append(Redraw(redraws, self.spec.every, seeded_generator(ctx.spec.train.seed, self.name, "redraw")))


class Redraw(RuleHooks):
    def __init__(self, redraws, every: int, generator: torch.Generator):
        self.redraws, self.every, self.generator, self.steps = redraws, every, generator, 0

    @torch.no_grad()
    def after_step(self, run) -> None:
        self.steps += 1
        if self.steps % self.every == 0:
            for info, law, feedback in self.redraws:    # drawn on the CPU (one stream whatever the device)
                fresh = init_tensor(torch.empty(feedback.shape), law, info.fan_in, info.fan_out, self.generator)
                feedback.copy_(fresh)

    def feedback_tensors(self) -> dict:
        return {info.name: feedback for info, _, feedback in self.redraws}

    def state_dict(self) -> dict:      # a resumed run redraws where the uninterrupted one would
        return {"steps": self.steps, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"]
        self.generator.set_state(state["generator"])
