"""The loaded data set (DataSplits), its validation split and its channel statistics."""

from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import torch

from ..errors import BpcompileError


class RawData(NamedTuple):
    """What a data-set reader returns, before validation split and statistics."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    source: str


@dataclass
class DataSplits:
    name: str  # 'mnist', 'fashion_mnist', 'cifar10', 'synthetic'
    train_x: torch.Tensor = field(repr=False)  # (N, C, H, W) uint8 for images; float32 (N, *input_shape) for synthetic
    train_y: torch.Tensor = field(repr=False)  # (N,) int64
    test_x: torch.Tensor = field(repr=False)
    test_y: torch.Tensor = field(repr=False)
    val_x: Optional[torch.Tensor] = field(repr=False)  # held out when data.validation_size > 0, else None
    val_y: Optional[torch.Tensor] = field(repr=False)
    num_classes: int
    input_shape: tuple[int, ...]
    mean: torch.Tensor  # (C,) float32, of train_x scaled to [0, 1] (synthetic: as is)
    std: torch.Tensor
    source: str  # the files / directories read, for logs and error messages


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (population) std, channels on dim 1; uint8 is scaled to [0, 1].

    A tensor with fewer than 3 dims (N, D) counts as a single channel. A
    constant channel gets std 1 so standardising never divides by zero."""
    n = len(x)
    chans = x.reshape(n, 1, -1) if x.dim() < 3 else x.reshape(n, x.shape[1], -1)
    means, stds = [], []
    for c in range(chans.shape[1]):
        v = chans[:, c].reshape(-1)
        if x.dtype == torch.uint8:
            # Exact and cheap: a 256-bin histogram instead of a float copy of the whole set.
            counts = torch.bincount(v, minlength=256).double()
            levels = torch.arange(256, dtype=torch.float64) / 255
            mean = (counts * levels).sum() / counts.sum()
            var = (counts * (levels - mean) ** 2).sum() / counts.sum()
        else:
            var, mean = torch.var_mean(v.double(), correction=0)
        means.append(mean)
        stds.append(var.sqrt())
    mean, std = torch.stack(means).float(), torch.stack(stds).float()
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def hold_out(x: torch.Tensor, y: torch.Tensor, validation_size: int, seed: int, name: str):
    """(train_x, train_y, val_x, val_y): the last `validation_size` of a seeded permutation are held out.

    Both parts keep the original relative order of the examples."""
    n = len(x)
    if validation_size >= n:
        raise BpcompileError(f"data.validation_size={validation_size} must be smaller than the number of training "
                             f"examples of {name} ({n}); lower it, or set 0 for no validation split.")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    keep, val = perm[: n - validation_size].sort().values, perm[n - validation_size:].sort().values
    return x[keep], y[keep], x[val], y[val]


def make_splits(name: str, raw: RawData, validation_size: int, seed: int) -> DataSplits:
    """DataSplits from a reader's output: validation split first, then statistics of what is left to train on."""
    train_x, train_y, val_x, val_y = raw.train_x, raw.train_y, None, None
    if validation_size > 0:
        train_x, train_y, val_x, val_y = hold_out(train_x, train_y, validation_size, seed, name)
    mean, std = channel_stats(train_x)
    return DataSplits(name, train_x, train_y, raw.test_x, raw.test_y, val_x, val_y, raw.num_classes,
                      tuple(train_x.shape[1:]), mean, std, raw.source)
