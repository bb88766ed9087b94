"""ImageNet (ILSVRC-2012) from class folders, decoded and augmented in DataLoader workers.

Layout: ROOT/train/<wnid>/*.JPEG and ROOT/val/<wnid>/*.JPEG (val sorted into
class folders, as the usual preparation script does); .jpeg, .jpg and .png
are accepted in any case. ROOT is found with locate's search order. Classes
are the sorted folder names of train/.

Listing uses os.scandir only (1.28M files, no image is opened). Workers
decode with Pillow, crop, flip and return uint8 CHW tensors (4x less
inter-process traffic than float); the main process moves each batch to the
device and scales / standardises it there. Every random choice comes from
(seed, epoch, sample index) alone: the epoch's order from
seeding.generator(seed, epoch), each sample's crop and flip from its own
stream, so the worker count and a resume change nothing."""

import math
import os
import random
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..errors import BpcompileError
from .locate import candidate_dirs, find_dir, not_found_error, search_roots
from .seeding import derive_seed, generator
from .shard import SINGLE, Shard
from .splits import hold_out

SUBDIRS = ("", "imagenet", "ILSVRC2012", "imagenet/ILSVRC2012")
SPLIT_DIRS = ("train", "val")
EXTENSIONS = (".jpeg", ".jpg", ".png")
MEAN = (0.485, 0.456, 0.406)  # the usual ImageNet channel statistics (of the training set, on [0, 1] pixels)
STD = (0.229, 0.224, 0.225)
AUGMENTS = ("random_resized_crop", "hflip", "crop")
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)
RRC_ATTEMPTS = 10
AUGMENT_STREAM = 0x1A6E  # keeps the per-sample streams apart from the epoch-order stream (seed, epoch)
LISTING_THREADS = 16     # scandir waits on the file system (slow on network mounts), so threads overlap it
LAYOUT = "ROOT/train/<wnid>/*.JPEG and ROOT/val/<wnid>/*.JPEG, val sorted into the same class folders"
DOWNLOAD_NOTE = ("ImageNet cannot be downloaded automatically: its licence lets only registered users fetch it, "
                 "from https://image-net.org (ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar). Extract every "
                 "class archive of the training set into train/<wnid>/ and sort the validation images into "
                 "val/<wnid>/ (as the usual valprep.sh preparation script does).")
# What Pillow raises for a file that is not a readable image (UnidentifiedImageError is an OSError).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)

Sample = tuple[str, int]  # (path, label)


@dataclass
class ImageFolderSplits:
    name: str  # 'imagenet'
    train: list[Sample] = field(repr=False)
    val: Optional[list[Sample]] = field(repr=False)  # held out of train when data.validation_size > 0, else None
    test: list[Sample] = field(repr=False)           # the val/ folder
    classes: list[str] = field(repr=False)           # wnids; label i is classes[i]
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: torch.Tensor  # (3,) float32: the ImageNet constants, not measured (that would decode every image)
    std: torch.Tensor
    source: str


# ---------------------------------------------------------------- finding and listing


def find_root(spec, data_dir: Optional[str]) -> Path:
    """The first candidate directory holding both train/ and val/."""
    dirs = candidate_dirs(search_roots(data_dir, spec.dir), SUBDIRS)
    found, notes = find_dir(dirs, SPLIT_DIRS, lambda d, name: d / name if (d / name).is_dir() else None)
    if found:
        return found["train"].parent
    raise not_found_error("ImageNet class-folder", "data.name='imagenet'", SPLIT_DIRS, dirs, notes, DOWNLOAD_NOTE,
                          LAYOUT)


def _is_image(entry: os.DirEntry) -> bool:
    # Dot files are skipped: macOS copies leave '._x.JPEG' resource forks that are not images.
    return not entry.name.startswith(".") and entry.name.lower().endswith(EXTENSIONS) and entry.is_file()


def _images(folder: str) -> list[str]:
    """Sorted image paths of one folder (sorted: scandir's order differs between file systems)."""
    with os.scandir(folder) as entries:
        return sorted(e.path for e in entries if _is_image(e))


