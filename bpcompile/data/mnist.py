"""MNIST and Fashion-MNIST from the official IDX files, and the embedded MNIST subset.

Both sets use the same four file names, each plain or gzip-compressed. The
mirror and checksum tables are module constants so tests can point them at
local file:// URLs."""

from pathlib import Path
from typing import Optional

import torch

from ..errors import BpcompileError
from .download import DownloadError, download
from .idx import read_idx
from .locate import cache_dir, candidate_dirs, find_dir, not_found_error, search_roots
from .splits import RawData

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IMAGE_SIZE = (28, 28)
NUM_CLASSES = 10

MNIST_MIRRORS = ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"]
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
FASHION_MIRRORS = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
FASHION_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
# Debian's package dataset-fashion-mnist installs the four .gz files here.
FASHION_SYSTEM_DIRS = [Path("/usr/share/datasets/fashion-mnist")]

SUBDIRS = {"mnist": ("", "mnist", "MNIST/raw"),
           "fashion_mnist": ("", "fashion_mnist", "fashion-mnist", "FashionMNIST/raw")}
TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}

EMBEDDED_DIR = Path(__file__).parent / "embedded"
EMBEDDED_SPLIT_SEED = 20240601  # fixed, independent of the run seed: every run sees the same 8000/2000 split
EMBEDDED_TRAIN = 8000


def resolve_idx(d: Path, name: str) -> Optional[Path]:
    """`name` in `d`, plain preferred (no decompression), else `name`.gz."""
    for p in (d / name, d / f"{name}.gz"):
        if p.is_file():
            return p
    return None


def read_pair(images: Path, labels: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, 28, 28) uint8 images and (N,) int64 labels, checked against each other."""
    x, y = read_idx(images), read_idx(labels)
    if x.dim() != 3 or tuple(x.shape[1:]) != IMAGE_SIZE:
        raise BpcompileError(f"{images} holds an array of shape {tuple(x.shape)}, but an MNIST-format image file "
                             f"holds (N, 28, 28); is it an image file of this data set?")
    if y.dim() != 1 or len(y) != len(x):
        raise BpcompileError(f"{labels} holds {tuple(y.shape)} labels but {images} holds {len(x)} images; "
                             f"the two files must come from the same split of the same data set.")
    if len(y) and int(y.max()) >= NUM_CLASSES:
        raise BpcompileError(f"{labels} has a label {int(y.max())}; labels must be 0..{NUM_CLASSES - 1}.")
    return x.unsqueeze(1), y.long()


def _find_or_download(name: str, spec, data_dir: Optional[str]) -> tuple[dict[str, Path], Path]:
    if name == "mnist":
        mirrors, md5s, extra = MNIST_MIRRORS, MNIST_MD5, []
    else:
        mirrors, md5s, extra = FASHION_MIRRORS, FASHION_MD5, FASHION_SYSTEM_DIRS
    dirs = candidate_dirs(search_roots(data_dir, spec.dir), SUBDIRS[name], extra)
    files, notes = find_dir(dirs, IDX_FILES, resolve_idx)
    if files:
        return files, files[IDX_FILES[0]].parent

    target = cache_dir() / name
    if not spec.download:
        note = "data.download is false, so nothing was downloaded."
    else:
        try:
            # Stop at the first file no mirror can give: with the network closed
            # that is one quick failure, not four.
            for f in IDX_FILES:
                if not (target / f"{f}.gz").is_file():
                    download([m + f"{f}.gz" for m in mirrors], target / f"{f}.gz", md5s[f"{f}.gz"])
            return {f: target / f"{f}.gz" for f in IDX_FILES}, target
        except DownloadError as e:
            note = f"Downloading into {target} failed: {e}."
    raise not_found_error(f"{TITLES[name]} IDX", f"data.name={name!r}", IDX_FILES, dirs, notes, note,
                          "each plain or .gz")


def check_identity(name: str, train_labels: torch.Tensor, where: Path) -> None:
    """MNIST and Fashion-MNIST share file names, so a folder of one can answer a search for the other. The full
    training sets tell them apart: Fashion-MNIST has exactly 6000 images per class, MNIST does not."""
    if len(train_labels) != 60000:
        return  # not the official full training set (e.g. a small test file): nothing to tell by
    balanced = bool((torch.bincount(train_labels, minlength=NUM_CLASSES) == 6000).all())
    if balanced != (name == "fashion_mnist"):
        found, other = ("Fashion-MNIST", "MNIST") if balanced else ("MNIST", "Fashion-MNIST")
        raise BpcompileError(
            f"data.name={name!r} asks for {other}, but the IDX files found in {where} are {found} (the training "
            f"labels {'are' if balanced else 'are not'} exactly 6000 per class). The two sets use the same file "
            f"names: keep them in separate folders (e.g. <root>/mnist and <root>/fashion_mnist)."
        )


def load_idx_set(spec, data_dir: Optional[str]) -> RawData:
    """MNIST or Fashion-MNIST (by spec.name), found locally or downloaded."""
    files, d = _find_or_download(spec.name, spec, data_dir)
    train_x, train_y = read_pair(files["train-images-idx3-ubyte"], files["train-labels-idx1-ubyte"])
    test_x, test_y = read_pair(files["t10k-images-idx3-ubyte"], files["t10k-labels-idx1-ubyte"])
    check_identity(spec.name, train_y, d)
    return RawData(train_x, train_y, test_x, test_y, NUM_CLASSES, f"{d} ({TITLES[spec.name]} IDX files)")


def load_embedded() -> RawData:
    """The official MNIST test set shipped in the package, split 8000/2000 by a fixed permutation."""
    x, y = read_pair(EMBEDDED_DIR / "t10k-images-idx3-ubyte.gz", EMBEDDED_DIR / "t10k-labels-idx1-ubyte.gz")
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(EMBEDDED_SPLIT_SEED))
    train, test = perm[:EMBEDDED_TRAIN], perm[EMBEDDED_TRAIN:]
    return RawData(x[train], y[train], x[test], y[test], NUM_CLASSES,
                   f"{EMBEDDED_DIR} (embedded official MNIST test set, fixed 8000/2000 split)")
