"""The dense (fully connected) layer kind: y = x W^T + b, W of shape (out, in); its custom ops, module and plan."""

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import BpcompileError
from .registry import register_family
from .shapes import LayerPlan, check_size


def dense_reference(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    return F.linear(x, weight, bias)


def dense_grad_input_reference(grad_out: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    # BP reads W here; a feedback rule passes B (same layout as W) instead
    return grad_out.mm(weight)


def dense_grad_weight_reference(grad_out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return grad_out.t().mm(x)


@torch.library.custom_op("bpcompile::dense", mutates_args=())
def dense(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    return dense_reference(x, weight, bias)


@dense.register_fake
def _(x, weight, bias):
    return x.new_empty(x.shape[0], weight.shape[0])


@torch.library.custom_op("bpcompile::dense_grad_input", mutates_args=())
def dense_grad_input(grad_out: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return dense_grad_input_reference(grad_out, weight)


@dense_grad_input.register_fake
def _(grad_out, weight):
    return grad_out.new_empty(grad_out.shape[0], weight.shape[1])


@torch.library.custom_op("bpcompile::dense_grad_weight", mutates_args=())
def dense_grad_weight(grad_out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return dense_grad_weight_reference(grad_out, x)


@dense_grad_weight.register_fake
def _(grad_out, x):
    return grad_out.new_empty(grad_out.shape[1], x.shape[1])


def _setup(ctx, inputs, output):
    x, weight, bias = inputs
    ctx.save_for_backward(x, weight)
    ctx.has_bias = bias is not None


def _backward(ctx, grad_out):
    x, weight = ctx.saved_tensors
    grad_x = dense_grad_input(grad_out, weight) if ctx.needs_input_grad[0] else None
    grad_w = dense_grad_weight(grad_out, x) if ctx.needs_input_grad[1] else None
    grad_b = grad_out.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
    return grad_x, grad_w, grad_b


dense.register_autograd(_backward, setup_context=_setup)


# grad_input is also a layer's transposed map (target propagation's inverses): y = h V, so
# dL/dh = dy V^T (the forward op) and dL/dV = h^T dy (the weight-gradient op)
def _setup_transpose(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward_transpose(ctx, grad_out):
    h, weight = ctx.saved_tensors
    grad_h = dense(grad_out, weight, None) if ctx.needs_input_grad[0] else None
    grad_w = dense_grad_weight(h, grad_out) if ctx.needs_input_grad[1] else None
    return grad_h, grad_w


dense_grad_input.register_autograd(_backward_transpose, setup_context=_setup_transpose)

class Dense(nn.Module):
    def __init__(self, in_features: int, units: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(units, in_features))
        self.bias = nn.Parameter(torch.zeros(units)) if bias else None

    def forward(self, x):
        return torch.ops.bpcompile.dense(x, self.weight, self.bias)


def plan(spec, shape: tuple, what: str) -> LayerPlan:
    if len(shape) != 1:
        raise BpcompileError(f"{what} needs a flat input but gets shape {shape}: add {{\"type\": \"flatten\"}} before it.")
    check_size(what, "weights", shape[0] * spec.units, f"{spec.units} units x {shape[0]} inputs")
    return LayerPlan(Dense(shape[0], spec.units, spec.bias), (spec.units,), shape[0], spec.units)


FAMILY = register_family("dense", "dense", dense_reference, dense_grad_input_reference, dense_grad_weight_reference,
                         plan=plan, prefix="fc")
