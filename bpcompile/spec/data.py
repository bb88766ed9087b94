"""Data sets (discriminated by `name`).

Images are scaled to [0, 1] and, with normalize='standardize', shifted and
scaled per channel by the training set's mean and standard deviation."""

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, model_validator

from .base import SpecModel

MAX_BATCH = 2**20
MAX_EXAMPLES = 2**26     # validation_size, synthetic set sizes
MAX_IMAGE = 2**14        # image height/width, input_shape entries
MAX_CLASSES = 2**20
SEED_LIMIT = 2**32

# (features,) or (channels, height, width), every entry >= 1
InputShape = Annotated[list[Annotated[int, Field(ge=1, le=MAX_IMAGE)]], Field(min_length=1, max_length=3)]


def check_input_shape(shape, field: str):
    if shape is not None and len(shape) == 2:
        raise ValueError(f"{field} is (features,) or (channels, height, width), not {list(shape)}")


class _DataCommon(SpecModel):
    batch_size: int = Field(128, gt=0, le=MAX_BATCH, description="Training batch size.")
    eval_batch_size: int = Field(1000, gt=0, le=MAX_BATCH, description="Batch size for evaluation passes.")
    augment: list[Literal["hflip", "crop"]] = Field(
        default_factory=list, description="Training augmentation: random horizontal flip, random 4-pixel-padded crop."
    )
    dir: Optional[str] = Field(
        None, description="Data directory; the CLI's --data-dir, then $BPCOMPILE_DATA, then the user cache are tried after it."
    )
    normalize: Literal["standardize", "unit"] = Field(
        "standardize", description="'unit': pixels in [0, 1]; 'standardize': then per-channel zero mean, unit variance."
    )
    validation_size: int = Field(
        0, ge=0, le=MAX_EXAMPLES, description="Training examples held out (last ones after a seeded shuffle) as a validation split."
    )
    device_resident: Literal["auto", "always", "never"] = Field(
        "auto", description="Keep the whole set on the training device and index batches there ('auto': when it fits)."
    )


_IMAGE_SIZE = Field(
    None, ge=8, le=512, description="Resize the 28x28 images to image_size x image_size (bilinear, rounded back to "
    "8-bit pixels, as torchvision's Resize on the PIL image) when loading; BioTorch feeds its LeNet 32x32 MNIST.",
)


class MNIST(_DataCommon):
    """MNIST from the official IDX files. subset='embedded' uses the copy of the
    official 10k test set shipped in the package (8000 train / 2000 test)."""

    name: Literal["mnist"] = "mnist"
    image_size: Optional[int] = _IMAGE_SIZE
    subset: Literal["full", "embedded"] = "full"
    download: bool = Field(True, description="Download (md5-checked) into the user cache when no local copy is found.")


class FashionMNIST(_DataCommon):
    """Fashion-MNIST (Zalando), same IDX format as MNIST."""

    name: Literal["fashion_mnist"] = "fashion_mnist"
    image_size: Optional[int] = _IMAGE_SIZE
    download: bool = True


class CIFAR10(_DataCommon):
    """CIFAR-10 from the official python pickle batches (cifar-10-batches-py)."""

    name: Literal["cifar10"] = "cifar10"
    download: bool = True


class ImageNet(_DataCommon):
    """ImageNet (ILSVRC-2012) in the standard train/val class-folder layout,
    decoded and augmented in worker processes."""

    name: Literal["imagenet"] = "imagenet"
    image_size: int = Field(224, gt=0, le=MAX_IMAGE)
    num_classes: int = Field(1000, ge=2, le=MAX_CLASSES, description="Class folders in train/ (checked when loading); 1000 for ILSVRC-2012.")
    resize_size: int = Field(256, gt=0, le=MAX_IMAGE, description="Evaluation: resize the short side, then centre crop image_size.")
    workers: int = Field(8, ge=0, le=1024)
    batch_size: int = Field(256, gt=0, le=MAX_BATCH)
    eval_batch_size: int = Field(256, gt=0, le=MAX_BATCH)
    augment: list[Literal["hflip", "crop", "random_resized_crop"]] = Field(
        default_factory=lambda: ["random_resized_crop", "hflip"]
    )


class Synthetic(_DataCommon):
    """Random inputs of any shape labelled by a fixed random teacher network
    (so the task is learnable); reproducible from data_seed."""

    name: Literal["synthetic"] = "synthetic"
    input_shape: InputShape = Field(default_factory=lambda: [1, 28, 28])
    num_classes: int = Field(10, ge=2, le=MAX_CLASSES)
    train_size: int = Field(2048, gt=0, le=MAX_EXAMPLES)
    test_size: int = Field(512, gt=0, le=MAX_EXAMPLES)
    data_seed: int = Field(0, ge=0, lt=SEED_LIMIT)

    @model_validator(mode="after")
    def _shape(self):
        check_input_shape(self.input_shape, "data.input_shape")
        return self


DataSpec = Annotated[Union[MNIST, FashionMNIST, CIFAR10, ImageNet, Synthetic], Field(discriminator="name")]

# Shapes known without reading any file (used by --dry-run and shape checks).
KNOWN_SHAPES = {
    "mnist": ((1, 28, 28), 10),
    "fashion_mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
}


def data_shapes(spec) -> tuple[tuple[int, ...], int]:
    """(input shape, number of classes) of a data spec, without loading it."""
    if spec.name == "synthetic":
        return tuple(spec.input_shape), spec.num_classes
    if spec.name == "imagenet":
        return (3, spec.image_size, spec.image_size), spec.num_classes
    shape, classes = KNOWN_SHAPES[spec.name]
    size = getattr(spec, "image_size", None)
    return ((shape[0], size, size) if size else shape), classes
