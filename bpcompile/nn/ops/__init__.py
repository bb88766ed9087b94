"""Custom ops of the parametric layers (see registry.py for the contract)."""

from . import conv, dense, locally_connected  # noqa: F401  (registers the op families)
from .registry import FAMILIES, WEIGHT_ARG, OpFamily, implementations, role_of

__all__ = ["FAMILIES", "WEIGHT_ARG", "OpFamily", "implementations", "role_of"]
