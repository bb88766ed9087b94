"""Layer modules with plain-PyTorch reference math, and the network builder."""

from .build import LayerInfo, Network, build_network, resolve_padding
from .init import init_tensor

__all__ = ["LayerInfo", "Network", "build_network", "init_tensor", "resolve_padding"]
