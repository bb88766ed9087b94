"""Reading, writing and overriding specs, with errors that name the field."""

import functools
import json
from pathlib import Path
from typing import Any, Iterable

from pydantic import ValidationError

from ..errors import BpcompileError
from .experiment import ExperimentSpec


def format_validation_error(err: ValidationError, source: str) -> str:
    """One paragraph naming every field at fault, e.g. `network.layers.2.kernel`."""
    problems = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not _is_union_tag(p)) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not part of the spec schema; see `bpcompile schema`)"
        elif "input" in e and e["type"] not in ("missing",) and not isinstance(e["input"], (dict, list)):
            msg = f"{msg} (got {e['input']!r})"
        problems.append(f"field `{loc}`: {msg}")
    return f"{source} is not a valid spec: " + "; ".join(problems) + "."


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the discriminator's value (e.g. 'dense') in the location path
    return isinstance(part, str) and part in _union_tags()


@functools.lru_cache(maxsize=1)
def _union_tags() -> frozenset:
    """Every value of a discriminator key ('type', 'name', 'scheme') in the schema, read off the models."""
    tags = set()
    for definition in ExperimentSpec.model_json_schema()["$defs"].values():
        for key in ("type", "name", "scheme"):
            const = definition.get("properties", {}).get(key, {}).get("const")
            if isinstance(const, str):
                tags.add(const)
    return frozenset(tags)


def parse_set_value(text: str) -> Any:
    """`--set` values are JSON when they parse as JSON (numbers, true, lists), else strings."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(raw: dict, assignments: Iterable[str]) -> dict:
    """Apply `a.b.c=VALUE` assignments (list items by index: `network.layers.0.units=64`)."""
    for assignment in assignments:
        if "=" not in assignment:
            raise BpcompileError(f"--set {assignment!r}: expected FIELD=VALUE, e.g. --set train.epochs=3.")
        path, _, value = assignment.partition("=")
        keys = path.strip().split(".")
        node = raw
        for i, key in enumerate(keys[:-1]):
            node = _child(node, key, ".".join(keys[: i + 1]), assignment)
        last = keys[-1]
        if isinstance(node, list):
            index = _index(node, last, path, assignment)
            node[index] = parse_set_value(value)
        else:
            node[last] = parse_set_value(value)
    return raw


def _child(node, key, path, assignment):
    """The object or list at `key`, created as an empty object if missing (validation judges it later)."""
    if isinstance(node, list):
        return node[_index(node, key, path, assignment)]
    if not isinstance(node, dict):
        raise BpcompileError(f"--set {assignment!r}: `{path}` is not an object or list in the spec.")
    return node.setdefault(key, {})


def _index(node: list, key: str, path: str, assignment: str) -> int:
    try:
        index = int(key)
        node[index]
        return index
    except (ValueError, IndexError):
        raise BpcompileError(f"--set {assignment!r}: `{path}` is not a valid index into a list of {len(node)}.") from None


def spec_from_dict(raw: dict, source: str = "spec") -> ExperimentSpec:
    try:
        return ExperimentSpec.model_validate(raw)
    except ValidationError as err:
        raise BpcompileError(format_validation_error(err, source)) from None


def read_json_object(path: str | Path, what: str = "spec file") -> dict:
    """The JSON object in `path`; a missing, unreadable or malformed file is a one-paragraph BpcompileError that
    calls the file `what` ('spec file', 'search space file', ...)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise BpcompileError(f"{what} {str(path)!r} does not exist.") from None
    except OSError as err:
        raise BpcompileError(f"{what} {str(path)!r} cannot be read: {err.strerror}.") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise BpcompileError(f"{what} {str(path)!r} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}.") from None
    if not isinstance(raw, dict):
        raise BpcompileError(f"{what} {str(path)!r} must hold a JSON object, not {type(raw).__name__}.")
    return raw


def read_spec_dict(path: str | Path) -> dict:
    return read_json_object(path, "spec file")


def load_spec(path: str | Path, overrides: Iterable[str] = ()) -> ExperimentSpec:
    """Read a JSON spec, apply `--set` overrides and validate it."""
    raw = apply_overrides(read_spec_dict(path), overrides)
    return spec_from_dict(raw, f"spec file {str(path)!r}")


def spec_to_json(spec: ExperimentSpec, full: bool = False) -> str:
    """JSON text of a spec: the fields that were set (full=True: every field, the resolved spec of a run)."""
    data = spec.model_dump(mode="json") if full else _with_tags(spec)
    return json.dumps(data, indent=2) + "\n"


def _with_tags(spec: ExperimentSpec) -> dict:
    """model_dump(exclude_unset=True) that keeps (and puts first) the discriminator keys, so unions load back."""
    full = spec.model_dump(mode="json")
    slim = spec.model_dump(mode="json", exclude_unset=True)

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
