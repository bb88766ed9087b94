"""Feedback products that rule passes insert into the training graph.

* `direct_feedback(error, feedback, shape)`: DFA's projection of the output
  error e (batch, classes) through a fixed matrix B (classes, features) to a
  layer's input, reshaped to that input's per-example `shape`.
* `direct_feedback_conv(error, feedback, shape, stride, padding)`: BioTorch's
  DFA form for conv layers: B is a (classes, C_in, k, k) kernel, the output
  error is repeated over every output position of the layer and convolved
  back (transposed) through B at the layer's stride and padding
  (jsalbert/biotorch, layers/dfa/conv.py, `dfa_backward_hook`).
* `sign_feedback(weight, magnitude, scale)`: sign symmetry's stand-in for W,
  sign(W) * magnitude * scale, computed from the current W every step (no
  stored copy that could go stale). magnitude is a tensor of W's shape
  (fixed- or batch-random magnitudes) or None.

Both are custom ops so `inspect` names them and lowering can swap their
implementation (the Triton feedback kernels will register here)."""

from typing import Optional

import torch
from torch.nn.grad import conv2d_input

from .registry import register_op


def direct_feedback_reference(error: torch.Tensor, feedback: torch.Tensor, shape: list[int]) -> torch.Tensor:
    return error.mm(feedback).view(error.shape[0], *shape)


def direct_feedback_conv_reference(error: torch.Tensor, feedback: torch.Tensor, shape: list[int], stride: int,
                                  padding: int) -> torch.Tensor:
    channels, height, width = shape
    kernel = feedback.shape[-1]
    h_out = (height + 2 * padding - kernel) // stride + 1
    w_out = (width + 2 * padding - kernel) // stride + 1
    repeated = error[:, :, None, None].expand(*error.shape, h_out, w_out)     # e at every output position
    return conv2d_input((error.shape[0], channels, height, width), feedback, repeated, stride=stride,
                        padding=padding)


def sign_feedback_reference(weight: torch.Tensor, magnitude: Optional[torch.Tensor], scale: float) -> torch.Tensor:
    out = torch.sign(weight)
    if magnitude is not None:
        out = out * magnitude
    return out * scale if scale != 1.0 else out


@torch.library.custom_op("bpcompile::direct_feedback", mutates_args=())
def direct_feedback(error: torch.Tensor, feedback: torch.Tensor, shape: list[int]) -> torch.Tensor:
    return direct_feedback_reference(error, feedback, shape).clone()


@direct_feedback.register_fake
def _(error, feedback, shape):
    return error.new_empty(error.shape[0], *shape)


@torch.library.custom_op("bpcompile::direct_feedback_conv", mutates_args=())
def direct_feedback_conv(error: torch.Tensor, feedback: torch.Tensor, shape: list[int], stride: int,
                         padding: int) -> torch.Tensor:
    return direct_feedback_conv_reference(error, feedback, shape, stride, padding).contiguous()


@direct_feedback_conv.register_fake
def _(error, feedback, shape, stride, padding):
    return error.new_empty(error.shape[0], *shape)


@torch.library.custom_op("bpcompile::sign_feedback", mutates_args=())
def sign_feedback(weight: torch.Tensor, magnitude: Optional[torch.Tensor], scale: float) -> torch.Tensor:
    return sign_feedback_reference(weight, magnitude, scale).clone()


@sign_feedback.register_fake
def _(weight, magnitude, scale):
    return torch.empty_like(weight)


register_op(torch.ops.bpcompile.direct_feedback.default, reference=direct_feedback_reference)
register_op(torch.ops.bpcompile.direct_feedback_conv.default, reference=direct_feedback_conv_reference)
register_op(torch.ops.bpcompile.sign_feedback.default, reference=sign_feedback_reference)
