"""Weight mirror (Akrout et al. 2019): learn with FA through B (engaged
mode), and teach B to mirror W in mirror mode.

Mirror mode drives each layer's linear map with noise x ~ N(0, sigma^2),
y = W x (no bias, no nonlinearity), and moves B along the mean of x y^T over
the samples, written in W's layout as the layer's own weight-gradient op
applied to (y, x). A convolution's weight is shared by its output positions,
so each position is a sample: the mean is over batch and positions (one
noise image of a 56x56 map already gives 3136 samples, so conv nets need only
small mirror batches; `mirror.conv_noise_size` shrinks the noise maps of conv
layers, so the large early maps stop dominating the cost). With zero padding a kernel offset near the border
sees real input at fewer positions than the centre, so each offset is
averaged over its own in-bounds positions (else B would mirror W times that
fraction). Since E[x y^T] = sigma^2 W^T, B turns towards a
multiple of W. The growth control is a decay of B:
    B += lr * (mean(y x^T) - decay * B)       (or a feedback optimiser on -(...))
whose fixed point is B = (sigma^2 / decay) W for dense, LC and conv layers alike. The mirror program is its own
FX graph (traced here, shown by `inspect`); hooks run mirror.pre_batches
batches before training and mirror.batches_per_step after every step."""

import torch
from torch.fx.experimental.proxy_tensor import make_fx
from torch.nn.grad import conv2d_weight

from ...nn.ops.maps import linear_map, outer
from ...optim import build_optimizer
from ..lower import lower
from ..program import META_LAYER, META_ROLE, Signature, Slot
from .base import RuleHooks, RulePass
from .fa import add_feedback_tensors

MIRROR_STREAM = 3


def noise_shape(info, settings) -> tuple:
    """Per-example shape of a layer's mirror noise: its input shape, or for a conv layer with
    settings.conv_noise_size a smaller map (never smaller than one kernel window, never larger than the input)."""
    if info.type != "conv2d" or settings.conv_noise_size is None:
        return tuple(info.in_shape)
    g = info.geometry
    channels, height, width = info.in_shape
    smallest = max(g["kernel"] - 2 * g["padding"], 1)
    return (channels, *(min(max(settings.conv_noise_size, smallest), size) for size in (height, width)))


def samples_per_weight(info, shape, device) -> torch.Tensor | int:
    """How many (position, input) pairs feed each weight entry per noise image of `shape`: for a conv layer,
    per kernel offset, the output positions where that offset lands inside the (unpadded) input; 1 for dense
    and LC layers, whose weights no two positions share."""
    if info.type != "conv2d":
        return 1
    g = info.geometry
    ones_in = torch.ones(1, *shape, device=device)
    out = [(size + 2 * g["padding"] - g["kernel"]) // g["stride"] + 1 for size in shape[1:]]
    return conv2d_weight(ones_in, (1, shape[0], g["kernel"], g["kernel"]), torch.ones(1, 1, *out, device=device),
                         stride=g["stride"], padding=g["padding"])


def trace_mirror_graph(layers, params, settings, device):
    """(W_1, x_1, W_2, x_2, ...) -> (mean y_1 x_1^T, ...), one entry per mirrored layer (mean over samples)."""

    shapes = [noise_shape(info, settings) for info in layers]
    samples = [samples_per_weight(info, shape, device) for info, shape in zip(layers, shapes)]

    def mirror(*flat):
        out = []
        for i, info in enumerate(layers):
            weight, x = flat[2 * i], flat[2 * i + 1]
            out.append(outer(info, linear_map(info, x, weight), x) / (samples[i] * x.shape[0]))
        return tuple(out)

    example = []
    for info, shape in zip(layers, shapes):
        example += [params[info.weight].detach(), torch.zeros(settings.batch_size, *shape, device=device)]
    graph = make_fx(mirror)(*example)
    signature = Signature(inputs=[], outputs=[])
    for info in layers:
        signature.inputs += [Slot("param", info.weight), Slot("input", f"noise:{info.name}")]
        signature.outputs.append(Slot("state_update", f"{info.name}.feedback"))
    placeholders = [n for n in graph.graph.nodes if n.op == "placeholder"]
    for node, slot in zip(placeholders, signature.inputs):
        node.name = node.target = slot.name.replace(".", "_").replace(":", "_")
    for node in graph.graph.nodes:       # tag the ops with their layer for inspect
        if node.op == "call_function" and len(node.args) > 1:
            for info in layers:
                if any(getattr(a, "name", None) in (info.weight.replace(".", "_"), f"noise_{info.name}") for a in node.args):
                    node.meta[META_LAYER], node.meta[META_ROLE] = info.name, "mirror"
    graph.recompile()
    lower(graph, device)
    return graph, signature


class WeightMirror(RulePass):
    name = "weight_mirror"

    def rewrite(self, ctx, layers) -> None:
        feedback = add_feedback_tensors(ctx, self.name, self.spec, layers)
        mirrored = [info for info in layers if info.name in feedback]
        if not mirrored:
            return
        params = dict(ctx.network.named_parameters())
        device = params[mirrored[0].weight].device
        settings = self.spec.mirror
        graph, signature = trace_mirror_graph(mirrored, params, settings, device)
        ctx.extra_graphs["mirror"] = (graph, signature)
        feedback_optimizer = getattr(self.spec, "feedback_optimizer", None)
        ctx.hooks.append(MirrorHooks(graph, mirrored, params, feedback, settings, feedback_optimizer,
                                     ctx.spec.train.seed, device))


class MirrorHooks(RuleHooks):
    def __init__(self, graph, layers, params, feedback, settings, feedback_optimizer, seed, device):
        self.graph, self.layers, self.settings = graph, layers, settings
        self.weights = [params[info.weight] for info in layers]
        self.feedback = [feedback[info.name] for info in layers]
        self.generator = torch.Generator(device=device).manual_seed(seed * 1_000_003 + MIRROR_STREAM)
        self.device = device
        self.optimizer = build_optimizer(feedback_optimizer, self.feedback) if feedback_optimizer else None

    def noise(self, info) -> torch.Tensor:
        shape = (self.settings.batch_size, *noise_shape(info, self.settings))
        return torch.randn(shape, generator=self.generator, device=self.device) * self.settings.noise_sigma

    @torch.no_grad()
    def mirror_batch(self) -> None:
        flat = []
        for info, weight in zip(self.layers, self.weights):
            flat += [weight, self.noise(info)]
        directions = self.graph(*flat)
        decay = self.settings.decay
        for b, direction in zip(self.feedback, directions):
            step = direction - decay * b
            if self.optimizer is None:
                b.add_(step, alpha=self.settings.lr)
            else:
                b.grad = -step
        if self.optimizer is not None:
            self.optimizer.step()

    def on_train_start(self, run) -> None:
        for _ in range(self.settings.pre_batches):
            self.mirror_batch()

    def after_step(self, run) -> None:
        for _ in range(self.settings.batches_per_step):
            self.mirror_batch()

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
