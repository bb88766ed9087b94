"""md5-checked downloads and safe archive extraction.

A download streams into a temporary file next to its destination and is
renamed into place only once its md5 matches, so an interrupted or corrupted
download never leaves a file that a later run would trust."""

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from ..errors import BpcompileError

TIMEOUT_S = 10  # per connect/read; the network is often closed, so fail fast
CHUNK = 1 << 20


class DownloadError(Exception):
    """No URL gave the file; the message lists each attempt. Callers turn it into a BpcompileError."""


def _fetch(url: str, dest: Path, md5: str) -> None:
    import urllib.request        # here, not at the top: ssl and sockets are startup time a local run need not pay

    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            while chunk := resp.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:
            raise DownloadError(f"md5 mismatch (got {digest.hexdigest()}, expected {md5})")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def download(urls: Sequence[str], dest: Path, md5: str) -> None:
    """Put the file with checksum `md5` at `dest`, trying `urls` in order."""
    import http.client           # with urllib in _fetch: imported only when something is downloaded

    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        print(f"bpcompile: downloading {url} -> {dest}", file=sys.stderr)
        try:
            _fetch(url, dest, md5)
            return
        except (OSError, ValueError, http.client.HTTPException, DownloadError) as e:  # URLError, timeouts: OSError
            failures.append(f"{url}: {e}")
    raise DownloadError("; ".join(failures))


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar archive under `dest`, refusing members that would land outside it or are links/devices."""
    dest.mkdir(parents=True, exist_ok=True)
    import tarfile

    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for m in members:
            parts = Path(m.name).parts
            if m.name.startswith(("/", "\\")) or os.path.isabs(m.name) or ".." in parts:
                raise BpcompileError(f"Refusing to extract {archive}: member {m.name!r} has an absolute path or "
                                     f"'..'; the archive is not the official one, delete it and download again.")
            if not (m.isfile() or m.isdir()):
                raise BpcompileError(f"Refusing to extract {archive}: member {m.name!r} is a link or special "
                                     f"file; the archive is not the official one, delete it and download again.")
        tar.extractall(dest, members=members, filter="data")


def extract_into(archive: Path, folder: str, target: Path) -> None:
    """Extract `folder` from `archive` and move its files into `target` one by one.

    Extraction goes to a temporary directory first, so a failed extraction
    leaves no partial folder where the search would find it."""
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".extract-"))
    try:
        safe_extract(archive, tmp)
        src = tmp / folder
        if not src.is_dir():
            raise BpcompileError(f"{archive} does not contain the folder {folder}/; it is not the expected archive.")
        target.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            os.replace(f, target / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
