"""Alignment metrics on a fixed probe batch, for every rule.

* update_angle: the angle (degrees) between the rule's update of a hidden
  layer's weight and the true BP gradient (the untouched BP graph, same
  parameters, same batch). 0 for BP; the top layer is left out (it learns
  from the task loss under every gradient rule).
* feedback_angle / feedback_norm_ratio: for layers whose feedback tensor has
  W's layout (FA, sign symmetry, weight mirror, Kolen-Pollack), the angle
  between W^T and B and ||B|| / ||W||.
* delta_angle: Akrout et al.'s per-sample delta angle (their FCNN_FA.py): for each
  example, the angle (degrees) between the rule's delta at a hidden layer (the
  error at its output, before the activation) and BP's, averaged over the
  examples of the probe batch. Examples where either delta is zero (every
  ReLU off) have no angle and are left out.
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


def per_sample_angle_degrees(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over examples (dim 0) of the angle between a[i] and b[i], in degrees; nan if no example has both."""
    a, b = a.detach().flatten(1).double(), b.detach().flatten(1).double()
    denominator = a.norm(dim=1) * b.norm(dim=1)
    defined = denominator > 0
    if not bool(defined.any()):
        return float("nan")
    cosine = ((a * b).sum(dim=1)[defined] / denominator[defined]).clamp(-1.0, 1.0)
    return float(torch.rad2deg(torch.acos(cosine)).mean())


class AlignmentProbe:
    def __init__(self, program, x: torch.Tensor, y: torch.Tensor):
        self.program, self.x, self.y = program, x, y

    def _all_outputs(self, graph, signature) -> dict:
        """kind -> {name: value} of one clean pass (noise inputs: zeros)."""
        with torch.no_grad():
            outputs = graph(*self.program.graph_inputs(signature, self.x, self.y))
        found = {}
        for value, slot in zip(outputs, signature.outputs):
            found.setdefault(slot.kind, {})[slot.name] = value
        return found

    def measure(self) -> dict:
        program = self.program
        # the training graphs update batch norm's running statistics in place: a probe must leave no trace
        buffers = [b for b in program.network.buffers()]
        saved = [b.clone() for b in buffers]
        if program.rule_probe_graph is not None:
            rule_graph, rule_signature = program.rule_probe_graph, program.rule_probe_signature
        else:
            rule_graph, rule_signature = program.train_graph, program.train_signature
        rule_outputs = self._all_outputs(rule_graph, rule_signature)
        true_outputs = self._all_outputs(program.probe_graph, program.probe_signature)
        rule, true = rule_outputs.get("grad", {}), true_outputs.get("grad", {})
        rule_deltas, true_deltas = rule_outputs.get("delta", {}), true_outputs.get("delta", {})
        reconstruction = rule_outputs.get("inverse_loss", {})   # target propagation: the rule graph is train_graph
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
            if info.name in rule_deltas and info.name in true_deltas:
                entry["delta_angle"] = per_sample_angle_degrees(rule_deltas[info.name], true_deltas[info.name])
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
