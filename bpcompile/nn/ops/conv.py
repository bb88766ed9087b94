"""The conv2d layer kind (shared weights), weight (O, C, k, k): its custom ops, module and plan, and weight
mirror's facts about it (a weight entry is fed by every output position; smaller noise maps suffice)."""

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.grad import conv2d_input, conv2d_weight

from .registry import register_family
from .shapes import LayerPlan, window_plan


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """channels_last for an NHWC 4-D tensor (one that is not also plain contiguous), else contiguous. Outputs
    follow their input's format (train.channels_last), and the fake kernels promise the same, so traced view
    ops match the real strides."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def conv2d_reference(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: int,
                     padding: int) -> torch.Tensor:
    return F.conv2d(x, weight, bias, stride=stride, padding=padding).contiguous(memory_format=memory_format_of(x))


def conv2d_grad_input_reference(grad_out: torch.Tensor, weight: torch.Tensor, in_height: int, in_width: int,
                                stride: int, padding: int) -> torch.Tensor:
    # BP reads W here; a feedback rule passes B (same layout as W) instead
    shape = (grad_out.shape[0], weight.shape[1], in_height, in_width)
    grad = conv2d_input(shape, weight, grad_out, stride=stride, padding=padding)
    return grad.contiguous(memory_format=memory_format_of(grad_out))


def conv2d_grad_weight_reference(grad_out: torch.Tensor, x: torch.Tensor, kernel: int, stride: int,
                                 padding: int) -> torch.Tensor:
    shape = (grad_out.shape[1], x.shape[1], kernel, kernel)
    if x.device.type == "cpu":
        # torch's CPU weight gradient is wrong for channels-last 1x1 stride-2 convolutions (seen on torch 2.13,
        # plain autograd included; tests/test_resnet.py checks our op), so the CPU path computes it in NCHW
        x, grad_out = x.contiguous(), grad_out.contiguous()
    return conv2d_weight(x, shape, grad_out, stride=stride, padding=padding).contiguous()


@torch.library.custom_op("bpcompile::conv2d", mutates_args=())
def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: int,
           padding: int) -> torch.Tensor:
    return conv2d_reference(x, weight, bias, stride, padding)


@conv2d.register_fake
def _(x, weight, bias, stride, padding):
    kernel = weight.shape[2]
    h_out = (x.shape[2] + 2 * padding - kernel) // stride + 1
    w_out = (x.shape[3] + 2 * padding - kernel) // stride + 1
    return x.new_empty(x.shape[0], weight.shape[0], h_out, w_out).contiguous(memory_format=memory_format_of(x))


@torch.library.custom_op("bpcompile::conv2d_grad_input", mutates_args=())
def conv2d_grad_input(grad_out: torch.Tensor, weight: torch.Tensor, in_height: int, in_width: int, stride: int,
                      padding: int) -> torch.Tensor:
    return conv2d_grad_input_reference(grad_out, weight, in_height, in_width, stride, padding)


@conv2d_grad_input.register_fake
def _(grad_out, weight, in_height, in_width, stride, padding):
    grad = grad_out.new_empty(grad_out.shape[0], weight.shape[1], in_height, in_width)
    return grad.contiguous(memory_format=memory_format_of(grad_out))


@torch.library.custom_op("bpcompile::conv2d_grad_weight", mutates_args=())
def conv2d_grad_weight(grad_out: torch.Tensor, x: torch.Tensor, kernel: int, stride: int,
                       padding: int) -> torch.Tensor:
    return conv2d_grad_weight_reference(grad_out, x, kernel, stride, padding)


@conv2d_grad_weight.register_fake
def _(grad_out, x, kernel, stride, padding):
    return grad_out.new_empty(grad_out.shape[1], x.shape[1], kernel, kernel)


def _setup(ctx, inputs, output):
    x, weight, bias, stride, padding = inputs
    ctx.save_for_backward(x, weight)
    ctx.geometry = (weight.shape[2], stride, padding)
    ctx.has_bias = bias is not None


def _backward(ctx, grad_out):
    x, weight = ctx.saved_tensors
    kernel, stride, padding = ctx.geometry
    grad_x = grad_w = grad_b = None
    if ctx.needs_input_grad[0]:
        grad_x = conv2d_grad_input(grad_out, weight, x.shape[2], x.shape[3], stride, padding)
    if ctx.needs_input_grad[1]:
        grad_w = conv2d_grad_weight(grad_out, x, kernel, stride, padding)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        grad_b = grad_out.sum((0, 2, 3))
    return grad_x, grad_w, grad_b, None, None


conv2d.register_autograd(_backward, setup_context=_setup)


# grad_input is also the conv's transposed map (a transposed convolution): dL/dh = conv(dy; V),
# dL/dV = grad_weight(h, dy)
def _setup_transpose(ctx, inputs, output):
    h, weight, _, _, stride, padding = inputs
    ctx.save_for_backward(h, weight)
    ctx.geometry = (weight.shape[2], stride, padding)


def _backward_transpose(ctx, grad_out):
    h, weight = ctx.saved_tensors
    kernel, stride, padding = ctx.geometry
    grad_h = conv2d(grad_out, weight, None, stride, padding) if ctx.needs_input_grad[0] else None
    grad_w = conv2d_grad_weight(h, grad_out, kernel, stride, padding) if ctx.needs_input_grad[1] else None
    return grad_h, grad_w, None, None, None, None


conv2d_grad_input.register_autograd(_backward_transpose, setup_context=_setup_transpose)

class Conv2d(nn.Module):
    def __init__(self, in_channels: int, channels: int, kernel: int, stride: int, padding: int, bias: bool):
        super().__init__()
        self.stride, self.padding = stride, padding
        self.weight = nn.Parameter(torch.empty(channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, x):
        return torch.ops.bpcompile.conv2d(x, self.weight, self.bias, self.stride, self.padding)


def plan(spec, shape: tuple, what: str) -> LayerPlan:
    return window_plan(spec, shape, what, lambda channels, out_hw, kernel, stride, padding: Conv2d(
        channels, spec.channels, kernel, stride, padding, spec.bias), weights_per_position=False)


def mirror_noise_shape(info, size) -> tuple:
    """Weight mirror's noise for a conv layer: its input shape, or with mirror.conv_noise_size a smaller map
    (never smaller than one kernel window, never larger than the input)."""
    if size is None:
        return tuple(info.in_shape)
    g = info.geometry
    channels, height, width = info.in_shape
    smallest = max(g["kernel"] - 2 * g["padding"], 1)
    return (channels, *(min(max(size, smallest), side) for side in (height, width)))


def samples_per_weight(info, shape, device) -> torch.Tensor:
    """Per kernel offset, the output positions where that offset lands inside the (unpadded) input of one noise
    image of `shape`: how many (position, input) pairs feed each shared weight entry."""
    g = info.geometry
    ones_in = torch.ones(1, *shape, device=device)
    out = [(size + 2 * g["padding"] - g["kernel"]) // g["stride"] + 1 for size in shape[1:]]
    return conv2d_weight(ones_in, (1, shape[0], g["kernel"], g["kernel"]), torch.ones(1, 1, *out, device=device),
                         stride=g["stride"], padding=g["padding"])


FAMILY = register_family(
    "conv2d", "conv2d", conv2d_reference, conv2d_grad_input_reference, conv2d_grad_weight_reference,
    plan=plan, prefix="conv", mirror_noise_shape=mirror_noise_shape, samples_per_weight=samples_per_weight,
    forward_args=lambda info: (info.geometry["stride"], info.geometry["padding"]),
    grad_input_args=lambda info: (info.in_shape[1], info.in_shape[2], info.geometry["stride"], info.geometry["padding"]),
    grad_weight_args=lambda info: (info.geometry["kernel"], info.geometry["stride"], info.geometry["padding"]),
)
