"""Batches of a data set on the training device, reproducible per (seed, epoch).

All randomness of an epoch (order, flips, crop offsets) comes from one CPU
torch.Generator seeded from (seed, epoch), so a run resumed at epoch e sees
exactly the batches an uninterrupted run would, on any device. Pixels stay
uint8 until a batch is drawn (4x less memory and transfer), then become
float32 x/255, are augmented, and standardised per channel."""

from typing import Iterator, Optional, Sequence

import torch
import torch.nn.functional as F

from ..errors import BpcompileError
from .seeding import generator
from .shard import SINGLE, Shard
from .splits import channel_stats

AUGMENTS = ("hflip", "crop")
CROP_PAD = 4
RESIDENT_FRACTION = 0.25  # 'auto' keeps the set on the GPU when it takes under this share of free memory


def _keep_on_device(x: torch.Tensor, y: torch.Tensor, device: torch.device, mode: str) -> bool:
    if mode in ("always", "never"):
        return mode == "always"
    if device.type != "cuda":
        return True  # on the CPU "resident" is free: the tensors are already there
    free, _ = torch.cuda.mem_get_info(device)
    return x.nbytes + y.nbytes < RESIDENT_FRACTION * free


def hflip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Images where `flip` (bool, one per image) is set, mirrored left-right."""
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def crop(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, pad: int = CROP_PAD) -> torch.Tensor:
    """Each image zero-padded by `pad` and cropped back to its size at offset (dy, dx) in [0, 2 * pad]."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = (dy[:, None] + torch.arange(h, device=x.device)).view(b, 1, h, 1).expand(b, c, h, w + 2 * pad)
    padded = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w, device=x.device)).view(b, 1, 1, w).expand(b, c, h, w)
    return padded.gather(3, cols)


def draw_augment(name: str, n: int, g: torch.Generator) -> torch.Tensor:
    """An epoch's random parameters of one augmentation, one column per example slot."""
    if name == "hflip":
        return (torch.rand(n, generator=g) < 0.5).view(1, n)
    return torch.randint(0, 2 * CROP_PAD + 1, (2, n), generator=g)


class BatchLoader:
    """Shuffled, augmented, standardised batches of (x, y) on `device`; see the module docstring."""

    def __init__(self, x, y, *, batch_size: int, device: torch.device, shuffle: bool, seed: int,
                 augment: Sequence[str] = (), mean=None, std=None, normalize: str = "standardize",
                 device_resident: str = "auto", max_batches: Optional[int] = None, shard: Shard = SINGLE):
        if len(x) != len(y):
            raise ValueError(f"BatchLoader: {len(x)} inputs but {len(y)} labels")
        unknown = [a for a in augment if a not in AUGMENTS]
        if unknown:
            raise BpcompileError(f"data.augment: unknown augmentation(s) {unknown}; known: {list(AUGMENTS)}.")
        if augment and x.dim() != 4:
            raise BpcompileError(f"data.augment={list(augment)} needs image inputs of shape (C, H, W), but the "
                                 f"inputs have shape {tuple(x.shape[1:])}; remove the augmentation.")
        if normalize not in ("standardize", "unit"):
            raise ValueError(f"BatchLoader: normalize must be 'standardize' or 'unit', got {normalize!r}")
        self.device = torch.device(device)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.augment, self.max_batches, self.shard = tuple(augment), max_batches, shard
        self.n = len(x)

        self.mean = self.std = None
        if normalize == "standardize":
            if mean is None or std is None:
                mean, std = channel_stats(x)  # callers normally pass the training set's statistics
            shape = (1, -1) + (1,) * max(x.dim() - 2, 0)
            self.mean = torch.as_tensor(mean, dtype=torch.float32).reshape(shape).to(self.device)
            self.std = torch.as_tensor(std, dtype=torch.float32).reshape(shape).to(self.device)

        self.resident = _keep_on_device(x, y, self.device, device_resident)
        target = self.device if self.resident else torch.device("cpu")
        self.x, self.y = x.to(target), y.to(target, torch.int64)
        self.pin = not self.resident and self.device.type == "cuda"

    def __len__(self) -> int:
        n = self.shard.batches(self.n, self.batch_size, training=self.shuffle)
        return n if self.max_batches is None else min(n, self.max_batches)

    def global_size(self, b: int) -> int:
        """Examples in global batch b (all ranks together)."""
        return min(self.batch_size, self.n - b * self.batch_size)

    def _fetch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.resident:
            return self.x[idx], self.y[idx]
        x, y = self.x[idx], self.y[idx]
        if self.pin:
            x, y = x.pin_memory(), y.pin_memory()
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of epoch `epoch`: float32 x and int64 y on the device, the same for the same (seed, epoch)."""
        g = generator(self.seed, epoch)
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        # The whole epoch's randomness is drawn up front and moved once, not per batch.
        params = [(a, draw_augment(a, self.n, g).to(self.device)) for a in self.augment]
        if self.resident:
            order = order.to(self.device)
        for b in range(len(self)):
            start, stop = self.shard.bounds(self.global_size(b))       # this rank's chunk of global batch b
            if start == stop:
                continue                                               # (evaluation's last batch: none left)
            part = slice(b * self.batch_size + start, b * self.batch_size + stop)
            x, y = self._fetch(order[part])
            x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
            for a, p in params:  # on [0, 1] pixels, so crop pads with black as torchvision does
                x = hflip(x, p[0, part]) if a == "hflip" else crop(x, p[0, part], p[1, part])
            if self.mean is not None:
                x = (x - self.mean) / self.std
            yield x, y
