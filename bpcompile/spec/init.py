"""Weight initialisation schemes (discriminated by `scheme`)."""

from typing import Annotated, Literal, Union

from pydantic import Field

from .base import SpecModel


class GlorotUniform(SpecModel):
    """Glorot/Xavier uniform, U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)), as in Bartunov et al.

    For locally connected and conv layers fan_in = in_channels * k * k and
    fan_out = out_channels * k * k (the conv convention)."""

    scheme: Literal["glorot_uniform"] = "glorot_uniform"
    gain: float = Field(1.0, gt=0)


class GlorotNormal(SpecModel):
    """Glorot/Xavier normal, N(0, gain^2 * 2 / (fan_in + fan_out))."""

    scheme: Literal["glorot_normal"] = "glorot_normal"
    gain: float = Field(1.0, gt=0)


class Normal(SpecModel):
    """Normal with a given standard deviation, N(0, std^2)."""

    scheme: Literal["normal"] = "normal"
    std: float = Field(0.01, gt=0)


class Orthogonal(SpecModel):
    """(Semi-)orthogonal matrix over (out, fan_in), scaled by gain."""

    scheme: Literal["orthogonal"] = "orthogonal"
    gain: float = Field(1.0, gt=0)


class KaimingNormal(SpecModel):
    """He/Kaiming normal for ReLU nets, N(0, 2 / fan), fan = fan_in or fan_out."""

    scheme: Literal["kaiming_normal"] = "kaiming_normal"
    mode: Literal["fan_in", "fan_out"] = "fan_out"


class TorchDefault(SpecModel):
    """PyTorch's own default for nn.Linear and nn.Conv2d, kaiming_uniform_(a=sqrt(5)): U(-a, a) with
    a = gain / sqrt(fan_in) (BioTorch's init option other than 'xavier' draws W and B this way). About half
    Glorot's scale on the narrowing dense layers of a LeNet. Biases stay zero, as under every scheme here
    (PyTorch draws them from the same law)."""

    scheme: Literal["torch_default"] = "torch_default"
    gain: float = Field(1.0, gt=0)


InitSpec = Annotated[
    Union[GlorotUniform, GlorotNormal, Normal, Orthogonal, KaimingNormal, TorchDefault],
    Field(discriminator="scheme"),
]
