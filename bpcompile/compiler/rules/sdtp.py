"""Simplified difference target propagation (SDTP; Bartunov et al. 2018, Algorithm 1): no gradient at
all. g_L exists too and carries the one-hot label down:
    target_{L-1} = h_{L-1} - g_L(h_L) + g_L(one-hot y);   then DTP's difference correction;
denoising inverse loss ||g_l(f_l(h~)) - h_{l-1}||^2."""

from ...spec import SDTP
from .registry import register_rule
from .target_propagation import TargetPropagation, TargetPropagationStep


class SimplifiedDifferenceTargetPropagationStep(TargetPropagationStep):
    inverts_top = True

    def first_target(self, v, hs, logits, y, loss, top_input):
        return self.label_target(v, hs, y)

    def propagate(self, v, j, target_above, hs):
        return self.difference_correction(v, j, target_above, hs)

    def inverse_reference(self, noisy, clean):
        return clean


@register_rule(SDTP, family="target_propagation")
class SimplifiedDifferenceTargetPropagation(TargetPropagation):
    step_class = SimplifiedDifferenceTargetPropagationStep
