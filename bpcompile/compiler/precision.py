"""Numeric formats traced into the graphs: bf16 autocast and channels-last.

bf16 is autocast *at trace time*: the traced graphs hold the casts as plain
`_to_copy` nodes (parameters to bf16 before each parametric op, the loss in
fp32, every gradient back to fp32), so `inspect` shows exactly what runs and
the runtime needs no autocast context. Our custom ops join autocast through
`torch.library.register_autocast` (inputs cast to bf16, as aten's matmuls and
convolutions are). Batch norm keeps fp32 statistics and parameters.

Channels-last is a `contiguous(memory_format=channels_last)` of the image
batch at the top of each graph; the conv ops keep the memory format of their
input, so every 4-D activation after it stays NHWC."""

import contextlib

import torch

from ..errors import BpcompileError
from ..nn.ops import all_ops

_REGISTERED: set = set()


def check_precision(precision: str) -> None:
    """Refuse a precision this torch cannot trace."""
    if precision == "bf16" and not hasattr(torch.library, "register_autocast"):
        raise BpcompileError(
            f"train.precision='bf16' needs torch.library.register_autocast (torch >= 2.5); this is torch "
            f"{torch.__version__}: use precision 'fp32' or 'tf32', or a newer torch."
        )


def _register_autocast(device_type: str) -> None:
    if device_type in _REGISTERED:
        return
    check_precision("bf16")
    for op in all_ops():
        torch.library.register_autocast(op.name(), device_type, torch.bfloat16)
    _REGISTERED.add(device_type)


def trace_context(precision: str, device: torch.device):
    """The context the graphs are traced in: autocast to bf16 for 'bf16', nothing otherwise."""
    if precision != "bf16":
        return contextlib.nullcontext()
    _register_autocast(device.type)
    return torch.autocast(device.type, dtype=torch.bfloat16)


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """Inside a traced step: an image batch in NHWC memory order (other inputs unchanged)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x

