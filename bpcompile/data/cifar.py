"""CIFAR-10 from the official python pickle batches (folder cifar-10-batches-py).

Each batch is a pickled dict: 'data' an (n, 3072) uint8 array whose rows hold
the 1024 red, then 1024 green, then 1024 blue values of a 32x32 image in
row-major order, and 'labels' a list of n ints. The official files were
written by Python 2, so keys may come back as bytes or str."""

import pickle
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import BpcompileError
from .download import DownloadError, download, extract_into
from .locate import cache_dir, candidate_dirs, find_dir, not_found_error, search_roots
from .splits import RawData

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
FILES = TRAIN_FILES + (TEST_FILE,)
SUBDIRS = ("", FOLDER, f"cifar10/{FOLDER}")
NUM_CLASSES = 10

CIFAR10_URLS = ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE = "cifar-10-python.tar.gz"

# The batches hold only numpy arrays, lists and strings; unpickling anything
# else could run arbitrary code from a file in a data directory, so refuse it.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (a CIFAR-10 batch holds only arrays)")
        return super().find_class(module, name)


def read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 3, 32, 32) uint8 images and (n,) int64 labels of one batch file."""
    try:
        with open(path, "rb") as f:
            d = _BatchUnpickler(f, encoding="latin1").load()  # latin1: Python 2 numpy pickles need it
    except Exception as e:  # any unpickling failure means the same thing to the user
        raise BpcompileError(f"Could not read the CIFAR-10 batch {path}: {type(e).__name__}: {e}. It is not an "
                             f"official python-format batch or is truncated; delete the {FOLDER} folder and "
                             f"fetch it again.") from None
    if not isinstance(d, dict):
        raise BpcompileError(f"{path} holds a {type(d).__name__}, not the dict of a CIFAR-10 batch.")
    data = d.get(b"data", d.get("data"))
    labels = d.get(b"labels", d.get("labels"))
    if data is None or labels is None:
        raise BpcompileError(f"{path} lacks the 'data' or 'labels' entry of a CIFAR-10 batch "
                             f"(keys: {sorted(map(str, d))}).")
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise BpcompileError(f"{path}: 'data' is {data.dtype} of shape {data.shape}, but a CIFAR-10 batch holds "
                             f"uint8 rows of 3072 values (n, 3072).")
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if y.shape != (len(data),):
        raise BpcompileError(f"{path}: {len(y)} labels for {len(data)} images.")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= NUM_CLASSES):
        raise BpcompileError(f"{path}: labels must be 0..9, found {int(y.min())}..{int(y.max())}.")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), y


def _resolve(d: Path, name: str) -> Optional[Path]:
    return d / name if (d / name).is_file() else None


def _find_or_download(spec, data_dir: Optional[str]) -> dict[str, Path]:
    dirs = candidate_dirs(search_roots(data_dir, spec.dir), SUBDIRS)
    files, notes = find_dir(dirs, FILES, _resolve)
    if files:
        return files
    home = cache_dir() / "cifar10"
    if not spec.download:
        note = "data.download is false, so nothing was downloaded."
    else:
        archive = home / ARCHIVE
        try:
            download(CIFAR10_URLS, archive, CIFAR10_MD5)
            extract_into(archive, FOLDER, home / FOLDER)
            files, _ = find_dir([home / FOLDER], FILES, _resolve)
            if files:
                return files
            note = f"The archive {archive} did not hold all of {', '.join(FILES)}."
        except DownloadError as e:
            note = f"Downloading into {home} failed: {e}."
        finally:
            archive.unlink(missing_ok=True)  # 163 MB; the extracted folder is what is used
    raise not_found_error("CIFAR-10 python-format batch", "data.name='cifar10'", FILES, dirs, notes, note,
                          f"the contents of {FOLDER}")


def load_cifar10(spec, data_dir: Optional[str]) -> RawData:
    """CIFAR-10 (50000 train / 10000 test for the official files), found locally or downloaded."""
    files = _find_or_download(spec, data_dir)
    parts = [read_batch(files[f]) for f in TRAIN_FILES]
    train_x, train_y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    test_x, test_y = read_batch(files[TEST_FILE])
    return RawData(train_x, train_y, test_x, test_y, NUM_CLASSES,
                   f"{files[TEST_FILE].parent} (CIFAR-10 python batches)")
