"""Hostile specs for the fuzz suite: the shipped specs with one to three mutations each.

A mutation replaces a value somewhere in the spec (every key and list item is
reachable) with something hostile (wrong type, NaN, huge, negative, deep,
long), deletes or adds a key, or replaces a whole section; `--set` paths are
drawn the same way, through scalars and nulls included."""

import json
from pathlib import Path

from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]

# small shipped specs: a dry run of any accepted mutant stays cheap on two cores
BASE_SPECS = [
    "quickstart.json", "mnist_fc_bp.json", "mnist_fc_fa.json", "mnist_fc_dfa.json", "mnist_fc_ss.json",
    "mnist_fc_wm.json", "mnist_fc_kp.json", "mnist_fc_dtp.json", "mnist_fc_sdtp_parallel.json",
    "mnist_fc_ao_sdtp.json", "mnist_lc_fa.json", "mnist_conv_bp.json", "biotorch/mnist_lenet_dfa.json",
    "cifar_resnet18_fa.json",
]

HOSTILE_SCALARS = [
    None, True, False, 0, -1, 1, 3, 2**31, 2**32 + 1, 2**63, -(2**63), 10**12, 10**30, 10**39,
    0.0, -0.0, 0.5, -0.5, 1.5, 1e-320, 1e30, 1e308, -1e308, "", "x", "1", "1e3", "nan", "inf", "-inf", "true",
    "dense", "sgd", "bp", "epoch", "mean", "../../etc/passwd", "x" * 5000, "é\u0000\ud7ff",
]
HOSTILE_STRUCTURES = [
    [], {}, [0], [1, -5, 28], [1, 0, 28], [1, 28], [10**6, 10**6], [2**14, 2**14, 2**14], [1, 2], [0.9, 2.0],
    [[[[[[[[1]]]]]]]], {"type": "dense"}, {"type": "dense", "units": 2**24}, {"name": "synthetic", "input_shape": [0]},
    {"name": "synthetic", "input_shape": [3, 4096, 4096], "train_size": 2**26}, {"name": "dfa"}, {"name": "nope"},
    {"scheme": "normal", "std": 1e30}, {"name": "step", "gamma": 1e30}, {"name": "adam", "betas": [1, 2]},
    {"$schema": "x"}, {"": 1}, {"type": "resnet", "width": 10**6}, {"type": "activation", "activation": 1},
]


def load_base(name: str) -> dict:
    return json.loads((ROOT / "specs" / name).read_text())


def paths(node, prefix=()):
    """Every path to a value in a JSON tree (keys and list indices)."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths(value, prefix + (i,))


def neighbours(value):
    """Values near an original one: the boundary cases of its own type."""
    if isinstance(value, bool):
        return [not value, int(value), str(value).lower()]
    if isinstance(value, int):
        return [value * 1000, -value, value + 1, value - 1, str(value), float(value), value * 10**9]
    if isinstance(value, float):
        return [value * 1e6, -value, value * 1e30, str(value), int(value), 1.0 - 1e-12, 1.0]
    if isinstance(value, str):
        return [value + "x", value.upper(), value * 2, ""]
    return []


ADDED_KEYS = ["type", "name", "units", "x", "rule", "kernel", "$schema", "seed"]


def mutate(spec: dict, choose, count: int) -> list[str]:
    """Apply `count` mutations to `spec` in place, each choice made by `choose(sequence)` (hypothesis's draw or
    random.Random.choice); returns a description of each."""
    def hostile(original=None):
        pool = HOSTILE_SCALARS + HOSTILE_STRUCTURES + neighbours(original)
        return json.loads(json.dumps(choose(pool)))   # a fresh copy, JSON-representable

    done = []
    for _ in range(count):
        path = choose(list(paths(spec)))
        node = spec
        for part in path:
            node = node[part]
        kind = choose(["replace", "replace", "replace", "delete", "add_key"]) if path else "add_key"
        if kind == "add_key" and not isinstance(node, dict):
            kind = "replace"
        if kind == "replace":
            value = hostile(node)
            set_at(spec, path, value)
            done.append(f"{'.'.join(map(str, path))} = {json.dumps(value)[:60]}")
        elif kind == "delete":
            parent = spec
            for part in path[:-1]:
                parent = parent[part]
            del parent[path[-1]]
            done.append(f"delete {'.'.join(map(str, path))}")
        else:
            key = choose(ADDED_KEYS)
            node[key] = hostile(node.get(key))
            done.append(f"{'.'.join(map(str, path + (key,)))} = {json.dumps(node[key])[:60]}")
    return done


def set_at(tree, path, value):
    node = tree
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


@st.composite
def mutated_spec(draw, base_names=BASE_SPECS):
    """(base name, mutated spec dict, description of the mutations)."""
    name = draw(st.sampled_from(base_names))
    spec = load_base(name)
    done = mutate(spec, lambda seq: draw(st.sampled_from(seq)), draw(st.integers(1, 3)))
    return name, spec, done


@st.composite
def set_assignment(draw, spec: dict):
    """A `--set FIELD=VALUE` through the spec's paths, some past their end (into scalars, nulls, lists)."""
    path = [str(p) for p in draw(st.sampled_from([p for p in paths(spec) if p]))]
    if draw(st.booleans()):
        path.append(draw(st.sampled_from(["x", "0", "-1", "99", "units", "name"])))
    value = draw(st.sampled_from(
        ["1", "-1", "0", "1e999", "NaN", "Infinity", "true", "null", "[]", "{}", "[1,2]", '"x"', "abc", "10**30",
         "1" * 5000, "[" * 200 + "]" * 200, '{"a":1,"a":2}', "0.5", "2", "1e12", "relu", "sgd", '{"name":"adam"}']))
    return ".".join(path) + "=" + value