def _subfolders(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _list(folder: Path, wnids: Sequence[str], labels: dict[str, int]) -> tuple[list[Sample], list[str]]:
    """(samples in (class, file name) order, the class folders that hold no image)."""
    with ThreadPoolExecutor(LISTING_THREADS) as pool:
        per_class = list(pool.map(_images, [str(folder / w) for w in wnids]))
    samples = [(path, labels[w]) for w, paths in zip(wnids, per_class) for path in paths]
    return samples, [str(folder / w) for w, paths in zip(wnids, per_class) if not paths]


def list_classes(train: Path) -> list[str]:
    """The wnids: sorted class folder names of train/."""
    classes = _subfolders(train)
    if not classes:
        raise BpcompileError(f"data.name='imagenet': {train} holds no class folders. Expected {LAYOUT}; if it "
                             f"holds the per-class archives (n01440764.tar, ...), extract each into a folder of "
                             f"its own name.")
    return classes


def list_val(val: Path, classes: Sequence[str]) -> list[Sample]:
    """The val/ images, labelled by the train/ class of their folder."""
    wnids = _subfolders(val)
    if not wnids:
        flat = len(_images(str(val)))
        hint = (f"it holds {flat} images directly: sort them into val/<wnid>/ class folders (the usual valprep.sh "
                f"script does)" if flat else "it is empty")
        raise BpcompileError(f"data.name='imagenet': {val} holds no class folders; {hint}. Expected {LAYOUT}.")
    labels = {w: i for i, w in enumerate(classes)}
    unknown = [w for w in wnids if w not in labels]
    if unknown:
        raise BpcompileError(f"data.name='imagenet': the folder {val / unknown[0]} names no class of "
                             f"{val.parent / 'train'}" + (f" (nor do {len(unknown) - 1} more)" if len(unknown) > 1
                                                          else "") +
                             "; every val/ class folder must also be a train/ class folder. Remove it, or check "
                             "that train/ and val/ come from the same data set.")
    samples, _ = _list(val, wnids, labels)
    if not samples:
        raise BpcompileError(f"data.name='imagenet': the class folders of {val} hold no images "
                             f"({', '.join(EXTENSIONS)}).")
    return samples


def load_imagenet(spec, data_dir: Optional[str], seed: int) -> ImageFolderSplits:
    """ImageNet found locally (never downloaded); validation split held out of train/ as splits.hold_out does."""
    if spec.resize_size < spec.image_size:
        raise BpcompileError(f"data.resize_size={spec.resize_size} is smaller than data.image_size="
                             f"{spec.image_size}: images are resized to resize_size, then cropped to image_size; "
                             f"raise resize_size (224 / 256 is the usual pair).")
    root = find_root(spec, data_dir)
    classes = list_classes(root / "train")
    if len(classes) != spec.num_classes:
        raise BpcompileError(f"data.num_classes={spec.num_classes}, but {root / 'train'} holds {len(classes)} "
                             f"class folders; set data.num_classes to {len(classes)} (and the last dense layer "
                             f"to as many units), or point the data directory at the full set.")
    train, empty = _list(root / "train", classes, {w: i for i, w in enumerate(classes)})
    if empty:
        raise BpcompileError(f"data.name='imagenet': the class folder {empty[0]} holds no images "
                             f"({', '.join(EXTENSIONS)})" + (f", nor do {len(empty) - 1} more" if len(empty) > 1
                                                             else "") +
                             "; every train/ class needs images (was an archive extracted only partly?).")
    test = list_val(root / "val", classes)
    val = None
    if spec.validation_size > 0:
        index = torch.arange(len(train))
        keep, _, held, _ = hold_out(index, index, spec.validation_size, seed, "imagenet")
        train, val = [train[i] for i in keep.tolist()], [train[i] for i in held.tolist()]
    return ImageFolderSplits(
        "imagenet", train, val, test, classes, len(classes), (3, spec.image_size, spec.image_size),
        torch.tensor(MEAN, dtype=torch.float32), torch.tensor(STD, dtype=torch.float32),
        f"{root} (ImageNet class folders: {len(train) + len(val or ())} train / {len(test)} val images, "
        f"{len(classes)} classes)")


# ---------------------------------------------------------------- transforms (Pillow)


def resize_short(img: Image.Image, size: int) -> Image.Image:
    """Bilinear resize so the short side is `size` (the long side rounds down, as torchvision's Resize)."""
    w, h = img.size
    if w <= h:
        new = (size, int(size * h / w))
    else:
        new = (int(size * w / h), size)
    return img if new == img.size else img.resize(new, Image.BILINEAR)


def centre_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the centred size x size square (offsets rounded as torchvision does)."""
    left, top = int(round((width - size) / 2)), int(round((height - size) / 2))
    return left, top, left + size, top + size


def random_resized_crop_box(width: int, height: int, rng: random.Random) -> tuple[int, int, int, int]:
    """(left, top, w, h) of an Inception-style crop: area fraction uniform in RRC_SCALE, aspect ratio
    log-uniform in RRC_RATIO, RRC_ATTEMPTS tries; else a centre crop with the ratio clamped into RRC_RATIO."""
    area = width * height
    log_lo, log_hi = math.log(RRC_RATIO[0]), math.log(RRC_RATIO[1])
    for _ in range(RRC_ATTEMPTS):
        target = area * (RRC_SCALE[0] + (RRC_SCALE[1] - RRC_SCALE[0]) * rng.random())
        aspect = math.exp(log_lo + (log_hi - log_lo) * rng.random())
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, width - w), rng.randint(0, height - h), w, h
    ratio = width / height
    if ratio < RRC_RATIO[0]:
        w, h = width, int(round(width / RRC_RATIO[0]))
    elif ratio > RRC_RATIO[1]:
        w, h = int(round(height * RRC_RATIO[1])), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


@dataclass(frozen=True)
class Transform:
    """One image's crop and flip. No augment: resize the short side to resize_size, centre crop image_size
    (evaluation). 'random_resized_crop' replaces both; 'crop' takes a random image_size square after the resize;
    'hflip' mirrors with probability 0.5 after cropping."""

    image_size: int
    resize_size: int
    augment: tuple[str, ...] = ()

    @property
    def is_random(self) -> bool:
        return bool(self.augment)

    def __call__(self, img: Image.Image, rng: Optional[random.Random]) -> Image.Image:
        s = self.image_size
        if "random_resized_crop" in self.augment:
            left, top, w, h = random_resized_crop_box(img.width, img.height, rng)
            img = img.crop((left, top, left + w, top + h)).resize((s, s), Image.BILINEAR)
        else:
            img = resize_short(img, self.resize_size)
            if "crop" in self.augment:
                left, top = rng.randint(0, img.width - s), rng.randint(0, img.height - s)
                img = img.crop((left, top, left + s, top + s))
            else:
                img = img.crop(centre_box(img.width, img.height, s))
        if "hflip" in self.augment and rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return img


def read_image(path: str) -> Image.Image:
    """The decoded image, converted to RGB (grey, CMYK and palette files exist in ImageNet)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a few ImageNet files have corrupt EXIF: harmless, but noisy
        with Image.open(path) as img:
            return img.convert("RGB")


# ---------------------------------------------------------------- samples, dataset, loader


class SampleTable:
    """(path, label) pairs as two numpy arrays. Forked workers share numpy buffers, whereas touching a list of
    Python tuples copies its pages into every worker (memory grows by the list's size per worker)."""

    def __init__(self, samples: Sequence[Sample]):
        encoded = [os.fsencode(p) for p, _ in samples]
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=self.offsets[1:])
        self.paths = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self.labels = np.fromiter((y for _, y in samples), dtype=np.int64, count=len(encoded))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Sample:
        return os.fsdecode(self.paths[self.offsets[i]:self.offsets[i + 1]].tobytes()), int(self.labels[i])

    def head(self, n: int) -> "SampleTable":
        out = SampleTable.__new__(SampleTable)
        out.offsets, out.paths, out.labels = self.offsets[: n + 1], self.paths, self.labels[:n]
        return out


