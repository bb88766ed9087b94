"""Initialisers for parametric layers, driven by an init spec and a generator.

fan_in / fan_out follow the conv convention for locally connected and conv
layers (in/out channels times kernel area), so Glorot means the same thing
for every layer type."""

import math

import torch


def init_tensor(tensor: torch.Tensor, scheme, fan_in: int, fan_out: int, generator: torch.Generator) -> torch.Tensor:
    """Fill `tensor` in place according to `scheme` (an InitSpec model)."""
    with torch.no_grad():
        name = scheme.scheme
        if name == "glorot_uniform":
            bound = scheme.gain * math.sqrt(6.0 / (fan_in + fan_out))
            tensor.uniform_(-bound, bound, generator=generator)
        elif name == "glorot_normal":
            tensor.normal_(0.0, scheme.gain * math.sqrt(2.0 / (fan_in + fan_out)), generator=generator)
        elif name == "normal":
            tensor.normal_(0.0, scheme.std, generator=generator)
        elif name == "kaiming_normal":
            fan = fan_in if scheme.mode == "fan_in" else fan_out
            tensor.normal_(0.0, math.sqrt(2.0 / fan), generator=generator)
        elif name == "torch_default":
            bound = scheme.gain / math.sqrt(fan_in)
            tensor.uniform_(-bound, bound, generator=generator)
        elif name == "orthogonal":
            _orthogonal_(tensor, scheme.gain, generator)
        else:  # pragma: no cover - the spec union lists every scheme
            raise ValueError(f"unknown init scheme {name!r}")
    return tensor


def _orthogonal_(tensor: torch.Tensor, gain: float, generator: torch.Generator) -> None:
    """Orthogonal rows/columns of each (out, fan_in) matrix (per position for LC weights)."""
    matrices = tensor.reshape(-1, tensor.shape[-2], tensor.shape[-1]) if tensor.dim() == 3 else tensor.reshape(1, tensor.shape[0], -1)
    for m in matrices:
        rows, cols = m.shape
        a = torch.randn(max(rows, cols), min(rows, cols), generator=generator, dtype=torch.float64)
        q, r = torch.linalg.qr(a)
        q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
        m.copy_((q if rows >= cols else q.t()).to(m.dtype) * gain)
