"""The IDX file format of MNIST and Fashion-MNIST (plain or gzip-compressed).

Layout: two zero bytes, a type byte (0x08 = unsigned byte), a byte with the
number of dimensions, one big-endian uint32 per dimension, then the values in
row-major order. Only unsigned-byte files are read (all the image/label files
of both data sets are)."""

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import BpcompileError

UBYTE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    # Decide by content, not by name: a '.gz' that was already unpacked (or the
    # reverse) is read all the same.
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(0)
        if head != _GZIP_MAGIC:
            return f.read()
        with gzip.GzipFile(fileobj=f) as g:
            return g.read()


def read_idx(path) -> torch.Tensor:
    """The uint8 tensor stored in an IDX file, shaped by its header."""
    path = Path(path)
    fix = "delete it and fetch it again (or point --data-dir / data.dir at a good copy)."
    try:
        data = _read_bytes(path)
    except (OSError, EOFError, zlib.error) as e:
        raise BpcompileError(f"Could not read the IDX file {path}: {e}. The file is unreadable, truncated or "
                             f"not valid gzip; {fix}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        magic = data[:4].hex() if data else "empty file"
        raise BpcompileError(f"{path} is not an IDX file: it starts with {magic}, but an IDX file starts with "
                             f"00 00, a type byte (08 for unsigned bytes) and the number of dimensions; {fix}")
    if data[2] != UBYTE:
        raise BpcompileError(f"{path}: IDX type byte is 0x{data[2]:02x}, but bpcompile reads only unsigned-byte "
                             f"(0x08) IDX files as used by MNIST and Fashion-MNIST; {fix}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise BpcompileError(f"{path}: the IDX header declares {ndim} dimensions but the file is only "
                             f"{len(data)} bytes long (truncated); {fix}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    body = len(data) - header
    if body != expected:
        what = "truncated" if body < expected else "longer than its header says"
        raise BpcompileError(f"{path}: the IDX header says shape {tuple(dims)}, i.e. {expected} bytes of data, "
                             f"but {body} bytes follow the header (file {what}); {fix}")
    arr = np.frombuffer(data, dtype=np.uint8, count=expected, offset=header).reshape(dims)
    return torch.from_numpy(arr.copy())


def write_idx(path, values) -> None:
    """Write a uint8 array or tensor as an IDX file (gzip-compressed when the name ends in '.gz')."""
    arr = np.ascontiguousarray(values.numpy() if isinstance(values, torch.Tensor) else np.asarray(values))
    if arr.dtype != np.uint8:
        raise ValueError(f"write_idx writes uint8 only, got {arr.dtype}")
    data = bytes([0, 0, UBYTE, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    path = Path(path)
    if path.name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
