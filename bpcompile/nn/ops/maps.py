"""A parametric layer's linear map, its transpose and its outer product, as custom-op calls.

Rules that run a layer's map outside the traced network (weight mirror's noise
drive, target propagation's inverses) call these, so their graphs hold the same
op nodes as the training graph and get the same lowering (Triton on CUDA). The
layer's op family (registry.py) supplies the ops and their arguments; a layer
type without a family is an error, never another family's map."""

from ...errors import BpcompileError
from .registry import FAMILIES, OpFamily


def family_of(info) -> OpFamily:
    family = FAMILIES.get(info.type)
    if family is None:
        raise BpcompileError(
            f"layer {info.name!r} has type {info.type!r}, which has no op family (known: {', '.join(FAMILIES)}); "
            f"a new layer kind registers one with nn.ops.registry.register_family."
        )
    return family


def linear_map(info, x, weight, bias=None):
    """y = W x (+ b) through the layer's forward op; info is the layer's LayerInfo."""
    family = family_of(info)
    return family.forward(x, weight, bias, *family.forward_args(info))


def transpose_map(info, h, weight):
    """V^T h for a V in W's layout: the layer's input-gradient op, a map from the layer's output
    space back to its input space with the connectivity of W^T (the transpose of an LC map)."""
    family = family_of(info)
    return family.grad_input(h, weight, *family.grad_input_args(info))


def outer(info, y, x):
    """Sum over the batch of y x^T in W's layout: the layer's weight-gradient op on (y, x)."""
    family = family_of(info)
    return family.grad_weight(y, x, *family.grad_weight_args(info))
