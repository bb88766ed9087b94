"""Where data files are looked for, in order, and the error when they are not found.

Roots, first match wins: the CLI's --data-dir, the spec's data.dir, the
environment variable BPCOMPILE_DATA, then the user cache
($XDG_CACHE_HOME/bpcompile, default ~/.cache/bpcompile), which is also where
downloads go. Each data set tries a few subfolders of every root (its own
name, torchvision's layout, ...)."""

import os
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..errors import BpcompileError

ENV_VAR = "BPCOMPILE_DATA"


def cache_dir() -> Path:
    """The user cache of bpcompile: downloads land in subfolders of it."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "bpcompile"


def search_roots(data_dir: Optional[str], spec_dir: Optional[str]) -> list[Path]:
    """The roots in priority order (unset ones left out)."""
    roots = [data_dir, spec_dir, os.environ.get(ENV_VAR) or None]
    return [Path(r).expanduser() for r in roots if r] + [cache_dir()]


def candidate_dirs(roots: Sequence[Path], subdirs: Sequence[str], extra: Sequence[Path] = ()) -> list[Path]:
    """Every root joined with every subfolder ('' = the root itself), then `extra`, without repeats."""
    out = []
    for d in [root / sub if sub else root for root in roots for sub in subdirs] + list(extra):
        if d not in out:
            out.append(d)
    return out


def find_dir(dirs: Sequence[Path], names: Sequence[str],
             resolve: Callable[[Path, str], Optional[Path]]) -> tuple[Optional[dict[str, Path]], list[str]]:
    """The files `names` from the first directory holding all of them.

    `resolve(dir, name)` gives the path of one file in a directory or None.
    Also returns notes on directories that hold only some of the files, for the
    error message (a half-copied folder is a common mistake)."""
    notes = []
    for d in dirs:
        if not d.is_dir():
            continue
        found = {name: resolve(d, name) for name in names}
        if all(found.values()):
            return found, notes
        have = [n for n, p in found.items() if p]
        if have:
            missing = [n for n, p in found.items() if not p]
            notes.append(f"{d} has {', '.join(have)} but lacks {', '.join(missing)}")
    return None, notes


def not_found_error(what: str, field: str, names: Sequence[str], dirs: Sequence[Path], notes: Sequence[str],
                    download_note: str, layout: str) -> BpcompileError:
    """One paragraph: which files, every directory tried, why nothing was downloaded, how to fix it."""
    text = (f"{field}: could not find the {what} files {', '.join(names)} ({layout}). "
            f"Directories searched, in order: {', '.join(str(d) for d in dirs)}. ")
    if notes:
        text += "Incomplete copies: " + "; ".join(notes) + ". "
    text += (f"{download_note} To fix it, put the files in a directory and pass it with --data-dir, set "
             f"{ENV_VAR}, or set data.dir in the spec (each may also hold them in the subfolders listed above).")
    return BpcompileError(text)
