"""Reading, writing and overriding specs, with errors that name the field."""

import functools
import json
from pathlib import Path
from typing import Any, Iterable

from pydantic import ValidationError

from ..errors import BpcompileError
from .experiment import ExperimentSpec
from .reading import clip, loads, read_json_object


MAX_MESSAGE = 1500   # characters of problems listed in one error; the rest are counted


def format_validation_error(err: ValidationError, source: str, raw: Any = None) -> str:
    """One paragraph naming every field at fault, e.g. `network.layers.2.kernel`, at most ~2,000 characters
    whatever the input (bad values are quoted clipped). `raw`: the input validated, to tell the key names in
    pydantic's error locations from the union tags it inserts."""
    problems = []
    for e in err.errors():
        loc = _field_path(e["loc"], raw) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not part of the spec schema; see `bpcompile schema`)"
        elif "input" in e and e["type"] not in ("missing",) and not isinstance(e["input"], (dict, list)):
            msg = f"{msg} (got {clip(repr(e['input']))})"
        if e["type"] == "union_tag_invalid" and str(loc).endswith("rule"):
            msg += "; a rule of your own is loaded with `--plugin FILE.py` (docs/writing-a-rule.md)"
        problems.append(f"field `{loc}`: {clip(msg, 300)}")
    shown, length = [], 0
    for problem in problems:
        if shown and length + len(problem) > MAX_MESSAGE:
            break
        shown.append(problem)
        length += len(problem) + 2
    more = f"; and {len(problems) - len(shown)} more problems" if len(shown) < len(problems) else ""
    return f"{clip(source, 250)} is not a valid spec: " + "; ".join(shown) + more + "."


_TAG_KEYS = ("type", "name", "scheme")   # the discriminator keys of the spec's unions


def _field_path(loc: tuple, raw: Any) -> str:
    """The dotted field path of a pydantic error location. Discriminated unions insert the chosen tag ('dense')
    and smart unions a member label ('int') into the location; walking the input tells those apart from real
    keys, even a key spelled like a tag (`activation` in an activation layer)."""
    parts, node, tag_pending = [], raw, isinstance(raw, dict)
    for part in loc:
        if isinstance(node, dict):
            if tag_pending and isinstance(part, str) and any(node.get(k) == part for k in _TAG_KEYS):
                tag_pending = False                       # the union's tag: not a key
                continue
            if raw is None and _is_union_tag(part):        # no input to walk: fall back on the schema's tags
                continue
            parts.append(clip(str(part), 60))
            node = node.get(part) if isinstance(part, str) else None
            tag_pending = isinstance(node, dict)
        elif isinstance(node, list) and isinstance(part, int):
            parts.append(str(part))
            node = node[part] if -len(node) <= part < len(node) else None
            tag_pending = isinstance(node, dict)
        elif raw is None:
            if not _is_union_tag(part):
                parts.append(clip(str(part), 60))
        elif node is not None and not isinstance(node, (dict, list)):
            continue                                       # a union member's label under a scalar input
        else:
            parts.append(clip(str(part), 60))
    return ".".join(parts)


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the discriminator's value (e.g. 'dense') in the location path
    return isinstance(part, str) and part in _union_tags()


@functools.lru_cache(maxsize=1)
def _union_tags() -> frozenset:
    """Every value of a discriminator key ('type', 'name', 'scheme') in the schema, read off the models."""
    tags = set()
    for definition in ExperimentSpec.model_json_schema()["$defs"].values():
        for key in _TAG_KEYS:
            const = definition.get("properties", {}).get(key, {}).get("const")
            if isinstance(const, str):
                tags.add(const)
    return frozenset(tags)


def clear_schema_caches() -> None:
    """After a plug-in registers a rule: the schema's union tags include its name."""
    _union_tags.cache_clear()


def parse_set_value(text: str, source: str = "--set value") -> Any:
    """`--set` values are JSON when they parse as JSON (numbers, true, lists), else strings (which validation then
    judges against the field). JSON is read with a spec file's limits (depth, duplicate keys, number length)."""
    try:
        json.loads(text, parse_int=_short_int, parse_constant=_not_json)
    except RecursionError:
        pass                     # nested too deep: `loads` refuses it with a message
    except (json.JSONDecodeError, ValueError):
        return text
    return loads(text, source)


