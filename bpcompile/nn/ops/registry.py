"""The parametric layer kinds: every parametric layer is an op family of three custom ops, and its family is
the one place that knows the kind (one file per kind: dense.py, locally_connected.py, conv.py).

Each family registers `forward(x, weight, bias, ...)`, `grad_input(grad_out,
weight, ...)` and `grad_weight(grad_out, x, ...)` as `torch.library` custom ops
in the `bpcompile` namespace, with the forward's autograd formula calling the
other two. Tracing a training step therefore shows every layer's backward as
named nodes whose weight argument (always argument 1) a rule pass can
retarget, and whose implementation a lowering pass can swap.

The weight is argument 1 of `forward` and `grad_input`; `grad_weight` never
reads it. Each op has one or more implementations (plain functions with the
op's signature): 'reference' (plain PyTorch, any device) always, and
'triton' (CUDA) where bpcompile.kernels has one, with 'auto' beside it: the
faster of the two per shape, timed at the first call (compiler/timed_choice.py).

Besides its ops the family carries what the rest of bpcompile asks of a layer
kind: `plan` (spec + input shape -> module, output shape, fans, geometry:
nn/build.py), `prefix` (default layer names), the ops' non-tensor arguments
(nn/ops/maps.py), and for weight mirror how many samples feed each weight
entry per noise image and the shape of that noise. A layer type without a
family is an error wherever it is looked up.
"""

from dataclasses import dataclass, field
from typing import Callable

WEIGHT_ARG = 1


@dataclass
class OpFamily:
    kind: str                      # layer type in the spec: 'dense', 'locally_connected', 'conv2d'
    forward: object                # torch.ops.bpcompile.<...>.default
    grad_input: object
    grad_weight: object
    implementations: dict = field(default_factory=dict)  # op -> {impl name: callable}
    # the ops' non-tensor arguments from a layer's LayerInfo, so rules can call the layer's maps (nn/ops/maps.py)
    forward_args: Callable = lambda info: ()
    grad_input_args: Callable = lambda info: ()
    grad_weight_args: Callable = lambda info: ()
    plan: Callable = None          # (layer spec, input shape, 'layer ... (where, type)') -> shapes.LayerPlan
    prefix: str = "layer"          # default names: '<prefix>1', '<prefix>2', ...
    # weight mirror: (info, per-example noise shape, device) -> samples feeding each weight entry per noise image
    samples_per_weight: Callable = lambda info, shape, device: 1
    # weight mirror: (info, mirror.conv_noise_size or None) -> per-example noise shape
    mirror_noise_shape: Callable = lambda info, size: tuple(info.in_shape)


FAMILIES: dict[str, OpFamily] = {}
# implementations of ops outside the families (feedback products inserted by rule passes)
OTHER_IMPLEMENTATIONS: dict = {}


def register_op(op, **impls: Callable) -> None:
    """Implementations of a stand-alone op, e.g. register_op(torch.ops.bpcompile.x.default, reference=fn)."""
    OTHER_IMPLEMENTATIONS.setdefault(op, {}).update(impls)


def register_family(kind: str, op_name: str, forward: Callable, grad_input: Callable, grad_weight: Callable,
                    **args: Callable) -> OpFamily:
    """Register the ops `bpcompile::<op_name>`, `<op_name>_grad_input`, `<op_name>_grad_weight` (already defined
    with torch.library) as the family of layer type `kind`, each with its 'reference' implementation. `args`:
    forward_args / grad_input_args / grad_weight_args, each info -> the op's arguments after its tensors."""
    import torch

    ops = [getattr(torch.ops.bpcompile, f"{op_name}{suffix}").default for suffix in ("", "_grad_input", "_grad_weight")]
    family = OpFamily(kind=kind, forward=ops[0], grad_input=ops[1], grad_weight=ops[2], implementations={
        op: {"reference": fn} for op, fn in zip(ops, (forward, grad_input, grad_weight))
    }, **args)
    FAMILIES[kind] = family
    return family


def role_of(target) -> tuple[OpFamily, str] | None:
    """(family, 'forward' | 'grad_input' | 'grad_weight') of a graph node target, or None."""
    for family in FAMILIES.values():
        for role in ("forward", "grad_input", "grad_weight"):
            if getattr(family, role) is target:
                return family, role
    return None


def implementations(target) -> dict[str, Callable]:
    for family in FAMILIES.values():
        if target in family.implementations:
            return family.implementations[target]
    return OTHER_IMPLEMENTATIONS.get(target, {})


def all_ops() -> list:
    """Every bpcompile op overload: the families' and the stand-alone ones (for autocast registration)."""
    ops = [getattr(family, role) for family in FAMILIES.values() for role in ("forward", "grad_input", "grad_weight")]
    return ops + list(OTHER_IMPLEMENTATIONS)
