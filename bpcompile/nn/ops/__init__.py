"""Custom ops of the parametric layers (see registry.py for the contract)."""

from . import conv, dense, feedback, locally_connected  # noqa: F401  (registers the ops)
from .registry import FAMILIES, WEIGHT_ARG, OpFamily, all_ops, implementations, role_of

__all__ = ["FAMILIES", "WEIGHT_ARG", "OpFamily", "all_ops", "implementations", "role_of"]
