"""Weight mirror (Akrout et al. 2019): learn with FA through B (engaged
mode), and teach B to mirror W in mirror mode.

Mirror mode drives each layer with its own fresh noise x (never propagated
from the layer below), takes the layer's response y and moves B along x y^T,
written in W's layout as the layer's own weight-gradient op applied to (y, x):
    B += lr_t * (D - decay * B)     (or a feedback optimiser on -(D - decay * B))
lr_t is mirror.lr times the forward schedule's factor (rule.feedback_schedule).
The settings (spec.rules.MirrorSettings), defaults from Akrout et al.'s
released code (makrout/Deep-Learning-without-Weight-Transport, fcnn/FCNN_WM.py:
`noise_x = 0.1 * (rand - 0.5)`, `noise_y = sigmoid(W noise_x + b)`,
`back_w += 0.01 * noise_x @ noise_y.T`, one epoch of mirror batches before
training and one after every batch):
  noise     'uniform': x ~ noise_sigma * (U(0, 1) - 0.5); 'gaussian': x ~ N(0, noise_sigma^2)
  response  'layer': y = f(W x + b), f the activation directly after the layer (identity if none, e.g.
            before batch norm; at the output the loss's sigmoid for sigmoid cross-entropy); 'linear': y = W x
  reduction 'sum': D = sum over the mirror batch of x y^T; 'mean': D = that sum / batch_size
A convolution's weight is shared by its output positions, so each position is a
sample: one noise image of a 56x56 map already gives 3136 samples
(`mirror.conv_noise_size` shrinks the noise maps of conv layers). Under either
reduction a conv weight's x y^T is averaged over the positions of each noise
image, so a conv layer moves as fast as a dense layer driven by the same batch
(a sum over positions would grow with the map: Akrout et al.'s code has dense
layers only). With zero padding a kernel offset near the border sees real input
at fewer positions than the centre, so each offset is averaged over its own
in-bounds positions (else B would mirror W times that fraction). For a linear response
E[x y^T] = var(x) W^T, so B turns towards a multiple of W; with 'mean' the fixed
point is B = (var(x) / decay) W for dense, LC and conv layers alike. The mirror
program is its own FX graph (traced here, shown by `inspect`)."""

import json

import torch

from ...nn.ops.maps import family_of, linear_map, outer
from ...optim import build_optimizer
from ...spec import WeightMirror as WeightMirrorSpec
from ..graph_cache import traced
from ..program import META_LAYER, META_ROLE, Signature, Slot
from ..streams import seeded_generator
from .base import RuleHooks, RulePass, ScheduledOptimizer, schedule_factor
from .fa import add_feedback_tensors, weight_elements
from .registry import register_rule


def noise_shape(info, settings) -> tuple:
    """Per-example shape of a layer's mirror noise (its input shape; the layer kind may allow smaller maps:
    conv layers with settings.conv_noise_size, nn/ops/conv.py)."""
    return family_of(info).mirror_noise_shape(info, settings.conv_noise_size)


def samples_per_weight(info, shape, device) -> torch.Tensor | int:
    """How many (position, input) pairs feed each weight entry per noise image of `shape` (the layer kind says:
    1 for dense and LC layers, whose weights no two positions share; per kernel offset for conv)."""
    return family_of(info).samples_per_weight(info, shape, device)


def following_activation(network, info, loss: str):
    """The activation function applied right after the layer in the network (None if another kind of layer,
    e.g. batch norm, follows it). After the output layer: the loss's own per-unit link, sigmoid for
    'sigmoid_cross_entropy' (Akrout et al.'s code mirrors its sigmoid output units), none otherwise."""
    from ...nn.layers import Activation

    if info is network.layer_table[-1]:
        return torch.sigmoid if loss == "sigmoid_cross_entropy" else None
    children = list(network.named_children())
    names = [name for name, _ in children]
    if info.name not in names:
        return None          # a layer inside a macro (a ResNet block): batch norm follows its convs
    index = names.index(info.name)
    following = children[index + 1][1] if index + 1 < len(children) else None
    return following.fn if isinstance(following, Activation) else None


