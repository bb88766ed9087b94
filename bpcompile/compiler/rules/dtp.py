"""Difference target propagation (DTP; Lee et al. 2015): TP's first target, and targets corrected by
the inverse's error on the activity itself:  target_{l-1} = h_{l-1} + g_l(target_l) - g_l(h_l);
noise-preserving inverse loss ||g_l(f_l(h~)) - h~||^2."""

from ...spec import DTP
from .registry import register_rule
from .target_propagation import TargetPropagation, TargetPropagationStep


class DifferenceTargetPropagationStep(TargetPropagationStep):
    first_target_needs_grad = True

    def first_target(self, v, hs, logits, y, loss, top_input):
        return self.gradient_step_target(hs, logits, loss, top_input)

    def propagate(self, v, j, target_above, hs):
        return self.difference_correction(v, j, target_above, hs)

    def inverse_reference(self, noisy, clean):
        return noisy


@register_rule(DTP, family="target_propagation")
class DifferenceTargetPropagation(TargetPropagation):
    step_class = DifferenceTargetPropagationStep
