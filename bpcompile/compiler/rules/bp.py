"""Backpropagation: the identity pass (the traced graph already is BP)."""

from .base import RulePass


class Backprop(RulePass):
    name = "bp"

    def rewrite(self, ctx, layers) -> None:
        return None
