"""Alignment metrics on a fixed probe batch, for every rule.

* update_angle: the angle (degrees) between the rule's update of a hidden
  layer's weight and the true BP gradient (the untouched BP graph, same
  parameters, same batch). 0 for BP; the top layer is left out (it learns
  from the task loss under every gradient rule).
* feedback_angle / feedback_norm_ratio: for layers whose feedback tensor has
  W's layout (FA, sign symmetry, weight mirror, Kolen-Pollack), the angle
  between W^T and B and ||B|| / ||W||.
* inverse_error: for target-propagation layers with a learned inverse g, the
  reconstruction error mean ||g(f(h)) - h||^2 per unit of h (no noise), where
  h is the layer's input activity."""

import math

import torch


def angle_degrees(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().flatten().double(), b.detach().flatten().double()
    denominator = a.norm() * b.norm()
    if denominator == 0:
        return float("nan")
    return math.degrees(math.acos(float((a @ b / denominator).clamp(-1.0, 1.0))))


class AlignmentProbe:
    def __init__(self, program, x: torch.Tensor, y: torch.Tensor):
        self.program, self.x, self.y = program, x, y

    def _outputs(self, graph, signature, kind: str) -> dict:
        with torch.no_grad():
            outputs = graph(*self.program.graph_inputs(signature, self.x, self.y))   # noise inputs: zeros
        return {s.name: outputs[i] for i, s in enumerate(signature.outputs) if s.kind == kind}

    def measure(self) -> dict:
        program = self.program
        # the training graphs update batch norm's running statistics in place: a probe must leave no trace
        buffers = [b for b in program.network.buffers()]
        saved = [b.clone() for b in buffers]
        rule = self._outputs(program.train_graph, program.train_signature, "grad")
        true = self._outputs(program.probe_graph, program.probe_signature, "grad")
        reconstruction = self._outputs(program.train_graph, program.train_signature, "inverse_loss")
        with torch.no_grad():
            for b, value in zip(buffers, saved):
                b.copy_(value)
        params = dict(program.network.named_parameters())
        feedback = {}
        for hook in program.hooks:
            feedback.update(hook.feedback_tensors())
        layers = {}
        table = program.network.layer_table
        for info in table:
            entry = {}
            if info is not table[-1]:
                entry["update_angle"] = angle_degrees(rule[info.weight], true[info.weight])
            b = feedback.get(info.name)
            w = params[info.weight].detach()
            if b is not None and b.shape == w.shape:
                entry["feedback_angle"] = angle_degrees(w, b)
                entry["feedback_norm_ratio"] = float(b.norm() / w.norm())
            if info.name in reconstruction:   # per unit, whether the loss sums or averages over units
                units = math.prod(info.in_shape) if program.loss_reduction == "sum" else 1
                entry["inverse_error"] = float(reconstruction[info.name]) / units
            if entry:
                layers[info.name] = entry
        return layers
