"""Independent plain-PyTorch implementations used as references by the tests.

Nothing here imports bpcompile's compiler, layers or ops: a network is a list
of plain layer descriptions and a dict of tensors named like bpcompile's
parameters ('fc1.weight', ...), and the locally connected layer is written
with unfold + einsum (a different formulation from bpcompile's strided bmm).
"""

import torch
import torch.nn.functional as F


# ---- locally connected: unfold + einsum, and a naive loop ---------------------

def lc_unfold(x, weight, bias, kernel, stride, padding):
    """x (B, C, H, W); weight (P, O, k*k*C) with patch entries ordered (row, col, channel)."""
    batch, channels = x.shape[:2]
    positions, out_ch, _ = weight.shape
    cols = F.unfold(x, kernel, padding=padding, stride=stride)            # (B, C*k*k, P), channel slowest
    w = weight.reshape(positions, out_ch, kernel, kernel, channels).permute(0, 1, 4, 2, 3).reshape(positions, out_ch, -1)
    out = torch.einsum("pok,bkp->bop", w, cols)
    h_out = (x.shape[2] + 2 * padding - kernel) // stride + 1
    out = out.reshape(batch, out_ch, h_out, -1)
    return out if bias is None else out + bias


def lc_naive(x, weight, bias, kernel, stride, padding):
    """Explicit loops over output positions and kernel offsets."""
    batch, channels, height, width = x.shape
    xp = F.pad(x, (padding, padding, padding, padding))
    h_out = (height + 2 * padding - kernel) // stride + 1
    w_out = (width + 2 * padding - kernel) // stride + 1
    out = torch.zeros(batch, weight.shape[1], h_out, w_out, dtype=x.dtype)
    for r in range(h_out):
        for c in range(w_out):
            w = weight[r * w_out + c]                                        # (O, k*k*C)
            for i in range(kernel):
                for j in range(kernel):
                    for ch in range(channels):
                        k = (i * kernel + j) * channels + ch
                        out[:, :, r, c] += xp[:, ch, r * stride + i, c * stride + j].unsqueeze(1) * w[:, k]
    return out if bias is None else out + bias


# ---- plain networks -----------------------------------------------------------
# layer descriptions: ("dense", name) | ("lc", name, kernel, stride, padding) | ("conv", name, stride, padding)
#                     | ("act", fn) | ("flatten",)

ACT = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}


def act_derivative(fn, a):
    if fn == "tanh":
        return 1 - torch.tanh(a) ** 2
    if fn == "relu":
        return (a > 0).to(a.dtype)
    s = torch.sigmoid(a)
    return s * (1 - s)


def apply_layer(layer, params, h):
    kind = layer[0]
    if kind == "dense":
        name = layer[1]
        return h @ params[f"{name}.weight"].t() + params[f"{name}.bias"]
    if kind == "lc":
        _, name, kernel, stride, padding = layer
        return lc_unfold(h, params[f"{name}.weight"], params[f"{name}.bias"], kernel, stride, padding)
    if kind == "conv":
        _, name, stride, padding = layer
        return F.conv2d(h, params[f"{name}.weight"], params[f"{name}.bias"], stride=stride, padding=padding)
    if kind == "act":
        return ACT[layer[1]](h)
    if kind == "flatten":
        return h.reshape(h.shape[0], -1)
    raise ValueError(layer)


def forward(layers, params, x):
    h = x
    for layer in layers:
        h = apply_layer(layer, params, h)
    return h


def task_loss(name, logits, y):
    if name == "softmax_cross_entropy":
        return F.cross_entropy(logits, y)
    onehot = F.one_hot(y, logits.shape[1]).to(logits.dtype)
    if name == "sigmoid_cross_entropy":
        return F.binary_cross_entropy_with_logits(logits, onehot)
    return ((logits - onehot) ** 2).mean()


def bp_grads(layers, params, x, y, loss_name):
    """True gradients by torch.autograd through the plain network."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    loss = task_loss(loss_name, forward(layers, leaves, x), y)
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return dict(zip(leaves, grads))


def _input_vjp(layer, params_or_feedback, h_in, delta, name):
    """The input-gradient of a parametric layer's linear map with the given weight tensor (W or B)."""
    h = h_in.detach().clone().requires_grad_(True)
    kind = layer[0]
    weight = params_or_feedback
    if kind == "dense":
        return delta @ weight                                    # (B, out) @ (out, in)
    if kind == "lc":
        _, _, kernel, stride, padding = layer
        out = lc_unfold(h, weight, None, kernel, stride, padding)
    else:
        _, _, stride, padding = layer
        out = F.conv2d(h, weight, None, stride=stride, padding=padding)
    (grad,) = torch.autograd.grad(out, h, delta)                 # linear in h: exactly weight^T applied to delta
    return grad


def _weight_grads(layer, h_in, delta):
    """(weight gradient, bias gradient) of a dense or LC layer for the error `delta` at its output."""
    if layer[0] == "dense":
        return delta.t() @ h_in, delta.sum(0)
    _, _, kernel, stride, padding = layer
    cols = F.unfold(h_in, kernel, padding=padding, stride=stride)          # (B, C*k*k, P)
    d = delta.reshape(delta.shape[0], delta.shape[1], -1)                  # (B, O, P)
    gw = torch.einsum("bop,bkp->pok", d, cols)                            # channel-slowest patch order
    positions, out_ch = gw.shape[:2]
    channels = h_in.shape[1]
    w = gw.reshape(positions, out_ch, channels, kernel, kernel).permute(0, 1, 3, 4, 2).reshape(positions, out_ch, -1)
    return w, delta.sum(0)


