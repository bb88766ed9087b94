"""Target propagation (TP; Bengio 2014, Lee et al. 2015, as in Bartunov et al. 2018):
    target_{L-1} = h_{L-1} - alpha dl/dh_{L-1};   target_{l-1} = g_l(target_l)
and the inverses learn to reconstruct their noisy input: ||g_l(f_l(h~)) - h~||^2."""

from ...spec import TP
from .registry import register_rule
from .target_propagation import TargetPropagation, TargetPropagationStep


class TargetPropagationStepTP(TargetPropagationStep):
    first_target_needs_grad = True

    def first_target(self, v, hs, logits, y, loss, top_input):
        return self.gradient_step_target(hs, logits, loss, top_input)

    def propagate(self, v, j, target_above, hs):
        return self.g(v, j, target_above)

    def inverse_reference(self, noisy, clean):
        return noisy


@register_rule(TP, family="target_propagation")
class TargetPropagationTP(TargetPropagation):
    step_class = TargetPropagationStepTP
