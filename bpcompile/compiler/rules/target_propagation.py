"""The target-propagation family's shared base (Bartunov et al. 2018, Lee et al. 2015); the variants are
small files beside it (tp.py, dtp.py, sdtp.py, ao_sdtp.py) that say how the first target is set, how
targets propagate down and what the inverse loss reconstructs.

The network is cut into blocks, one per parametric layer l:
    h_l = f_l(W_l h_{l-1} + b_l)      (f_l: the element-wise activation after the layer, then any flatten)
Every block above the first gets an inverse with the connectivity of W_l^T,
    g_l(h_l) = f_{l-1}(V_l^T h_l + c_l),
where V_l has W_l's layout and V_l^T h is the layer's input-gradient op (for an
LC layer the transpose of the LC map). Hidden layers learn from local losses
||h_l - target_l||^2 with their input held fixed; the top layer learns from the
task loss. Targets (h_{L-1} is the penultimate activity, h_L = s(logits) the
output activity, s = softmax for softmax cross-entropy):
    TP      target_{L-1} = h_{L-1} - alpha dl/dh_{L-1};  target_{l-1} = g_l(target_l)
    DTP     same first target;  target_{l-1} = h_{l-1} + g_l(target_l) - g_l(h_l)
    SDTP    target_L = one-hot label; target_{L-1} = h_{L-1} - g_L(h_L) + g_L(target_L); then as DTP
    AO-SDTP h_L = [s(o), z] with z = W_aux h_{L-1} (or tanh of it) random fixed features; target_L = [one-hot, z]
Inverse losses, with h~ = h_{l-1} + eps, eps ~ N(0, sigma^2):
    TP, DTP (noise-preserving)  ||g_l(f_l(h~)) - h~||^2
    SDTP, AO-SDTP (denoising)   ||g_l(f_l(h~)) - h_{l-1}||^2
Squared norms are summed (rule.loss_reduction 'sum') or averaged ('mean') over units, and
averaged over the batch. l in dl/dh is the per-example task loss (rule.first_target_gradient
'per_example': the first target does not depend on the batch size) or the batch-mean loss
('batch_mean', Lee et al.'s code).

The whole step is traced with make_fx into one FX graph (the program `inspect`
prints): targets, inverse passes and local losses are nodes, and targets and
losses are also graph outputs (named target:<layer>, local_loss:<layer>,
inverse_loss:<layer>). The 'parallel' schedule runs that graph every step; the
'alternating' schedule takes turns between its inverse-only part and its forward-only
part (rule.alternation: which batches each turn covers is the runtime's job,
runtime/schedule.py). Inverse parameters are rule state with their own optimiser
(rule.inverse_optimizer), stepped by a hook.

A variant subclasses TargetPropagationStep (first_target, propagate, inverse_reference, and for a
widened output top_activity / extra state) and registers a TargetPropagation pass naming that step."""

from dataclasses import dataclass

import torch

from ...errors import BpcompileError
from ...nn.init import init_tensor
from ...nn.layers import ACTIVATIONS, Activation, Flatten
from ...nn.losses import task_loss
from ...nn.ops import role_of
from ...nn.ops.maps import linear_map, transpose_map
from ...optim import build_optimizer, scheduled_lr
from ..program import META_LAYER, META_ROLE, Rewrite, Signature, Slot
from ..graph_cache import code_digest_of, network_facts, traced
from ..trace import cleanup, select_outputs, tag_layers, trace_batch_size
from .base import RuleHooks, RulePass
from .fa import weight_elements

TARGET_LIMIT = 1e6   # |target| beyond this counts as divergence


@dataclass
class Block:
    """One parametric layer and the element-wise activation / flatten that follow it."""

    info: object               # LayerInfo
    activation: str = "identity"
    flatten: bool = False

    @property
    def out_shape(self) -> tuple:
        shape = self.info.out_shape
        if not self.flatten:
            return tuple(shape)
        size = 1
        for d in shape:
            size *= d
        return (size,)


