"""Search spaces for random hyper-parameter search (Bartunov et al. Table 4 style).

A search space file is a JSON object mapping spec field paths, in the `--set` syntax (`optimizer.lr`,
`optimizer.betas.1`, `rule.inverse_optimizer.eps`), to a distribution:

    {"optimizer.lr": {"log_uniform": [1e-5, 3e-4]},
     "optimizer.betas.1": {"choice": [0.99, 0.999]},
     "rule.noise_sigma": {"uniform": [0.01, 0.3]},
     "$comment": "optional free text"}

`sample(space, trial_rng(seed, i))` draws trial i's configuration; it depends only on (seed, i). Paths a given
spec does not have (`rule.alpha` for BP) are not sampled into it: `split_paths` tells which apply.
"""

import functools
import json
import math
import random
import re
from pathlib import Path
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from ..errors import BpcompileError
from ..spec.io import read_json_object

COMMENT_KEY = "$comment"
KINDS = ("log_uniform", "uniform", "choice")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INDEX = re.compile(r"^[0-9]+$")


class _Dist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogUniform(_Dist):
    """exp(U(log lo, log hi)); 0 < lo <= hi."""

    log_uniform: tuple[float, float]

    def draw(self, rng: random.Random) -> float:
        lo, hi = self.log_uniform
        if lo == hi:
            return lo
        return min(max(math.exp(rng.uniform(math.log(lo), math.log(hi))), lo), hi)

    def problem(self) -> Optional[str]:
        lo, hi = self.log_uniform
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
            return f"log_uniform needs [lo, hi] with 0 < lo <= hi (got {[lo, hi]})"
        return None


class Uniform(_Dist):
    """U(lo, hi); lo <= hi."""

    uniform: tuple[float, float]

    def draw(self, rng: random.Random) -> float:
        lo, hi = self.uniform
        return min(max(rng.uniform(lo, hi), lo), hi)

    def problem(self) -> Optional[str]:
        lo, hi = self.uniform
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            return f"uniform needs [lo, hi] with lo <= hi (got {[lo, hi]})"
        return None


class Choice(_Dist):
    """One of the listed JSON values, each equally likely."""

    choice: list[JsonValue] = Field(min_length=1)

    def draw(self, rng: random.Random) -> Any:
        return self.choice[rng.randrange(len(self.choice))]

    def problem(self) -> Optional[str]:
        return None


Distribution = Union[LogUniform, Uniform, Choice]
_MODELS = {"log_uniform": LogUniform, "uniform": Uniform, "choice": Choice}


class SearchSpace(BaseModel):
    """Field path (`--set` syntax) -> distribution. Build it with `parse_space` / `load_space`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    params: dict[str, Distribution]
    comment: Optional[str] = None

    def to_json(self) -> dict:
        """The file form (what `parse_space` reads)."""
        out: dict = {COMMENT_KEY: self.comment} if self.comment is not None else {}
        out.update({path: dist.model_dump(mode="json") for path, dist in self.params.items()})
        return out

    @property
    def paths(self) -> list[str]:
        return sorted(self.params)


@functools.lru_cache(maxsize=1)
def _field_names() -> tuple[frozenset, frozenset]:
    """(top-level spec fields, every property name of every spec model)."""
    from ..spec import ExperimentSpec

    schema = ExperimentSpec.model_json_schema()
    names = set(schema.get("properties", {}))
    for definition in schema.get("$defs", {}).values():
        names.update(definition.get("properties", {}))
    return frozenset(ExperimentSpec.model_fields), frozenset(names)


def _path_problem(path: str) -> Optional[str]:
    if not isinstance(path, str) or not path:
        return "a field path must be a non-empty string such as `optimizer.lr`"
    parts = path.split(".")
    top, names = _field_names()
    for part in parts:
        if not part:
            return "a path has no empty parts (write paths as for --set, e.g. optimizer.betas.1)"
        if not (_NAME.match(part) or _INDEX.match(part)):
            return f"`{part}` is not a field name or list index (write paths as for --set, e.g. optimizer.betas.1)"
    if parts[0] not in top:
        return f"`{parts[0]}` is not a top-level spec field (one of {', '.join(sorted(top))})"
    for part in parts[1:]:
        if not _INDEX.match(part) and part not in names:
            return f"`{part}` is not a field of any spec model (see `bpcompile schema`)"
    return None


def parse_space(raw: Any, source: str = "search space") -> SearchSpace:
    """Validate the file form; every problem is named by its field path, in one paragraph."""
    if not isinstance(raw, dict):
        raise BpcompileError(f"{source} must be a JSON object mapping field paths to distributions, "
                             f"not {type(raw).__name__}.")
    problems, params, comment = [], {}, None
    for path, value in raw.items():
        if path == COMMENT_KEY:
            if not isinstance(value, str):
                problems.append(f"`{COMMENT_KEY}` must be a string")
            else:
                comment = value
            continue
        problem = _path_problem(path)
        if problem:
            problems.append(f"field `{path}`: {problem}")
            continue
        if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in KINDS:
            problems.append(f"field `{path}`: expected one of {{\"log_uniform\": [lo, hi]}}, {{\"uniform\": [lo, hi]}}, "
                            f"{{\"choice\": [v1, v2, ...]}} (got {json.dumps(value)})")
            continue
        kind = next(iter(value))
        try:
            dist = _MODELS[kind].model_validate(value)
        except ValidationError as err:   # wrong types or lengths
            detail = "; ".join(e["msg"] for e in err.errors())
            shape = "a non-empty list of values" if kind == "choice" else "two numbers [lo, hi]"
            problems.append(f"field `{path}`: {kind} needs {shape} ({detail}; got {json.dumps(value[kind])})")
            continue
        problem = dist.problem()
        if problem:
            problems.append(f"field `{path}`: {problem}")
            continue
        params[path] = dist
    if problems:
        raise BpcompileError(f"{source} is not a valid search space: " + "; ".join(problems) + ".")
    if not params:
        raise BpcompileError(f"{source} names no field to search over.")
    return SearchSpace(params=params, comment=comment)


def load_space(path: Union[str, Path]) -> SearchSpace:
    return parse_space(read_json_object(path, "search space file"), f"search space file {str(path)!r}")


def as_space(space: Union[SearchSpace, dict, str, Path]) -> SearchSpace:
    """A SearchSpace from itself, its file form or a file path."""
    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, dict):
        return parse_space(space)
    return load_space(space)


def trial_rng(seed: int, trial: int) -> random.Random:
    """The generator of trial `trial` of a sweep seeded `seed` (string seeds hash with SHA-512: stable)."""
    return random.Random(f"{seed}:{trial}")


def sample(space: SearchSpace, rng: random.Random) -> dict[str, Any]:
    """One configuration: every path of the space, drawn in sorted path order (file order does not matter)."""
    return {path: space.params[path].draw(rng) for path in space.paths}


def has_path(resolved: Any, path: str) -> bool:
    """Whether `path` names an existing field of a resolved spec JSON (lists by index)."""
    node = resolved
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and _INDEX.match(part) and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def split_paths(space: SearchSpace, spec) -> tuple[list[str], list[str]]:
    """(paths the spec has, paths it lacks), judged on its resolved JSON (`spec_to_json(spec, full=True)`)."""
    from ..spec import spec_to_json

    resolved = json.loads(spec_to_json(spec, full=True))
    present = [p for p in space.paths if has_path(resolved, p)]
    return present, [p for p in space.paths if p not in present]
