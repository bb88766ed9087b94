"""A parametric layer's linear map, its transpose and its outer product, as custom-op calls.

Rules that run a layer's map outside the traced network (weight mirror's noise
drive, target propagation's inverses) call these, so their graphs hold the same
op nodes as the training graph and get the same lowering (Triton on CUDA)."""

import torch


def linear_map(info, x, weight, bias=None):
    """y = W x (+ b) through the layer's forward op; info is the layer's LayerInfo."""
    g = info.geometry
    if info.type == "dense":
        return torch.ops.bpcompile.dense(x, weight, bias)
    if info.type == "locally_connected":
        return torch.ops.bpcompile.locally_connected(x, weight, bias, g["kernel"], g["stride"], g["padding"])
    return torch.ops.bpcompile.conv2d(x, weight, bias, g["stride"], g["padding"])


def transpose_map(info, h, weight):
    """V^T h for a V in W's layout: the layer's input-gradient op, a map from the layer's output
    space back to its input space with the connectivity of W^T (the transpose of an LC map)."""
    g = info.geometry
    if info.type == "dense":
        return torch.ops.bpcompile.dense_grad_input(h, weight)
    height, width = info.in_shape[1], info.in_shape[2]
    if info.type == "locally_connected":
        return torch.ops.bpcompile.locally_connected_grad_input(
            h, weight, height, width, g["kernel"], g["stride"], g["padding"])
    return torch.ops.bpcompile.conv2d_grad_input(h, weight, height, width, g["stride"], g["padding"])


def outer(info, y, x):
    """Sum over the batch of y x^T in W's layout: the layer's weight-gradient op on (y, x)."""
    g = info.geometry
    if info.type == "dense":
        return torch.ops.bpcompile.dense_grad_weight(y, x)
    if info.type == "locally_connected":
        return torch.ops.bpcompile.locally_connected_grad_weight(y, x, g["kernel"], g["stride"], g["padding"])
    return torch.ops.bpcompile.conv2d_grad_weight(y, x, g["kernel"], g["stride"], g["padding"])