def trace_mirror_graph(layers, params, settings, device, activations=None):
    """(W_1, [b_1,] x_1, W_2, ...) -> (D_1, ...), one entry per mirrored layer (the bias only with
    response='layer' and a biased layer). activations: layer name -> f for response='layer'."""

    activations = activations or {}
    layer_response = settings.response == "layer"
    shapes = [noise_shape(info, settings) for info in layers]
    samples = [samples_per_weight(info, shape, device) for info, shape in zip(layers, shapes)]
    with_bias = [layer_response and info.bias is not None for info in layers]

    def mirror(*flat):
        out, i = [], 0
        for k, info in enumerate(layers):
            weight = flat[i]
            bias = flat[i + 1] if with_bias[k] else None
            x = flat[i + 1 + with_bias[k]]
            i += 2 + with_bias[k]
            y = linear_map(info, x, weight, bias)
            if layer_response and activations.get(info.name) is not None:
                y = activations[info.name](y)
            direction = outer(info, y, x)
            if not isinstance(samples[k], int):               # a shared conv weight: per noise image
                direction = direction / samples[k]
            if settings.reduction == "mean":
                direction = direction / x.shape[0]
            out.append(direction)
        return tuple(out)

    example = []
    signature = Signature(inputs=[], outputs=[])
    for info, shape, biased in zip(layers, shapes, with_bias):
        example.append(params[info.weight].detach())
        signature.inputs.append(Slot("param", info.weight))
        if biased:
            example.append(params[info.bias].detach())
            signature.inputs.append(Slot("param", info.bias))
        example.append(torch.zeros(settings.batch_size, *shape, device=device))
        signature.inputs.append(Slot("input", f"noise:{info.name}"))
        signature.outputs.append(Slot("state_update", f"{info.name}.feedback"))
    key = {"what": "weight_mirror", "settings": settings.model_dump(mode="json"),
           "layers": [[info.name, info.type, list(info.in_shape), list(info.out_shape), info.bias is not None,
                       json.dumps(info.geometry, sort_keys=True, default=str),
                       getattr(activations.get(info.name), "__name__", None)] for info in layers],
           "samples": [s if isinstance(s, int) else s.tolist() for s in samples]}
    graph, _ = traced(mirror, example, key, tracing_mode="real")
    placeholders = [n for n in graph.graph.nodes if n.op == "placeholder"]
    for node, slot in zip(placeholders, signature.inputs):
        node.name = node.target = slot.name.replace(".", "_").replace(":", "_")
    for node in graph.graph.nodes:       # tag the ops with their layer for inspect
        if node.op == "call_function" and len(node.args) > 1:
            for info in layers:
                if any(getattr(a, "name", None) in (info.weight.replace(".", "_"), f"noise_{info.name}") for a in node.args):
                    node.meta[META_LAYER], node.meta[META_ROLE] = info.name, "mirror"
    graph.recompile()
    return graph, signature     # lowered with the program's other graphs (compiler/pipeline.py)


@register_rule(WeightMirrorSpec)
class WeightMirror(RulePass):
    def state_elements(self, network, layers) -> int:
        return weight_elements(network, layers)

    def rewrite(self, ctx, layers) -> None:
        feedback = add_feedback_tensors(ctx, self.name, self.spec, layers)
        mirrored = [info for info in layers if info.name in feedback]
        if not mirrored:
            return
        params = dict(ctx.network.named_parameters())
        device = params[mirrored[0].weight].device
        settings = self.spec.mirror
        activations = {info.name: following_activation(ctx.network, info, ctx.spec.loss) for info in mirrored}
        graph, signature = trace_mirror_graph(mirrored, params, settings, device, activations)
        ctx.extra_graphs["mirror"] = (graph, signature)
        feedback_optimizer = getattr(self.spec, "feedback_optimizer", None)
        optimizer = None
        if feedback_optimizer is not None:
            optimizer = ScheduledOptimizer(build_optimizer(feedback_optimizer, [feedback[i.name] for i in mirrored]),
                                           self.spec.feedback_schedule == "forward")
        ctx.hooks.append(MirrorHooks(graph, signature, mirrored, params, feedback, settings, optimizer,
                                     self.spec.feedback_schedule == "forward", ctx.spec.train.seed, device))


class MirrorHooks(RuleHooks):
    def __init__(self, graph, signature, layers, params, feedback, settings, optimizer, follow_schedule, seed, device):
        self.graph, self.layers, self.settings = graph, layers, settings
        self.inputs = [params[slot.name] if slot.kind == "param" else None for slot in signature.inputs]
        self.noise_at = {slot.name.removeprefix("noise:"): i for i, slot in enumerate(signature.inputs)
                         if slot.kind == "input"}
        self.feedback = [feedback[info.name] for info in layers]
        self.generator = seeded_generator(seed, "weight_mirror", "noise", device)
        self.device = device
        self.optimizer = optimizer
        self.follow_schedule = follow_schedule

    def noise(self, info) -> torch.Tensor:
        shape = (self.settings.batch_size, *noise_shape(info, self.settings))
        sigma = self.settings.noise_sigma
        if self.settings.noise == "uniform":
            return torch.rand(shape, generator=self.generator, device=self.device).sub_(0.5).mul_(sigma)
        noise = torch.randn(shape, generator=self.generator, device=self.device)
        return noise.mul_(sigma) if sigma != 1.0 else noise

    @torch.no_grad()
    def mirror_batch(self, run=None) -> None:
        flat = list(self.inputs)
        for info in self.layers:
            flat[self.noise_at[info.name]] = self.noise(info)
        directions = self.graph(*flat)
        decay = self.settings.decay
        lr = self.settings.lr * (schedule_factor(run) if self.follow_schedule else 1.0)
        for b, direction in zip(self.feedback, directions):
            if self.optimizer is None:          # B + lr (D - decay B), in place
                if decay:
                    b.mul_(1.0 - lr * decay)
                b.add_(direction, alpha=lr)
            else:
                b.grad = (decay * b - direction) if decay else direction.neg()
        if self.optimizer is not None:
            self.optimizer.step(run)

    def pre_batches(self, run) -> int:
        count = self.settings.pre_batches
        if count == "epoch":     # Akrout et al.'s code: one mirror batch per training batch of an epoch
            return getattr(run, "batches_per_epoch", None) or 0
        return count

    def on_train_start(self, run) -> None:
        for _ in range(self.pre_batches(run)):
            self.mirror_batch(run)

    def after_step(self, run) -> None:
        for _ in range(self.settings.batches_per_step):
            self.mirror_batch(run)

    def feedback_tensors(self) -> dict:
        return {info.name: b for info, b in zip(self.layers, self.feedback)}

    def state_dict(self) -> dict:
        state = {"generator": self.generator.get_state()}
        if self.optimizer is not None:
            state["optimizer"] = self.optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        if self.optimizer is not None and "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
