"""Everything that refuses a spec before training, in one place: `validate`, `inspect`, `run` and `--dry-run`
all call `check_spec`, so validate accepts exactly what the others can start.

Order matters: the cheap checks of the spec itself, then the size budget
(shapes planned on the meta device, nothing allocated), and only then the
network is built and the rules are checked against its layers."""

import torch

from ..errors import BpcompileError, NotImplementedYet
from ..nn import build_network
from ..nn.build import plan_network
from ..nn.budget import Estimate, check_budget, device_memory_bytes
from ..spec import data_shapes
from .precision import check_precision


def input_spec(spec) -> tuple[tuple[int, ...], int]:
    """(input shape, classes) from the data spec, checked against network.input_shape."""
    shape, classes = data_shapes(spec.data)
    declared = spec.network.input_shape
    if declared is not None and tuple(declared) != tuple(shape):
        raise BpcompileError(
            f"network.input_shape is {list(declared)} but data.name={spec.data.name!r} gives inputs of shape "
            f"{list(shape)}: remove network.input_shape or make them agree."
        )
    return tuple(shape), classes


def check_memory(spec, device: torch.device | None = None) -> Estimate:
    """The size budget alone (no network is built): the runtime calls it before loading data."""
    input_shape, classes = input_spec(spec)
    estimate = check_budget(spec, input_shape, classes)
    if device is not None:
        where = "the GPU's memory" if device.type == "cuda" else "half the host memory available now"
        check_budget(spec, input_shape, classes, device_memory_bytes(device), where)
    return estimate


def check_spec(spec, device: torch.device | None = None):
    """(network, rules per layer, size estimate) of a spec that can be compiled, or a BpcompileError naming what
    cannot. With a `device`, the budget is also held against that device's memory and the network is built
    (initialised, on the CPU); without one it is only planned on the meta device (`validate`)."""
    from .rules import pass_for   # rules import the compiler's passes; keep this module light

    train = spec.train
    for rule in [spec.rule] + [override.rule for override in spec.rule_overrides]:
        rule_pass = pass_for(rule)
        if (train.precision == "bf16" and not rule_pass.supports_bf16) or (
                train.channels_last and not rule_pass.supports_channels_last):
            raise NotImplementedYet(
                f"train.precision='bf16' and train.channels_last are not built for rule {rule.name!r} "
                f"({rule_pass.family.replace('_', ' ')}) yet; it runs in fp32 or tf32 with the default memory format "
                f"for now."
            )
    check_precision(train.precision)
    estimate = check_memory(spec, device)
    input_shape, classes = input_spec(spec)
    if device is None:   # validate: judge the layers on a meta-device plan; a 16 GiB layer is valid, not allocated
        with torch.device("meta"):
            network = plan_network(spec.network, input_shape, classes)
    else:
        network = build_network(spec.network, input_shape, classes, train.seed)
    from .rules import check_implemented
    assigned = check_implemented(spec, network)
    return network, assigned, estimate