def _short_int(text: str) -> int:
    if len(text) > 4000:          # int() of 4,300+ digits raises; `loads` refuses long numbers with a message
        return 0
    return int(text)


def _not_json(name: str):
    raise ValueError(name)   # NaN/Infinity: not JSON, so the value stays a string


def apply_overrides(raw: dict, assignments: Iterable[str]) -> dict:
    """Apply `a.b.c=VALUE` assignments (list items by index: `network.layers.0.units=64`)."""
    for assignment in assignments:
        if "=" not in assignment:
            raise BpcompileError(f"--set {clip(repr(assignment))}: expected FIELD=VALUE, e.g. --set train.epochs=3.")
        path, _, value = assignment.partition("=")
        keys = path.strip().split(".")
        node = raw
        for i, key in enumerate(keys[:-1]):
            node = _child(node, key, ".".join(keys[: i + 1]), assignment)
        last = keys[-1]
        if not isinstance(node, (dict, list)):
            raise BpcompileError(f"--set {clip(repr(assignment))}: `{clip('.'.join(keys[:-1]))}` is "
                                 f"{clip(repr(node), 40)}, not an object or list, so it has no field {clip(repr(last))}.")
        if isinstance(node, list):
            index = _index(node, last, path, assignment)
            node[index] = parse_set_value(value, f"--set {clip(repr(assignment))}")
        else:
            node[last] = parse_set_value(value, f"--set {clip(repr(assignment))}")
    return raw


def _child(node, key, path, assignment):
    """The object or list at `key`, created as an empty object if missing (validation judges it later)."""
    if isinstance(node, list):
        return node[_index(node, key, path, assignment)]
    if not isinstance(node, dict):
        raise BpcompileError(f"--set {clip(repr(assignment))}: `{clip(path)}` is not an object or list in the spec.")
    return node.setdefault(key, {})


def _index(node: list, key: str, path: str, assignment: str) -> int:
    try:
        index = int(key)
        node[index]
        return index
    except (ValueError, IndexError):
        raise BpcompileError(f"--set {clip(repr(assignment))}: `{clip(path)}` is not a valid index into a list of "
                             f"{len(node)}.") from None


def spec_from_dict(raw: dict, source: str = "spec") -> ExperimentSpec:
    try:
        return ExperimentSpec.model_validate(raw)
    except ValidationError as err:
        raise BpcompileError(format_validation_error(err, source, raw)) from None


def read_spec_dict(path: str | Path) -> dict:
    return read_json_object(path, "spec file")


def load_spec(path: str | Path, overrides: Iterable[str] = ()) -> ExperimentSpec:
    """Read a JSON spec, apply `--set` overrides and validate it."""
    raw = apply_overrides(read_spec_dict(path), overrides)
    return spec_from_dict(raw, f"spec file {str(path)!r}")


def spec_to_json(spec: ExperimentSpec, full: bool = False) -> str:
    """JSON text of a spec: the fields that were set (full=True: every field, the resolved spec of a run)."""
    data = spec.model_dump(mode="json", by_alias=True) if full else _with_tags(spec)
    if "$schema" in data:                 # editors look for it first
        data = {"$schema": data.pop("$schema"), **data}
    return json.dumps(data, indent=2) + "\n"


def _with_tags(spec: ExperimentSpec) -> dict:
    """model_dump(exclude_unset=True) that keeps (and puts first) the discriminator keys, so unions load back."""
    full = spec.model_dump(mode="json", by_alias=True)
    slim = spec.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def merge(f, s):
        if isinstance(f, dict) and isinstance(s, dict):
            out = {k: f[k] for k in ("type", "name", "scheme") if isinstance(f.get(k), str)}
            out.update({k: merge(f[k], v) for k, v in s.items() if k in f})
            return out
        if isinstance(f, list) and isinstance(s, list):
            return [merge(a, b) for a, b in zip(f, s)]
        return s

    return merge(full, slim)


def save_spec(spec: ExperimentSpec, path: str | Path, full: bool = False) -> None:
    Path(path).write_text(spec_to_json(spec, full=full))


def json_schema() -> dict:
    return ExperimentSpec.model_json_schema()
