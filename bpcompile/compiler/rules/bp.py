"""Backpropagation: the identity pass (the traced graph already is BP)."""

from ...spec import BP
from .base import RulePass
from .registry import register_rule


@register_rule(BP)
class Backprop(RulePass):
    def rewrite(self, ctx, layers) -> None:
        return None
