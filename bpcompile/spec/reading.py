"""Reading JSON we are handed (specs, search spaces, paper numbers) as data and nothing else.

A file we read may be hostile: a FIFO that never ends, 100 MB of junk, bytes
that are not UTF-8, JSON nested a thousand deep, an integer of 5,000 digits,
NaN, or a key given twice (where `json` silently keeps the last one). Each of
these is a one-paragraph BpcompileError naming the file; nothing here runs code.
"""

import json
import os
import stat
from pathlib import Path

from ..errors import BpcompileError

MAX_FILE_BYTES = 4 * 2**20   # the largest shipped spec is ~10 kB
MAX_DEPTH = 64               # objects and arrays inside each other; specs nest about 6 deep
MAX_NUMBER_DIGITS = 40       # a float64 needs 17 significant digits; Python refuses ints of 4,300+ digits
MAX_ECHO = 80                # characters of a bad value quoted back in a message


def clip(text: str, limit: int = MAX_ECHO) -> str:
    """`text` cut to `limit` characters, marked when cut (messages never echo a whole hostile input)."""
    return text if len(text) <= limit else text[: limit - 15] + f"... ({len(text):,} chars)"


def read_text_file(path: str | Path, what: str, max_bytes: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of a regular file of at most `max_bytes`; `what` names the file in errors ('spec file')."""
    path = Path(path)
    name = clip(repr(str(path)), 200)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; the regular-file check below refuses it
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise BpcompileError(f"{what} {name} does not exist.") from None
    except OSError as err:
        raise BpcompileError(f"{what} {name} cannot be read: {err.strerror}.") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise BpcompileError(f"{what} {name} is not a regular file (a directory, FIFO, socket or device).")
        if info.st_size > max_bytes:
            raise BpcompileError(f"{what} {name} is {info.st_size:,} bytes; at most {max_bytes:,} are read.")
        try:
            data = f.read(max_bytes + 1)
        except OSError as err:
            raise BpcompileError(f"{what} {name} cannot be read: {err.strerror}.") from None
    if len(data) > max_bytes:   # grew while we read
        raise BpcompileError(f"{what} {name} is over {max_bytes:,} bytes; at most {max_bytes:,} are read.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise BpcompileError(f"{what} {name} is not UTF-8 text: byte {err.start} (line {line}) is "
                             f"0x{data[err.start]:02x}.") from None


def loads(text: str, source: str):
    """JSON text as Python data, refusing duplicate keys, NaN/Infinity, over-long numbers and deep nesting.
    `source` names the input in errors ("spec file 'a.json'", "--set value")."""
    depth = _nesting_depth(text) if text.count("[") + text.count("{") > MAX_DEPTH else 0
    if depth > MAX_DEPTH:
        raise BpcompileError(f"{source} nests objects and arrays more than {MAX_DEPTH} deep; at most {MAX_DEPTH} "
                             f"levels are read.")
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_int=_parse_int, parse_float=_parse_float,
                          parse_constant=_refuse_constant)
    except _Refused as err:
        raise BpcompileError(f"{source} {err}.") from None
    except json.JSONDecodeError as err:
        raise BpcompileError(f"{source} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}.") from None


def read_json_object(path: str | Path, what: str = "spec file") -> dict:
    """The JSON object in `path`; a missing, unreadable, oversized or malformed file is a one-paragraph
    BpcompileError that calls the file `what` ('spec file', 'search space file', ...)."""
    source = f"{what} {clip(repr(str(path)), 200)}"
    raw = loads(read_text_file(path, what), source)
    if not isinstance(raw, dict):
        raise BpcompileError(f"{source} must hold a JSON object, not {type(raw).__name__}.")
    return raw


class _Refused(ValueError):
    """Raised inside json.loads hooks; becomes a BpcompileError naming the source."""


def _unique_keys(pairs: list) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"gives the key {clip(repr(key))} twice in one object (JSON readers disagree on which "
                           f"one wins, so it is refused)")
        out[key] = value
    return out


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise _Refused(f"holds an integer of {len(text):,} digits ({clip(text, 30)}); at most {MAX_NUMBER_DIGITS} "
                       f"are read")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_DIGITS + 10:
        raise _Refused(f"holds a number written with {len(text):,} characters ({clip(text, 30)})")
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _Refused(f"holds the number {clip(text, 30)}, too large for a float")
    return value


def _refuse_constant(name: str):
    raise _Refused(f"holds {name}, which is not JSON (numbers must be finite)")


def _nesting_depth(text: str) -> int:
    """Deepest bracket nesting outside strings (json's recursive parser would hit Python's recursion limit)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:   # no need to scan further
                    return deepest
        elif ch in "]}":
            depth -= 1
    return deepest