class ImageDataset(Dataset):
    """Item (index, epoch) -> (uint8 (3, S, S) tensor, label), or the error message of an unreadable file
    (returned, not raised, so the main process can raise it as one clean paragraph)."""

    def __init__(self, samples: SampleTable, transform: Transform, seed: int):
        self.samples, self.transform, self.seed = samples, transform, seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]):
        index, epoch = key
        path, label = self.samples[index]
        try:
            img = read_image(path)
        except DECODE_ERRORS as e:
            return (f"data.name='imagenet': could not read the image {path} ({type(e).__name__}: {e}). The file is "
                    f"corrupt, truncated or not an image; replace or delete it and run again.")
        rng = random.Random(derive_seed(AUGMENT_STREAM, self.seed, epoch, index)) if self.transform.is_random else None
        x = torch.from_numpy(np.array(self.transform(img, rng), dtype=np.uint8))
        return x.permute(2, 0, 1).contiguous(), label


def collate(items):
    """Stacked uint8 images and int64 labels, or the first error message among the items."""
    for item in items:
        if isinstance(item, str):
            return item
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items], dtype=torch.int64)


def check_augment(augment: Sequence[str]) -> tuple[str, ...]:
    unknown = [a for a in augment if a not in AUGMENTS]
    if unknown:
        raise BpcompileError(f"data.augment: unknown augmentation(s) {unknown} for ImageNet; known: "
                             f"{list(AUGMENTS)}.")
    if "crop" in augment and "random_resized_crop" in augment:
        raise BpcompileError("data.augment lists both 'crop' and 'random_resized_crop'; each replaces the "
                             "centre crop, so choose one.")
    return tuple(augment)


