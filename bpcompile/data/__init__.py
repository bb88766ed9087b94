"""Data sets: find (or download) the files, split them, and serve batches.

    splits = load_dataset(spec.data, data_dir=args.data_dir, seed=spec.train.seed)
    loaders = make_loaders(spec, splits, device)      # 'train', 'test', maybe 'val' / 'train_eval', and 'probe'
    for x, y in loaders["train"].epoch(e): ...

Every loader has `len(loader)` and `epoch(e)`, yielding float32 x and int64 y
on the device, reproducible per (seed, e).

Modules: idx (IDX format), locate (search order, not-found error), download
(md5-checked fetch, safe extraction), mnist / cifar / synthetic (readers),
splits (DataSplits, validation split, statistics), loader (BatchLoader),
imagenet (class folders: ImageFolderSplits, ImageFolderLoader decoding in workers)."""

from typing import Optional, Union

from ..errors import BpcompileError
from .cifar import load_cifar10
from .loader import BatchLoader
from .mnist import load_embedded, load_idx_set
from .shard import SINGLE, Shard
from .splits import DataSplits, make_splits
from .synthetic import make_synthetic, random_batch


def load_dataset(spec, *, data_dir: Optional[str] = None, seed: int = 0) -> Union[DataSplits, "ImageFolderSplits"]:
    """The data set a DataSpec names. `data_dir` (the CLI's --data-dir) is searched first."""
    name = spec.name
    if name == "mnist" and spec.subset == "embedded":
        raw = load_embedded()
    elif name in ("mnist", "fashion_mnist"):
        raw = load_idx_set(spec, data_dir)
    elif name == "cifar10":
        raw = load_cifar10(spec, data_dir)
    elif name == "synthetic":
        raw = make_synthetic(spec)
    elif name == "imagenet":
        from .imagenet import load_imagenet     # imported when asked: Pillow is startup time other runs need not pay

        return load_imagenet(spec, data_dir, seed)  # file lists, not tensors: decoded per batch by the loader
    else:
        raise BpcompileError(f"data.name={name!r} is not a data set bpcompile knows.")
    size = getattr(spec, "image_size", None)
    if size:
        raw = raw._replace(train_x=resize_images(raw.train_x, size), test_x=resize_images(raw.test_x, size),
                           source=f"{raw.source}, resized to {size}x{size}")
    return make_splits(name, raw, spec.validation_size, seed)


def resize_images(x, size: int, chunk: int = 10_000):
    """uint8 (N, C, H, W) images resized to size x size: bilinear with half-pixel centres, rounded back to uint8
    (what torchvision's Resize does to a PIL image before ToTensor)."""
    import torch
    import torch.nn.functional as F

    if tuple(x.shape[-2:]) == (size, size):
        return x
    out = [F.interpolate(part.float(), size=(size, size), mode="bilinear", align_corners=False)
           .round_().clamp_(0, 255).to(torch.uint8) for part in x.split(chunk)]
    return torch.cat(out)


def make_loaders(spec, splits: Union[DataSplits, "ImageFolderSplits"], device, probe_size: int = 256,
                 shard: Shard = SINGLE) -> dict:
    """The run's loaders: 'train' (shuffled, augmented), 'test', 'val' (when held out), 'train_eval' (with
    train.train_error='full') and 'probe' (the first `probe_size` training examples, unaugmented, one batch:
    the alignment metrics' fixed batch). With several processes each loader but the probe serves this rank's
    `shard` of every global batch."""
    if not isinstance(splits, DataSplits):          # an image-folder set (ImageNet)
        from .imagenet import make_imagenet_loaders

        return make_imagenet_loaders(spec, splits, device, probe_size, shard)
    data, seed = spec.data, spec.train.seed
    common = dict(device=device, mean=splits.mean, std=splits.std, normalize=data.normalize,
                  device_resident=data.device_resident, seed=seed)
    sharded = dict(common, shard=shard)
    loaders = {
        "train": BatchLoader(splits.train_x, splits.train_y, batch_size=data.batch_size, shuffle=True,
                             augment=data.augment, max_batches=spec.train.max_steps_per_epoch, **sharded),
        "test": BatchLoader(splits.test_x, splits.test_y, batch_size=data.eval_batch_size, shuffle=False, **sharded),
    }
    if splits.val_x is not None:
        loaders["val"] = BatchLoader(splits.val_x, splits.val_y, batch_size=data.eval_batch_size, shuffle=False,
                                     **sharded)
    if spec.train.train_error == "full":
        loaders["train_eval"] = BatchLoader(splits.train_x, splits.train_y, batch_size=data.eval_batch_size,
                                            shuffle=False, **sharded)
    size = min(probe_size, len(splits.train_y))
    loaders["probe"] = BatchLoader(splits.train_x[:size], splits.train_y[:size], batch_size=size, shuffle=False,
                                   **common)
    return loaders


__all__ = ["BatchLoader", "DataSplits", "ImageFolderLoader", "ImageFolderSplits", "Shard", "load_dataset", "resize_images",
           "make_loaders", "random_batch"]


def __getattr__(name):
    if name in ("ImageFolderLoader", "ImageFolderSplits"):
        from . import imagenet

        return getattr(imagenet, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
