"""The locally connected 2-D layer kind: its custom ops, plain-PyTorch reference, module and plan.

out[b, o, p] = sum_k W[p, o, k] * patch[b, k, p] + bias[o, p], for output
positions p = (row, col) and patch entries k = (kernel row, kernel col, input
channel), channel fastest. W has shape (P, O, K) with P = H_out * W_out and
K = kernel * kernel * C_in; the bias has shape (O, H_out, W_out).

The reference gathers patches from a channels-last (NHWC) copy of the padded
input through one strided view, into a (P, B, K) tensor, and multiplies with
one batched matmul over positions: no 6-D broadcast, no unfold + einsum
layout shuffles. It still materialises the patches (that is what the Triton
kernels avoid).
"""

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_family
from .shapes import LayerPlan, window_plan


def lc_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _padded_nhwc(x: torch.Tensor, padding: int) -> torch.Tensor:
    x = x.permute(0, 2, 3, 1)
    return F.pad(x, (0, 0, padding, padding, padding, padding)) if padding else x.contiguous()


def lc_patches(x: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """(P, B, K) patches of x (B, C, H, W), K ordered (kernel row, kernel col, channel)."""
    xp = _padded_nhwc(x, padding)
    batch, hp, wp, channels = xp.shape
    h_out = (hp - kernel) // stride + 1
    w_out = (wp - kernel) // stride + 1
    sb, sh, sw, sc = xp.stride()
    windows = xp.as_strided(
        (h_out, w_out, batch, kernel, kernel, channels), (stride * sh, stride * sw, sb, sh, sw, sc)
    )
    return windows.reshape(h_out * w_out, batch, kernel * kernel * channels)


def _positions_first(grad_out: torch.Tensor) -> torch.Tensor:
    """(B, O, H, W) -> (P, B, O), a view of a (B, P, O) copy. Each position's (B, O) matrix then has unit
    stride along O, which batched matmuls take as it is; the plain permuted view has unit stride along P (the
    batch of matrices), which made the CPU bmm 4-9x slower than the forward's at cifar_lc1 (measured)."""
    batch, out_ch = grad_out.shape[:2]
    return grad_out.reshape(batch, out_ch, -1).transpose(1, 2).contiguous().permute(1, 0, 2)


def lc_forward_reference(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                         kernel: int, stride: int, padding: int) -> torch.Tensor:
    batch = x.shape[0]
    h_out = lc_output_size(x.shape[2], kernel, stride, padding)
    w_out = lc_output_size(x.shape[3], kernel, stride, padding)
    positions, out_ch, _ = weight.shape
    patches = lc_patches(x, kernel, stride, padding)                  # (P, B, K)
    if bias is None:
        out = torch.bmm(patches, weight.transpose(1, 2))              # (P, B, O)
    else:
        out = torch.baddbmm(bias.reshape(out_ch, positions).t().unsqueeze(1), patches, weight.transpose(1, 2))
    # contiguous, as the fake kernel promises: later view nodes in the traced graph rely on it
    return out.permute(1, 2, 0).reshape(batch, out_ch, h_out, w_out).contiguous()


def lc_grad_input_reference(grad_out: torch.Tensor, weight: torch.Tensor, in_height: int, in_width: int,
                            kernel: int, stride: int, padding: int) -> torch.Tensor:
    # BP reads W here; a feedback rule passes B (same layout as W) instead
    batch, _, h_out, w_out = grad_out.shape
    channels = weight.shape[2] // (kernel * kernel)
    grad_patches = torch.bmm(_positions_first(grad_out), weight)      # (P, B, K)
    grad_patches = grad_patches.reshape(h_out, w_out, batch, kernel, kernel, channels)
    grad_padded = grad_out.new_zeros(batch, in_height + 2 * padding, in_width + 2 * padding, channels)
    # fold: each kernel offset adds one strided slab of the patch gradients
    for i in range(kernel):
        for j in range(kernel):
            grad_padded[:, i:i + stride * (h_out - 1) + 1:stride, j:j + stride * (w_out - 1) + 1:stride, :] += (
                grad_patches[:, :, :, i, j, :].permute(2, 0, 1, 3)
            )
    grad_x = grad_padded[:, padding:padding + in_height, padding:padding + in_width, :]
    return grad_x.permute(0, 3, 1, 2).contiguous()


def lc_grad_weight_reference(grad_out: torch.Tensor, x: torch.Tensor, kernel: int, stride: int,
                             padding: int) -> torch.Tensor:
    patches = lc_patches(x, kernel, stride, padding)                  # recomputed: cheaper than keeping them
    return torch.bmm(_positions_first(grad_out).transpose(1, 2), patches)   # (P, O, K)


@torch.library.custom_op("bpcompile::locally_connected", mutates_args=())
def locally_connected(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                      kernel: int, stride: int, padding: int) -> torch.Tensor:
    return lc_forward_reference(x, weight, bias, kernel, stride, padding)


@locally_connected.register_fake
def _(x, weight, bias, kernel, stride, padding):
    h_out = lc_output_size(x.shape[2], kernel, stride, padding)
    w_out = lc_output_size(x.shape[3], kernel, stride, padding)
    return x.new_empty(x.shape[0], weight.shape[1], h_out, w_out)


@torch.library.custom_op("bpcompile::locally_connected_grad_input", mutates_args=())
def locally_connected_grad_input(grad_out: torch.Tensor, weight: torch.Tensor, in_height: int, in_width: int,
                                 kernel: int, stride: int, padding: int) -> torch.Tensor:
    return lc_grad_input_reference(grad_out, weight, in_height, in_width, kernel, stride, padding)


@locally_connected_grad_input.register_fake
def _(grad_out, weight, in_height, in_width, kernel, stride, padding):
    return grad_out.new_empty(grad_out.shape[0], weight.shape[2] // (kernel * kernel), in_height, in_width)


@torch.library.custom_op("bpcompile::locally_connected_grad_weight", mutates_args=())
def locally_connected_grad_weight(grad_out: torch.Tensor, x: torch.Tensor, kernel: int, stride: int,
                                  padding: int) -> torch.Tensor:
    return lc_grad_weight_reference(grad_out, x, kernel, stride, padding)


@locally_connected_grad_weight.register_fake
def _(grad_out, x, kernel, stride, padding):
    positions = grad_out.shape[2] * grad_out.shape[3]
    return grad_out.new_empty(positions, grad_out.shape[1], x.shape[1] * kernel * kernel)


def _setup(ctx, inputs, output):
    x, weight, bias, kernel, stride, padding = inputs
    ctx.save_for_backward(x, weight)
    ctx.geometry = (kernel, stride, padding)
    ctx.has_bias = bias is not None


def _backward(ctx, grad_out):
    x, weight = ctx.saved_tensors
    kernel, stride, padding = ctx.geometry
    grad_x = grad_w = grad_b = None
    if ctx.needs_input_grad[0]:
        grad_x = locally_connected_grad_input(grad_out, weight, x.shape[2], x.shape[3], kernel, stride, padding)
    if ctx.needs_input_grad[1]:
        grad_w = locally_connected_grad_weight(grad_out, x, kernel, stride, padding)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        grad_b = grad_out.sum(0)
    return grad_x, grad_w, grad_b, None, None, None


locally_connected.register_autograd(_backward, setup_context=_setup)


# grad_input is also the LC layer's transposed map (target propagation's inverses have W^T's
# connectivity): <T(h; V), dy> = <h, lc(dy; V)>, so dL/dh = lc(dy; V) and dL/dV = grad_weight(h, dy)
def _setup_transpose(ctx, inputs, output):
    h, weight, _, _, kernel, stride, padding = inputs
    ctx.save_for_backward(h, weight)
    ctx.geometry = (kernel, stride, padding)


def _backward_transpose(ctx, grad_out):
    h, weight = ctx.saved_tensors
    kernel, stride, padding = ctx.geometry
    grad_h = locally_connected(grad_out, weight, None, kernel, stride, padding) if ctx.needs_input_grad[0] else None
    grad_w = locally_connected_grad_weight(h, grad_out, kernel, stride, padding) if ctx.needs_input_grad[1] else None
    return grad_h, grad_w, None, None, None, None, None


locally_connected_grad_input.register_autograd(_backward_transpose, setup_context=_setup_transpose)

class LocallyConnected2d(nn.Module):
    """Weight (P, O, k*k*C), bias (O, H_out, W_out)."""

    def __init__(self, in_channels: int, out_hw: tuple[int, int], channels: int, kernel: int, stride: int,
                 padding: int, bias: bool):
        super().__init__()
        positions = out_hw[0] * out_hw[1]
        self.kernel, self.stride, self.padding = kernel, stride, padding
        self.weight = nn.Parameter(torch.empty(positions, channels, kernel * kernel * in_channels))
        self.bias = nn.Parameter(torch.zeros(channels, *out_hw)) if bias else None

    def forward(self, x):
        return torch.ops.bpcompile.locally_connected(x, self.weight, self.bias, self.kernel, self.stride, self.padding)


def plan(spec, shape: tuple, what: str) -> LayerPlan:
    return window_plan(spec, shape, what, lambda channels, out_hw, kernel, stride, padding: LocallyConnected2d(
        channels, out_hw, spec.channels, kernel, stride, padding, spec.bias), weights_per_position=True)


def _window(info) -> tuple:
    g = info.geometry
    return g["kernel"], g["stride"], g["padding"]


FAMILY = register_family(
    "locally_connected", "locally_connected", lc_forward_reference, lc_grad_input_reference, lc_grad_weight_reference,
    plan=plan, prefix="lc", forward_args=_window,
    grad_input_args=lambda info: (info.in_shape[1], info.in_shape[2], *_window(info)),
    grad_weight_args=_window,
)
