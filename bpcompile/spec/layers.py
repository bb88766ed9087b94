"""Layer specs (discriminated by `type`).

Parametric layers carry a `name` (unique in the network; generated from the
type and position when left out) that rule overrides, metrics and `inspect`
refer to. Macros (`residual_block`, `resnet`) expand into plain layers when the
network is built; `bpcompile inspect` shows the expansion.
"""

from typing import Annotated, Literal, Optional, Union

from pydantic import Field

from .base import SpecModel
from .init import InitSpec

# Size bounds: far above any network of this field, low enough that no product of them overflows 64 bits; what a
# spec may allocate in all is judged by the size budget (nn/budget.py).
MAX_UNITS = 2**24
MAX_CHANNELS = 2**16
MAX_WINDOW = 1024      # kernel, stride and padding
MAX_CLASSES = 2**20

Padding = Union[Annotated[int, Field(ge=0, le=MAX_WINDOW)], Literal["same", "valid"]]


class _Named(SpecModel):
    name: Optional[str] = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Layer name, unique in the network; default: type and position, e.g. 'dense3'.",
    )


class Dense(_Named):
    """Fully connected layer y = W x + b, W of shape (units, in_features)."""

    type: Literal["dense"] = "dense"
    units: int = Field(gt=0, le=MAX_UNITS)
    bias: bool = True
    init: Optional[InitSpec] = Field(None, description="Overrides network.init for this layer.")


class _Windowed(_Named):
    channels: int = Field(gt=0, le=MAX_CHANNELS, description="Output channels.")
    kernel: int = Field(gt=0, le=MAX_WINDOW)
    stride: int = Field(1, gt=0, le=MAX_WINDOW)
    padding: Padding = "same"
    bias: bool = True
    init: Optional[InitSpec] = Field(None, description="Overrides network.init for this layer.")


class LocallyConnected(_Windowed):
    """Locally connected 2-D layer: a convolution whose weights are not shared
    across output positions. Weight layout (positions, out channels,
    kernel * kernel * in channels), kernel offsets ordered (row, column,
    channel); bias (out channels, out height, out width). padding 'same' =
    kernel // 2 on each side (output = ceil(input / stride)), 'valid' = 0."""

    type: Literal["locally_connected"] = "locally_connected"


class Conv2d(_Windowed):
    """2-D convolution (shared weights), weight (out, in, k, k); padding as for locally_connected."""

    type: Literal["conv2d"] = "conv2d"


class Activation(SpecModel):
    """Element-wise nonlinearity."""

    type: Literal["activation"] = "activation"
    fn: Literal["tanh", "relu", "sigmoid", "leaky_relu", "elu", "gelu", "identity"] = "tanh"


class BatchNorm(_Named):
    """Batch normalisation over channels (2-D inputs) or features (1-D inputs)."""

    type: Literal["batch_norm"] = "batch_norm"
    momentum: float = Field(0.1, gt=0, le=1)
    eps: float = Field(1e-5, gt=0, le=1)
    affine: bool = True


class Flatten(SpecModel):
    """Flattens (C, H, W) to C*H*W features."""

    type: Literal["flatten"] = "flatten"


class Pool(SpecModel):
    """Max or average pooling; stride defaults to the kernel size."""

    type: Literal["pool"] = "pool"
    kind: Literal["max", "avg"] = "max"
    kernel: int = Field(2, gt=0, le=MAX_WINDOW)
    stride: Optional[int] = Field(None, gt=0, le=MAX_WINDOW)
    padding: int = Field(0, ge=0, le=MAX_WINDOW)


class GlobalAvgPool(SpecModel):
    """Average over all spatial positions: (C, H, W) -> (C,)."""

    type: Literal["global_avg_pool"] = "global_avg_pool"


class ResidualBlock(_Named):
    """ResNet block: basic (two 3x3 convs) or bottleneck (1x1, 3x3, 1x1 with
    4x expansion), each conv followed by batch norm, ReLU after the sum; a 1x1
    conv + batch norm projection shortcut when the shape changes."""

    type: Literal["residual_block"] = "residual_block"
    channels: int = Field(gt=0, le=MAX_CHANNELS, description="Block width (the bottleneck's inner width).")
    stride: int = Field(1, gt=0, le=MAX_WINDOW)
    bottleneck: bool = False


class ResNet(_Named):
    """ResNet-18 / ResNet-50 macro: stem, four stages of residual blocks,
    global average pooling and a dense classifier of `num_classes` units.
    Stem 'imagenet': 7x7/2 conv, BN, ReLU, 3x3/2 max pool; 'cifar': 3x3/1
    conv, BN, ReLU."""

    type: Literal["resnet"] = "resnet"
    depth: Literal[18, 50] = 18
    stem: Literal["imagenet", "cifar"] = "imagenet"
    width: int = Field(64, gt=0, le=MAX_CHANNELS // 32, description="Channels of the first stage (the last "
                       "stage of a ResNet-50 has 32x as many).")
    num_classes: int = Field(1000, gt=0, le=MAX_CLASSES)
    head_init: Optional[InitSpec] = Field(
        None, description="Initialisation of the classifier 'fc' (default network.init); He init suits the convs, "
                          "but on the head it gives logits of size ~10 and a first loss far above log(classes)."
    )


LayerSpec = Annotated[
    Union[Dense, LocallyConnected, Conv2d, Activation, BatchNorm, Flatten, Pool, GlobalAvgPool, ResidualBlock, ResNet],
    Field(discriminator="type"),
]

PARAMETRIC_TYPES = ("dense", "locally_connected", "conv2d")
