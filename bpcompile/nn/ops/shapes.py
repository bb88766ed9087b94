"""Shape arithmetic the layer kinds share: padding names, sliding windows, and the one-tensor size limit."""

from dataclasses import dataclass, field

from ...errors import BpcompileError

MAX_TENSOR_ELEMENTS = 2**32   # one weight or one example's activation (16 GiB in fp32); the whole run: nn/budget.py


@dataclass
class LayerPlan:
    """What a parametric layer kind makes of its spec and input shape (nn/build.py records it as a LayerInfo)."""

    module: object
    out_shape: tuple
    fan_in: int
    fan_out: int
    geometry: dict = field(default_factory=dict)


def resolve_padding(padding, kernel: int) -> int:
    if padding == "same":
        return kernel // 2
    if padding == "valid":
        return 0
    return padding


def check_size(what: str, quantity: str, count: int, how: str) -> None:
    """Refuse a tensor too large to allocate anywhere before torch is asked to (its size arithmetic overflows
    near 2^63 elements; long before that the allocation fails with a traceback)."""
    if count > MAX_TENSOR_ELEMENTS:
        raise BpcompileError(f"{what} would have {count:.3g} {quantity} ({how}); one tensor may hold at most "
                             f"{MAX_TENSOR_ELEMENTS:,} elements here: make the layer or its input smaller.")


def window(spec, shape: tuple, what: str) -> tuple[int, int, int, int, int]:
    """(kernel, stride, padding, out height, out width) of a sliding-window layer (LC, conv, pool) on a
    (channels, height, width) input; errors name the layer."""
    if len(shape) != 3:
        raise BpcompileError(f"{what} needs a (channels, height, width) input but gets shape {shape}.")
    _, height, width = shape
    kernel = spec.kernel
    stride = spec.stride or kernel  # pool: stride defaults to the kernel
    padding = resolve_padding(spec.padding, kernel)
    h_out = (height + 2 * padding - kernel) // stride + 1
    w_out = (width + 2 * padding - kernel) // stride + 1
    if h_out < 1 or w_out < 1:
        raise BpcompileError(
            f"{what} does not fit its input: kernel {kernel} with padding {padding} is larger than the "
            f"{height}x{width} input (shape {shape})."
        )
    return kernel, stride, padding, h_out, w_out


def window_plan(spec, shape: tuple, what: str, module_of, weights_per_position: bool) -> LayerPlan:
    """The plan of a parametric sliding-window layer (LC: one weight per position; conv: shared)."""
    kernel, stride, padding, h_out, w_out = window(spec, shape, what)
    channels = shape[0]
    out_shape = (spec.channels, h_out, w_out)
    check_size(what, "outputs per example", spec.channels * h_out * w_out, f"output shape {out_shape}")
    weights = spec.channels * channels * kernel * kernel * (h_out * w_out if weights_per_position else 1)
    check_size(what, "weights", weights, f"kernel {kernel}, {channels} -> {spec.channels} channels"
               + (f", {h_out}x{w_out} positions" if weights_per_position else ""))
    module = module_of(channels, (h_out, w_out), kernel, stride, padding)
    return LayerPlan(module, out_shape, channels * kernel * kernel, spec.channels * kernel * kernel,
                     {"kernel": kernel, "stride": stride, "padding": padding})