def split_blocks(network, rule_name: str) -> tuple[bool, list[Block]]:
    """(flatten the input first?, blocks). Fails, naming the layer, on anything without an inverse."""
    layers = {info.name: info for info in network.layer_table}
    flatten_input, blocks = False, []
    for name, module in network.named_children():
        if name in layers:
            blocks.append(Block(layers[name]))
        elif isinstance(module, Flatten) and not blocks:
            flatten_input = True
        elif isinstance(module, Flatten) and not blocks[-1].flatten:
            blocks[-1].flatten = True
        elif isinstance(module, Activation) and blocks and blocks[-1].activation == "identity":
            blocks[-1].activation = module.fn_name
        else:
            raise BpcompileError(
                f"rule {rule_name!r} cannot train this network: layer {name!r} ({type(module).__name__}) sits where "
                f"target propagation needs each parametric layer (dense, locally_connected, conv2d) to be followed "
                f"by at most one element-wise activation and a flatten, which the learned inverses undo. Pooling, "
                f"batch norm, residual blocks and stacked activations have no inverse here."
            )
    if not blocks:
        raise BpcompileError(f"rule {rule_name!r} needs at least one parametric layer.")
    return flatten_input, blocks


def output_activity(loss_name: str, logits: torch.Tensor) -> torch.Tensor:
    """h_L: the output in the space of label distributions, where the one-hot target lives."""
    if loss_name == "softmax_cross_entropy":
        return torch.softmax(logits, dim=1)
    if loss_name == "sigmoid_cross_entropy":
        return torch.sigmoid(logits)
    return logits


def block_forward(block: Block, h, weight, bias):
    out = ACTIVATIONS[block.activation](linear_map(block.info, h, weight, bias))
    return out.flatten(1) if block.flatten else out


def inverse(block: Block, below: Block, h, weight, bias):
    """g_l(h_l) = f_{l-1}(V_l^T h_l + c_l), shaped like h_{l-1}."""
    if len(block.info.out_shape) > 1:               # undo the flatten after an LC / conv layer
        h = h.reshape(h.shape[0], *block.info.out_shape)
    back = transpose_map(block.info, h, weight) + bias
    back = ACTIVATIONS[below.activation](back)
    return back.flatten(1) if below.flatten else back