class ImageFolderLoader:
    """BatchLoader's interface over image files: `len(loader)`, `epoch(e)` yielding float32 (B, 3, S, S) x and
    int64 y on `device`, the same for the same (seed, e) whatever `workers` is."""

    def __init__(self, samples, *, batch_size: int, device, seed: int, image_size: int, resize_size: int,
                 shuffle: bool = False, augment: Sequence[str] = (), workers: int = 0, mean=MEAN, std=STD,
                 normalize: str = "standardize", max_batches: Optional[int] = None, shard: Shard = SINGLE):
        if normalize not in ("standardize", "unit"):
            raise ValueError(f"ImageFolderLoader: normalize must be 'standardize' or 'unit', got {normalize!r}")
        samples = samples if isinstance(samples, SampleTable) else SampleTable(samples)
        self.device = torch.device(device)
        self.batch_size, self.shuffle, self.seed, self.workers = batch_size, shuffle, seed, workers
        self.max_batches, self.n, self.shard = max_batches, len(samples), shard
        self.dataset = ImageDataset(samples, Transform(image_size, resize_size, check_augment(augment)), seed)
        self.mean = self.std = None
        if normalize == "standardize":
            self.mean = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1).to(self.device)
            self.std = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1).to(self.device)
        self.pin = self.device.type == "cuda"

    def __len__(self) -> int:
        n = self.shard.batches(self.n, self.batch_size, training=self.shuffle)
        return n if self.max_batches is None else min(n, self.max_batches)

    def global_size(self, b: int) -> int:
        """Examples in global batch b (all ranks together)."""
        return min(self.batch_size, self.n - b * self.batch_size)

    def epoch(self, epoch: int):
        """The batches of epoch `epoch` (only as many as len(self) are decoded)."""
        order = torch.randperm(self.n, generator=generator(self.seed, epoch)) if self.shuffle else torch.arange(self.n)
        order, size = order.tolist(), self.batch_size
        batches = []
        for b in range(len(self)):                       # this rank decodes only its chunk of each global batch
            start, stop = self.shard.bounds(self.global_size(b))
            if start < stop:                             # (evaluation's last batch may leave a rank none)
                batches.append([(i, epoch) for i in order[b * size + start:b * size + stop]])
        # Its own generator: the DataLoader draws a worker base seed, which must not consume the global torch RNG
        # the trainer checkpoints (all augmentation randomness is per sample anyway).
        loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.workers, collate_fn=collate,
                            pin_memory=self.pin, generator=torch.Generator().manual_seed(0))
        for batch in loader:
            if isinstance(batch, str):
                raise BpcompileError(batch)
            x, y = batch
            x = x.to(self.device, non_blocking=True).float().div_(255)
            if self.mean is not None:
                x = (x - self.mean) / self.std
            yield x, y.to(self.device, non_blocking=True)


def make_imagenet_loaders(spec, splits: ImageFolderSplits, device, probe_size: int, shard: Shard = SINGLE) -> dict:
    """make_loaders' dict for class-folder data: train (augmented), test / val / train_eval / probe (eval)."""
    data, seed = spec.data, spec.train.seed
    common = dict(device=device, seed=seed, image_size=data.image_size, resize_size=data.resize_size,
                  workers=data.workers, mean=splits.mean, std=splits.std, normalize=data.normalize)
    sharded = dict(common, shard=shard)
    train = SampleTable(splits.train)  # built once: the train, train_eval and probe loaders share it
    loaders = {
        "train": ImageFolderLoader(train, batch_size=data.batch_size, shuffle=True, augment=data.augment,
                                   max_batches=spec.train.max_steps_per_epoch, **sharded),
        "test": ImageFolderLoader(splits.test, batch_size=data.eval_batch_size, **sharded),
    }
    if splits.val is not None:
        loaders["val"] = ImageFolderLoader(splits.val, batch_size=data.eval_batch_size, **sharded)
    if spec.train.train_error == "full":
        loaders["train_eval"] = ImageFolderLoader(train, batch_size=data.eval_batch_size, **sharded)
    size = min(probe_size, len(train))
    loaders["probe"] = ImageFolderLoader(train.head(size), batch_size=size, **common)
    return loaders
