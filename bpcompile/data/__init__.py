"""Data sets: find (or download) the files, split them, and serve batches.

    splits = load_dataset(spec.data, data_dir=args.data_dir, seed=spec.seed)
    train = BatchLoader(splits.train_x, splits.train_y, batch_size=..., device=..., shuffle=True, seed=...,
                        augment=spec.data.augment, mean=splits.mean, std=splits.std)
    for x, y in train.epoch(e): ...

Modules: idx (IDX format), locate (search order, not-found error), download
(md5-checked fetch, safe extraction), mnist / cifar / synthetic (readers),
splits (DataSplits, validation split, statistics), loader (BatchLoader)."""

from typing import Optional

from ..errors import BpcompileError, NotImplementedYet
from .cifar import load_cifar10
from .loader import BatchLoader
from .mnist import load_embedded, load_idx_set
from .splits import DataSplits, make_splits
from .synthetic import make_synthetic, random_batch


def load_dataset(spec, *, data_dir: Optional[str] = None, seed: int = 0) -> DataSplits:
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
        raise NotImplementedYet("data.name='imagenet': the spec is valid, but the ImageNet folder loader is not "
                                "built yet; use mnist, fashion_mnist, cifar10 or synthetic for now.")
    else:
        raise BpcompileError(f"data.name={name!r} is not a data set bpcompile knows.")
    return make_splits(name, raw, spec.validation_size, seed)


__all__ = ["BatchLoader", "DataSplits", "load_dataset", "random_batch"]