def squared_norm(diff: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Per-example squared norm (summed or averaged over units), averaged over the batch."""
    per_unit = diff.pow(2).flatten(1)
    return (per_unit.sum(1) if reduction == "sum" else per_unit.mean(1)).mean()


class TargetPropagationStep:
    """The traced function: one training step of a target-propagation rule. Variants override the
    methods marked 'variant' below; everything else is shared."""

    inverts_top = False           # variant: does g_L exist (to carry a label target down from h_L)?
    first_target_needs_grad = False   # variant: does first_target take dl/dh_{L-1} (h_{L-1} requires grad)?

    def __init__(self, rule, blocks: list[Block], flatten_input: bool, loss_name: str, network):
        self.rule, self.blocks, self.flatten_input, self.loss_name = rule, blocks, flatten_input, loss_name
        top = len(blocks) - 1
        last = top if self.inverts_top else top - 1
        self.inverted = list(range(1, last + 1))              # block indices with an inverse
        self.params = [n for n, _ in network.named_parameters()]
        self.inverse_state = []
        for j in self.inverted:
            self.inverse_state += [self.inverse_weight(j), self.inverse_bias(j)]
        self.noise = [f"noise:{blocks[j].info.name}" for j in self.inverted]

    def inverse_weight(self, j: int) -> str:
        return f"{self.blocks[j].info.name}.inverse_weight"

    def inverse_bias(self, j: int) -> str:
        return f"{self.blocks[j].info.name}.inverse_bias"

    def weight(self, v: dict, j: int):
        return v[self.blocks[j].info.weight]

    def bias(self, v: dict, j: int):
        name = self.blocks[j].info.bias
        return v[name] if name else None

    def g(self, v: dict, j: int, h):
        return inverse(self.blocks[j], self.blocks[j - 1], h, v[self.inverse_weight(j)], v[self.inverse_bias(j)])

    # ---- the variant's parts -----------------------------------------------------------------------
    def first_target(self, v, hs, logits, y, loss, top_input):
        """variant: target_{L-1}, the target of the penultimate activity hs[L-1] (hs detached)."""
        raise NotImplementedError

    def propagate(self, v, j: int, target_above, hs):
        """variant: target_j of h_j from target_{j+1}, through block j's inverse g_j."""
        raise NotImplementedError

    def inverse_reference(self, noisy, clean):
        """variant: what g_j(f_j(h~)) should reconstruct: h~ (noise-preserving) or h (denoising)."""
        raise NotImplementedError

    def top_activity(self, v: dict, logits, h_below):
        """h_L, and any extra features of h_{L-1} the output is widened with (AO-SDTP's z), else None."""
        return output_activity(self.loss_name, logits), None

    def extra_top_units(self) -> int:
        """Units the top activity has beyond the classes (the top inverse's V is widened by as many rows)."""
        return 0

    def extra_state(self, ctx) -> dict:
        """Fixed state tensors beside the inverses (AO-SDTP's W_aux), on the CPU."""
        return {}

    @classmethod
    def check_blocks(cls, rule, blocks: list[Block]) -> None:
        """variant: refuse a network this variant cannot train (a BpcompileError naming the layer)."""

    @classmethod
    def extra_state_elements(cls, rule, network) -> int:
        """variant: elements of the extra state and the top inverse's extra rows, for the size budget."""
        return 0

    # ---- the step --------------------------------------------------------------------------------
    def __call__(self, v: dict, train_forward: bool, train_inverse: bool) -> dict:
        blocks, top = self.blocks, len(self.blocks) - 1
        x, y = v["x"], v["y"]
        hs = [x.flatten(1) if self.flatten_input else x]
        top_input = None
        for j, block in enumerate(blocks):
            h_in = hs[-1].detach()                   # no gradient crosses a layer
            if j == top and train_forward and self.first_target_needs_grad:
                h_in.requires_grad_(True)           # the first target is a gradient step on h_{L-1}
                top_input = h_in
            hs.append(block_forward(block, h_in, self.weight(v, j), self.bias(v, j)))
        logits = hs[-1]
        loss = task_loss(self.loss_name, logits, y)
        out = {("loss", "loss"): loss.detach(), ("logits", "logits"): logits.detach()}
        if train_forward:
            targets = self.targets(v, hs, logits, y, loss, top_input)
            total = loss
            for i, t in targets.items():
                local = squared_norm(hs[i] - t.detach(), self.rule.loss_reduction)
                out[("target", blocks[i - 1].info.name)] = t.detach()
                out[("local_loss", blocks[i - 1].info.name)] = local.detach()
                total = total + local
            grads = torch.autograd.grad(total, [v[n] for n in self.params])
            out.update({("grad", n): g for n, g in zip(self.params, grads)})
        if train_inverse and self.inverted:
            total = 0
            for j in self.inverted:
                inverse_loss = self.inverse_loss(v, j, hs[j].detach())
                out[("inverse_loss", blocks[j].info.name)] = inverse_loss.detach()
                total = total + inverse_loss
            grads = torch.autograd.grad(total, [v[n] for n in self.inverse_state])
            out.update({("state_grad", n): g for n, g in zip(self.inverse_state, grads)})
        return out

    def targets(self, v, hs, logits, y, loss, top_input) -> dict:
        """{i: target of h_i} for the hidden activities i = 1 .. L-1."""
        top = len(self.blocks) - 1
        if top == 0:
            return {}
        hs = [h.detach() for h in hs]
        t = {top: self.first_target(v, hs, logits, y, loss, top_input)}
        for i in range(top, 1, -1):                  # t_{i-1} through the inverse of block i-1 (h_{i-1} -> h_i)
            t[i - 1] = self.propagate(v, i - 1, t[i], hs)
        return t

    # ---- parts the variants share ----------------------------------------------------------------
    def gradient_step_target(self, hs, logits, loss, top_input):
        """TP's and DTP's first target: h_{L-1} - alpha dl/dh_{L-1}."""
        rule, top = self.rule, len(self.blocks) - 1
        # the task loss summed over the batch gives each example its own loss's gradient
        scaled = loss * logits.shape[0] if rule.first_target_gradient == "per_example" else loss
        (grad,) = torch.autograd.grad(scaled, top_input, retain_graph=True)
        return hs[top] - rule.alpha * grad

    def label_target(self, v, hs, y):
        """SDTP's first target: h_{L-1} - g_L(h_L) + g_L(one-hot label, with any extra features as they are)."""
        top = len(self.blocks) - 1
        h_top, z = self.top_activity(v, hs[-1], hs[top])
        label = torch.zeros_like(output_activity(self.loss_name, hs[-1])).scatter(1, y[:, None], 1.0)
        t_top = label if z is None else torch.cat([label, z], dim=1)
        return hs[top] - self.g(v, top, h_top) + self.g(v, top, t_top)

    def difference_correction(self, v, j: int, target_above, hs):
        """DTP's propagation: h_j + g_j(target_{j+1}) - g_j(h_{j+1})."""
        return hs[j] + self.g(v, j, target_above) - self.g(v, j, hs[j + 1])

    def inverse_loss(self, v, j: int, h_below):
        """Block j's reconstruction loss through g_j, with the forward weights held fixed."""
        sigma = self.rule.noise_sigma
        noisy = h_below + sigma * v[f"noise:{self.blocks[j].info.name}"]
        bias = self.bias(v, j)
        h = block_forward(self.blocks[j], noisy, self.weight(v, j).detach(), None if bias is None else bias.detach())
        if j == len(self.blocks) - 1:
            h, _ = self.top_activity(v, h, noisy)
        reference = self.inverse_reference(noisy, h_below)
        return squared_norm(self.g(v, j, h) - reference, self.rule.loss_reduction)


# ---- compiling ---------------------------------------------------------------------------------

def _init_inverses(ctx, step: TargetPropagationStep) -> dict:
    """V_l in W_l's layout (for AO-SDTP's top layer, the widened [W_L; W_aux] layout), c_l zero."""
    scheme = step.rule.inverse_init or ctx.spec.network.init
    generator = ctx.generator("target_propagation", "inverse_init")
    params = dict(ctx.network.named_parameters())
    state = {}
    for j in step.inverted:
        info = step.blocks[j].info
        shape = list(params[info.weight].shape)
        if j == len(step.blocks) - 1:
            shape[0] += step.extra_top_units()
        weight = torch.empty(shape)
        # the inverse maps the layer's output back to its input: fans swap
        init_tensor(weight, scheme, info.fan_out, info.fan_in, generator)
        state[step.inverse_weight(j)] = weight
        state[step.inverse_bias(j)] = torch.zeros(info.in_shape)
    state.update(step.extra_state(ctx))
    device = params[step.blocks[0].info.weight].device
    return {name: tensor.to(device) for name, tensor in state.items()}


def trace_program(step: TargetPropagationStep, network, state: dict, train_forward: bool, train_inverse: bool):
    """make_fx the step into a graph with a symbolic batch; returns (GraphModule, Signature)."""
    inputs = ([Slot("param", n) for n in step.params] + [Slot("state", n) for n in state]
              + [Slot("noise", n) for n in step.noise] + [Slot("input", "x"), Slot("target", "y")])
    params = dict(network.named_parameters())
    batch = trace_batch_size(network, state.values())
    device = params[step.params[0]].device
    example = []
    for slot in inputs:
        if slot.kind == "param":
            example.append(params[slot.name].detach().requires_grad_(True))
        elif slot.kind == "state":
            example.append(state[slot.name].detach().requires_grad_(slot.name in step.inverse_state))
        elif slot.kind == "noise":
            layer = slot.name.split(":", 1)[1]
            example.append(torch.zeros(batch, *network.layer(layer).in_shape, device=device))
        elif slot.kind == "input":
            example.append(torch.zeros(batch, *network.input_shape, device=device))
        else:
            example.append(torch.zeros(batch, dtype=torch.long, device=device))
    keys = []

    def run_step(*flat):
        result = step({s.name: t for s, t in zip(inputs, flat)}, train_forward, train_inverse)
        keys[:] = list(result)
        return tuple(result.values())

    # the inverse optimiser is not traced: a sweep over its settings reuses the graph
    key = {"what": "target_propagation", "step": f"{type(step).__module__}.{type(step).__qualname__}",
           "rule": step.rule.model_dump(mode="json", exclude={"inverse_optimizer"}), "loss": step.loss_name, "flatten_input": step.flatten_input,
           "network": network_facts(network), "inputs": [[s.kind, s.name] for s in inputs],
           "train_forward": train_forward, "train_inverse": train_inverse}
    # the output slots are learnt by running the step: kept with the graph in the cache
    graph, keys = traced(run_step, example, key, code=code_digest_of(step), extra=lambda: [list(k) for k in keys],
                         extra_valid=_are_slot_pairs)
    signature = Signature(inputs=inputs, outputs=[Slot(kind, name) for kind, name in keys])
    cleanup(graph)                 # first: outputs read through detach nodes until it runs
    _name_nodes(graph, signature)
    tag_layers(graph, signature, network)
    _tag_inverses(graph, signature, step)
    return graph, signature


def _are_slot_pairs(value) -> bool:
    return isinstance(value, list) and all(
        isinstance(k, list) and len(k) == 2 and all(isinstance(p, str) for p in k) for k in value)


def _name_nodes(graph, signature) -> None:
    """Placeholders after their slots; the nodes producing targets and losses after what they are."""
    nodes = [n for n in graph.graph.nodes if n.op == "placeholder"]
    for node, slot in zip(nodes, signature.inputs):
        node.target = node.name = slot.name.replace(".", "_").replace(":", "_")
    output = next(n for n in graph.graph.nodes if n.op == "output")
    for slot, value in zip(signature.outputs, output.args[0]):
        if slot.kind in ("target", "local_loss", "inverse_loss") and value.op == "call_function":
            value.name = f"{slot.kind}_{slot.name}".replace(".", "_")
            value.meta[META_LAYER], value.meta[META_ROLE] = slot.name, slot.kind
    graph.recompile()


def _tag_inverses(graph, signature, step) -> None:
    """Tag the inverse passes (ops reading V_l) and the inverse weight gradients with their layer."""
    by_input = {}
    for node, slot in zip([n for n in graph.graph.nodes if n.op == "placeholder"], signature.inputs):
        by_input[node] = slot.name
    layer_of = {step.inverse_weight(j): step.blocks[j].info.name for j in step.inverted}
    output = next(n for n in graph.graph.nodes if n.op == "output")
    produces = {v: s.name for s, v in zip(signature.outputs, output.args[0]) if s.kind == "state_grad"}
    for node in graph.graph.nodes:
        if node.op != "call_function" or role_of(node.target) is None:
            continue
        reads = [layer_of[by_input[a]] for a in node.args if isinstance(a, torch.fx.Node) and by_input.get(a) in layer_of]
        if reads:
            node.meta[META_LAYER], node.meta[META_ROLE] = reads[0], "inverse"
        elif produces.get(node) in layer_of:
            node.meta[META_LAYER], node.meta[META_ROLE] = layer_of[produces[node]], "inverse_grad_weight"


FORWARD_PHASE_OUTPUTS = ("target", "local_loss", "grad")     # what only training the forward weights returns
INVERSE_PHASE_OUTPUTS = ("inverse_loss", "state_grad")       # what only training the inverses returns


class TargetPropagation(RulePass):
    """The pass of every target-propagation variant: a variant's file registers a subclass naming its step
    class (`@register_rule(MySpec, family="target_propagation")`)."""

    step_class = TargetPropagationStep
    supports_bf16 = False                 # the traced program runs in fp32 / tf32 for now
    supports_channels_last = False
    kept_outputs = ("target", "local_loss", "inverse_loss")
    loss_outputs = ("local_loss", "inverse_loss")

    def check(self, spec, network, layers) -> tuple[bool, list[Block]]:
        """Refuse, with the reason, a spec this rule cannot train; returns split_blocks' result."""
        if spec.rule_overrides:
            raise BpcompileError(
                f"rule_overrides cannot be combined with rule {self.name!r}: target propagation trains every layer "
                f"from targets, so no layer can switch to a gradient rule; remove rule_overrides."
            )
        flatten_input, blocks = split_blocks(network, self.name)
        self.step_class.check_blocks(self.spec, blocks)
        return flatten_input, blocks

    def state_elements(self, network, layers) -> int:
        # an inverse V_l per layer (W_l's layout), and the variant's extra state
        return weight_elements(network, layers) + self.step_class.extra_state_elements(self.spec, network)

    def build(self, ctx) -> dict:
        """Build the rule's state and graphs into ctx; returns the Program fields it sets
        (train graph, phases, schedule, alternation, noise shapes, loss reduction)."""
        rule, network = self.spec, ctx.network
        flatten_input, blocks = self.check(ctx.spec, network, network.layer_table)
        step = self.step_class(rule, blocks, flatten_input, ctx.spec.loss, network)
        ctx.state.update(_init_inverses(ctx, step))
        graph, signature = trace_program(step, network, ctx.state, True, True)
        phases, schedule, alternation = {}, ["train"], None
        if rule.schedule == "alternating" and step.inverted:
            # each phase is the joint step without the other phase's outputs (tests/test_compile_time.py checks
            # them against tracing the phase on its own)
            phases = {"inverse": select_outputs(graph, signature, FORWARD_PHASE_OUTPUTS),
                      "forward": select_outputs(graph, signature, INVERSE_PHASE_OUTPUTS)}
            schedule, alternation = ["inverse", "forward"], rule.alternation
        inverse_params = [ctx.state[n] for n in step.inverse_state]
        if inverse_params:
            optimizer = build_optimizer(rule.inverse_optimizer, inverse_params)
            ctx.hooks.append(InverseHooks(optimizer, rule.inverse_optimizer))
        noise_shapes = {f"noise:{blocks[j].info.name}": tuple(blocks[j].info.in_shape) for j in step.inverted}
        for j in step.inverted:
            info = blocks[j].info
            ctx.rewrites.append(Rewrite(self.name, info.name, step.inverse_weight(j).replace(".", "_"),
                                        f"learned inverse g = f(V^T h + c) through the transposed {info.type} map"))
        return dict(graph=graph, signature=signature, phases=phases, schedule=schedule, alternation=alternation,
                    noise_shapes=noise_shapes, loss_reduction=rule.loss_reduction)


class InverseHooks(RuleHooks):
    """Steps the inverses' optimiser after every step that computed their gradients, at the rate its own
    schedule (rule.inverse_optimizer.schedule) gives the current epoch; checks targets."""

    def __init__(self, optimizer, spec):
        self.optimizer, self.spec = optimizer, spec
        self.rate_epoch = None      # the epoch whose scheduled rate the optimiser holds

    def after_step(self, run) -> None:
        if any(p.grad is not None for group in self.optimizer.param_groups for p in group["params"]):
            self._follow_schedule(run)
            self.optimizer.step()

    def _follow_schedule(self, run) -> None:
        """Sets the scheduled rate once per epoch (the rate changes only between epochs)."""
        epochs = getattr(run, "epochs", None)    # None where a test calls the hook outside a run
        if epochs is None or self.spec.schedule.name == "constant" or run.epoch == self.rate_epoch:
            return
        lr = scheduled_lr(self.spec, run.epoch, epochs)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.rate_epoch = run.epoch

    def check(self, run) -> str | None:
        for (kind, layer), value in run.last_outputs.items():
            if kind == "target":
                size = float(value.abs().max()) if value.numel() else 0.0
                if not size <= TARGET_LIMIT:   # also catches NaN
                    return f"the targets of layer {layer!r} exploded (max |target| = {size:.3g})"
            elif kind == "inverse_loss" and not torch.isfinite(value):
                return f"the inverse loss of layer {layer!r} is {float(value)}"
        return None

    def state_dict(self) -> dict:
        return {"inverse_optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["inverse_optimizer"])