def biotorch_conv_direct(layer, kernel, output_error, in_shape):
    """BioTorch's conv DFA (layers/dfa/conv.py): conv2d_input(B, e repeated over the output positions), written
    as its sum: every output position adds the patch e @ B (C*k*k values) at its window of the input (fold)."""
    _, _, stride, padding = layer
    classes, channels, k, _ = kernel.shape
    height, width = in_shape[2], in_shape[3]
    positions = ((height + 2 * padding - k) // stride + 1) * ((width + 2 * padding - k) // stride + 1)
    patch = output_error @ kernel.reshape(classes, channels * k * k)            # (B, C*k*k), (C, kh, kw) order
    cols = patch[:, :, None].expand(-1, -1, positions)
    return F.fold(cols, (height, width), k, padding=padding, stride=stride)


def feedback_grads(layers, params, feedback, x, y, loss_name, direct=None, deltas=None):
    """Hand-written feedback alignment: delta_{l-1} = (B_l delta_l) * f'(a_{l-1}), with B_l = feedback[name]
    (same layout as W); a layer without an entry in `feedback` passes errors through W (BP).
    direct: {name: B (classes, input features)}: DFA for those layers: the error at the layer's input is
    e @ B (e = dL/dlogits), not anything computed from the error above. A 4-D B (classes, C, k, k) of a conv
    layer is BioTorch's kernel form (biotorch_conv_direct).
    deltas: a dict filled with {name: the error at each parametric layer's output}."""
    direct = direct or {}
    # forward, remembering every layer's input
    inputs, h = [], x
    for layer in layers:
        inputs.append(h)
        h = apply_layer(layer, params, h)
    logits = h.detach().clone().requires_grad_(True)
    (delta,) = torch.autograd.grad(task_loss(loss_name, logits, y), logits)   # dL/d(logits), the output error
    output_error = delta
    grads = {}
    for index in range(len(layers) - 1, -1, -1):
        layer, h_in = layers[index], inputs[index]
        kind = layer[0]
        if kind == "act":
            delta = delta * act_derivative(layer[1], h_in)
        elif kind == "flatten":
            delta = delta.reshape(h_in.shape)
        else:
            name = layer[1]
            if deltas is not None:
                deltas[name] = delta
            if kind == "conv":
                hh = h_in.detach().clone().requires_grad_(True)
                w = params[f"{name}.weight"].detach().clone().requires_grad_(True)
                out = F.conv2d(hh, w, None, stride=layer[2], padding=layer[3])
                (gw,) = torch.autograd.grad(out, w, delta)
                grads[f"{name}.weight"], grads[f"{name}.bias"] = gw, delta.sum((0, 2, 3))
            else:
                grads[f"{name}.weight"], grads[f"{name}.bias"] = _weight_grads(layer, h_in, delta)
            if index > 0 and name in direct and direct[name].dim() == 4:
                delta = biotorch_conv_direct(layer, direct[name], output_error, h_in.shape)
            elif index > 0 and name in direct:
                delta = (output_error @ direct[name]).reshape(h_in.shape)
            elif index > 0:
                weight = feedback.get(name, params[f"{name}.weight"])
                delta = _input_vjp(layer, weight, h_in, delta, name)
    return grads


def rel_error(a, b):
    a, b = a.detach(), b.detach()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def linear_map(layer, weight, x):
    """y = W x without bias (weight mirror's mirror mode)."""
    kind = layer[0]
    if kind == "dense":
        return x @ weight.t()
    if kind == "lc":
        _, _, kernel, stride, padding = layer
        return lc_unfold(x, weight, None, kernel, stride, padding)
    _, _, stride, padding = layer
    return F.conv2d(x, weight, None, stride=stride, padding=padding)


def outer_in_weight_layout(layer, y, x, weight_shape):
    """sum over the batch of y x^T, laid out like W (the weight gradient of the linear map for error y)."""
    if layer[0] == "conv":
        w = torch.zeros(weight_shape, dtype=x.dtype, requires_grad=True)
        (g,) = torch.autograd.grad(F.conv2d(x, w, None, stride=layer[2], padding=layer[3]), w, y)
        return g
    return _weight_grads(layer, x, y)[0]


def per_example_angle(a, b):
    """Akrout et al.'s delta angle written out: the angle of each example's pair, in degrees, then the mean."""
    import math

    angles = []
    for ai, bi in zip(a.detach().double(), b.detach().double()):
        ai, bi = ai.flatten(), bi.flatten()
        if ai.norm() > 0 and bi.norm() > 0:
            angles.append(math.degrees(math.acos(float((ai @ bi / (ai.norm() * bi.norm())).clamp(-1, 1)))))
    return sum(angles) / len(angles)


def angle(a, b):
    import math

    a, b = a.detach().flatten().double(), b.detach().flatten().double()
    return math.degrees(math.acos(float((a @ b / (a.norm() * b.norm())).clamp(-1, 1))))
