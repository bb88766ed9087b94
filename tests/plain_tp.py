"""A plain, hand-written target-propagation step (Bartunov et al. 2018 Algorithms 1 and 2, and
Lee et al.'s DTP equations), the independent reference for bpcompile's compiled TP programs.

Written from the equations in ../shared/reference/papers.md with plain tensor ops and
torch.autograd on the explicit losses; nothing of bpcompile is imported. The transposed map of
an LC / conv layer is the vector-Jacobian product of its plain forward map (unfold + einsum,
F.conv2d) with respect to its input. Conventions bpcompile documents: squared norms sum over
units (rule.loss_reduction 'sum', or 'mean' over units) and average over the batch; the DTP/TP
first target uses the per-example loss gradient (rule.first_target_gradient 'per_example') or
the batch-mean one ('batch_mean'); h_L = softmax / sigmoid / identity of the logits by the loss;
AO-SDTP's z is a linear map of h_{L-1} (rule.aux_activation 'linear') or its tanh."""

import torch
import torch.nn.functional as F

from plain_nets import ACT, apply_layer, lc_unfold, task_loss


def blocks_of(layers):
    """[(parametric layer, activation or None, flatten)] from a plain layer list."""
    blocks = []
    for layer in layers:
        if layer[0] in ("dense", "lc", "conv"):
            blocks.append([layer, None, False])
        elif layer[0] == "act":
            blocks[-1][1] = layer[1]
        elif layer[0] == "flatten":
            blocks[-1][2] = True
    return blocks


def block_out(block, params, h):
    layer, act, flatten = block
    a = apply_layer(layer, params, h)
    if act:
        a = ACT[act](a)
    return a.reshape(a.shape[0], -1) if flatten else a


def transposed(layer, weight, h, in_shape):
    """V^T h for V in W's layout: the vjp of the layer's linear map x -> V x at h (kept differentiable in V)."""
    if layer[0] == "dense":
        return h @ weight
    x0 = torch.zeros(h.shape[0], *in_shape, dtype=h.dtype, requires_grad=True)
    if layer[0] == "lc":
        _, _, kernel, stride, padding = layer
        out = lc_unfold(x0, weight, None, kernel, stride, padding)
    else:
        _, _, stride, padding = layer
        out = F.conv2d(x0, weight, None, stride=stride, padding=padding)
    (back,) = torch.autograd.grad(out, x0, h.reshape(out.shape), create_graph=True)
    return back


def activity(loss_name, logits):
    if loss_name == "softmax_cross_entropy":
        return torch.softmax(logits, 1)
    if loss_name == "sigmoid_cross_entropy":
        return torch.sigmoid(logits)
    return logits


def squared(diff, reduction):
    """||diff||^2 per example (sum over units, or mean), averaged over the batch."""
    per_example = (diff ** 2).reshape(diff.shape[0], -1)
    return (per_example.sum(1) if reduction == "sum" else per_example.mean(1)).mean()


def tp_step(rule, layers, params, inverses, x, y, loss_name, noise, aux=None):
    """One step of rule.name in (tp, dtp, sdtp, ao_sdtp). params: forward tensors by name; inverses:
    {layer: (V, c)}; noise: {layer: standard normal tensor}; aux: AO-SDTP's fixed output weights.
    Returns targets {layer: target of its output}, local losses, inverse losses, grads (forward
    params by name, inverses by '<layer>.inverse_weight' / '.inverse_bias')."""
    blocks = blocks_of(layers)
    names = [b[0][1] for b in blocks]
    top = len(blocks) - 1
    batch = x.shape[0]
    reduction = rule.loss_reduction

    def features(h):
        """AO-SDTP's auxiliary units z of h_{L-1}."""
        z = h @ aux.t()
        return torch.tanh(z) if rule.aux_activation == "tanh" else z

    hs = [x]
    for block in blocks:
        hs.append(block_out(block, params, hs[-1]).detach())
    logits = hs[-1]
    in_shapes = [tuple(h.shape[1:]) for h in hs]

    def g(j, h, inv=inverses):
        """Inverse of block j (maps h_{j+1} back to h_j): f_{j-1}(V^T h + c)."""
        layer, V, c = blocks[j][0], *inv[names[j]]
        back = transposed(layer, V, h, in_shapes[j]) + c
        act = blocks[j - 1][1]
        back = ACT[act](back) if act else back
        return back.reshape(batch, -1) if blocks[j - 1][2] else back

    # ---- targets (Algorithm 1 / 2, DTP) ----
    t = {}
    if top >= 1:
        if rule.name in ("tp", "dtp"):
            h = hs[top].clone().requires_grad_(True)
            mean_loss = task_loss(loss_name, block_out(blocks[top], params, h), y)
            scale = batch if rule.first_target_gradient == "per_example" else 1
            (grad,) = torch.autograd.grad(mean_loss * scale, h)
            t[top] = hs[top] - rule.alpha * grad
        else:
            p = activity(loss_name, logits)
            label = F.one_hot(y, p.shape[1]).to(p.dtype)
            if rule.name == "ao_sdtp":
                z = features(hs[top])
                h_top, t_top = torch.cat([p, z], 1), torch.cat([label, z], 1)
            else:
                h_top, t_top = p, label
            t[top] = hs[top] - g(top, h_top) + g(top, t_top)
        for i in range(top, 1, -1):
            if rule.name == "tp":
                t[i - 1] = g(i - 1, t[i])
            else:
                t[i - 1] = hs[i - 1] + g(i - 1, t[i]) - g(i - 1, hs[i])
    t = {i: v.detach() for i, v in t.items()}

    # ---- forward updates: local losses below, the task loss on top ----
    grads, local = {}, {}
    for j, block in enumerate(blocks):
        name = names[j]
        mine = {k: v.detach().clone().requires_grad_(True) for k, v in params.items() if k.startswith(name + ".")}
        out = block_out(block, {**params, **mine}, hs[j])
        if j == top:
            loss = task_loss(loss_name, out, y)
        else:
            loss = squared(out - t[j + 1], reduction)
            local[name] = loss.detach()
        grads.update(zip(mine, torch.autograd.grad(loss, list(mine.values()))))

    # ---- inverse losses: noise-preserving (TP, DTP) or denoising (SDTP, AO-SDTP) ----
    inverse_losses = {}
    for j in range(1, top + 1):
        name = names[j]
        if name not in inverses:
            continue
        V, c = (v.detach().clone().requires_grad_(True) for v in inverses[name])
        noisy = hs[j] + rule.noise_sigma * noise[name]
        out = block_out(blocks[j], params, noisy).detach()
        if j == top:
            out = activity(loss_name, out)
            if rule.name == "ao_sdtp":
                out = torch.cat([out, features(noisy)], 1)
        reference = noisy if rule.name in ("tp", "dtp") else hs[j]
        loss = squared(g(j, out, {name: (V, c)} | {k: v for k, v in inverses.items() if k != name}) - reference,
                       reduction)
        inverse_losses[name] = loss.detach()
        gV, gc = torch.autograd.grad(loss, [V, c])
        grads[f"{name}.inverse_weight"], grads[f"{name}.inverse_bias"] = gV, gc
    targets = {names[i - 1]: v for i, v in t.items()}
    return targets, local, inverse_losses, grads
