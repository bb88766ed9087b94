"""Auxiliary-output SDTP (AO-SDTP; Bartunov et al. 2018, section 3.2): SDTP whose output activity is
widened with fixed random features of the penultimate layer, h_L = [s(o), z], z = W_aux h_{L-1} (or
tanh of it), and whose label target keeps them: target_L = [one-hot y, z]. g_L reads the widened h_L."""

import torch

from ...errors import BpcompileError
from ...nn.init import init_tensor
from ...nn.ops.maps import linear_map
from ...spec import AOSDTP
from .registry import register_rule
from .sdtp import SimplifiedDifferenceTargetPropagationStep
from .target_propagation import TargetPropagation, output_activity


class AuxiliaryOutputStep(SimplifiedDifferenceTargetPropagationStep):
    def __init__(self, rule, blocks, flatten_input, loss_name, network):
        super().__init__(rule, blocks, flatten_input, loss_name, network)
        self.aux = f"{blocks[-1].info.name}.aux_weight"

    def top_activity(self, v, logits, h_below):
        p = output_activity(self.loss_name, logits)
        z = linear_map(self.blocks[-1].info, h_below, v[self.aux], None)
        if self.rule.aux_activation == "tanh":
            z = torch.tanh(z)
        return torch.cat([p, z], dim=1), z

    def extra_top_units(self) -> int:
        return self.rule.aux_units

    def extra_state(self, ctx) -> dict:
        info = self.blocks[-1].info
        aux = torch.empty(self.rule.aux_units, info.in_shape[0])
        return {self.aux: init_tensor(aux, ctx.spec.network.init, info.fan_in, self.rule.aux_units,
                                      ctx.generator("ao_sdtp", "aux_init"))}

    @classmethod
    def check_blocks(cls, rule, blocks) -> None:
        if blocks[-1].info.type != "dense":
            raise BpcompileError(
                f"rule 'ao_sdtp' widens the output layer with auxiliary units, so the last parametric layer must be "
                f"dense; layer {blocks[-1].info.name!r} is {blocks[-1].info.type}."
            )

    @classmethod
    def extra_state_elements(cls, rule, network) -> int:
        # W_aux and its part of the top inverse
        return 2 * rule.aux_units * network.layer_table[-1].fan_in if network.layer_table else 0


@register_rule(AOSDTP, family="target_propagation")
class AuxiliaryOutputSDTP(TargetPropagation):
    step_class = AuxiliaryOutputStep
