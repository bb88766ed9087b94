"""A disk cache of traced graphs: the second compile of a spec skips make_fx.

Tracing is most of a compile: make_fx imports torch._dynamo on first use (about a second here) and
symbolic tracing of a ResNet-50 step takes seconds more. What make_fx returns depends only on what is
traced (the network, the loss, the rule's step and the example inputs' shapes and dtypes), the code
that traces it (bpcompile's sources) and torch; all of these go into the key, so a changed source file
or torch version misses and traces again.

An entry is a JSON file (never pickle or Python code): each node's op, target, arguments and the dtype
it was traced with. Targets resolve only to torch.ops.{aten, prims, bpcompile} operators and a fixed set
of Python operators, names must be identifiers, and an argument may name only an earlier node, so an
entry cannot make the graph call anything else. A file that fails any check, or is unreadable, is
ignored (traced again and rewritten); writes go to a temporary file renamed into place.

Where: $BPCOMPILE_CACHE_DIR, else $XDG_CACHE_HOME/bpcompile/graphs, else ~/.cache/bpcompile/graphs.
BPCOMPILE_GRAPH_CACHE=0 turns the cache off."""

import hashlib
import json
import keyword
import operator
import os
import re
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

import torch
from torch.fx import Graph, GraphModule
from torch.fx.experimental.proxy_tensor import make_fx

from ..spec.reading import loads
from .program import META_DTYPE

FORMAT = 1
MAX_ENTRY_BYTES = 64 * 2**20          # a ResNet-50 step is about 2 MB
NAMESPACES = ("aten", "prims", "bpcompile")
PYTHON_TARGETS = {f"operator.{name}": getattr(operator, name) for name in (
    "getitem", "add", "sub", "mul", "floordiv", "truediv", "mod", "pow", "neg", "eq", "ne", "lt", "le", "gt", "ge")}
PYTHON_TARGETS.update({f"torch.{name}": getattr(torch, name) for name in (
    "sym_float", "sym_int", "sym_max", "sym_min", "sym_not")})
_PYTHON_NAMES = {id(fn): name for name, fn in PYTHON_TARGETS.items()}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,200}")
_DTYPES = {str(t).removeprefix("torch."): t for t in vars(torch).values() if isinstance(t, torch.dtype)}
_MEMORY_FORMATS = {str(f).removeprefix("torch."): f for f in (
    torch.contiguous_format, torch.channels_last, torch.preserve_format, torch.channels_last_3d)}
_LAYOUTS = {str(f).removeprefix("torch."): f for f in (torch.strided, torch.sparse_coo)}


class Unsupported(Exception):
    """The graph holds something an entry cannot say: it is traced every time instead."""


def cache_dir() -> Path | None:
    if os.environ.get("BPCOMPILE_GRAPH_CACHE", "1") == "0":
        return None
    if os.environ.get("BPCOMPILE_CACHE_DIR"):
        return Path(os.environ["BPCOMPILE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bpcompile" / "graphs"


@lru_cache(maxsize=None)
def source_digest(root: str = str(Path(__file__).resolve().parents[1])) -> str | None:
    """sha256 over the package's Python sources (names and contents): any code change misses the cache.
    None (no caching) where the sources are not there to read (an install of bytecode only)."""
    digest = hashlib.sha256()
    sources = sorted(Path(root).rglob("*.py"))
    if not any(path.name == "graph_cache.py" for path in sources):
        return None
    for path in sources:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def code_digest_of(obj) -> str:
    """The source digest that covers `obj`'s class: bpcompile's, or for a plug-in also its own file."""
    module = sys.modules.get(type(obj).__module__)
    path = getattr(module, "__file__", None)
    if path is None or Path(path).resolve().is_relative_to(Path(__file__).resolve().parents[1]):
        return source_digest()
    if source_digest() is None or not Path(path).is_file():
        return None
    return source_digest() + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def traced(fn, example: list, key: dict, code: str | None = None, tracing_mode: str = "symbolic",
           extra=None, extra_valid=None) -> tuple[GraphModule, object]:
    """(make_fx(fn, tracing_mode)(*example), extra()), read from the cache when the same key was traced before.
    `key`: JSON-able facts that determine the graph beside the example inputs (what is traced and how);
    `code`: the digest of the code that traces it (default: bpcompile's sources); `extra`: called after
    tracing for JSON-able facts the tracing run learnt (target propagation's output slots), kept with the
    graph (None without it); `extra_valid(value)`: whether a cached value is well formed (else traced again)."""
    directory = cache_dir()
    code = code or source_digest()
    path = None
    if directory is not None and code is not None:
        facts = {"format": FORMAT, "torch": torch.__version__, "python": list(sys.version_info[:2]),
                 "code": code, "mode": tracing_mode, "default_dtype": str(torch.get_default_dtype()),
                 "grad": torch.is_grad_enabled(), "autocast": _autocast_state(example), "key": key,
                 "example": [_describe(t) for t in example]}
        name = hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()
        path = directory / f"{name}.json"
        found = _load(path)
        if found is not None and (extra_valid is None or extra_valid(found[1])):
            return found
    graph = make_fx(fn, tracing_mode=tracing_mode)(*example)
    record_dtypes(graph)
    learnt = extra() if extra is not None else None
    if path is not None:
        _store(path, graph, learnt)
    return graph, learnt


def record_dtypes(graph: GraphModule) -> None:
    """meta[META_DTYPE]: the dtype each tensor-valued node was traced with (rules cast like it; kept in entries)."""
    for node in graph.graph.nodes:
        value = node.meta.get("val")
        if isinstance(value, torch.Tensor):
            node.meta[META_DTYPE] = value.dtype


def _autocast_state(example) -> list:
    """Whether autocast is on, and to what, for each device type of the inputs (bf16 graphs hold the casts)."""
    state = []
    for device_type in sorted({t.device.type for t in example if isinstance(t, torch.Tensor)}):
        enabled = torch.is_autocast_enabled(device_type)
        state.append([device_type, enabled, str(torch.get_autocast_dtype(device_type)) if enabled else None])
    return state


def network_facts(network) -> list:
    """What of a network decides its traced graph: every module's type and plain settings (a pool's kind and
    kernel, an activation's function, batch norm's eps and mode), every parameter's and buffer's shape and
    dtype, and the input shape."""
    facts = [list(getattr(network, "input_shape", ()))]
    for name, module in network.named_modules():
        plain = {k: v for k, v in vars(module).items()
                 if not k.startswith("_") and isinstance(v, (bool, int, float, str, tuple, list, type(None)))}
        facts.append([name, f"{type(module).__module__}.{type(module).__qualname__}", module.training,
                      json.dumps(plain, sort_keys=True, default=str)])
    for name, tensor in list(network.named_parameters()) + list(network.named_buffers()):
        facts.append([name, list(tensor.shape), str(tensor.dtype)])
    return facts


def _describe(tensor) -> list:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"example inputs must be tensors, not {type(tensor).__name__}")
    return [list(tensor.shape), str(tensor.dtype), tensor.requires_grad, tensor.device.type]


# ---- writing ---------------------------------------------------------------------------------------
def _store(path: Path, graph: GraphModule, extra=None) -> None:
    """Best effort: a graph an entry cannot hold, or a directory we cannot write, just goes uncached."""
    try:
        text = json.dumps({**to_entry(graph), "extra": extra}, separators=(",", ":"), allow_nan=False)
    except (Unsupported, TypeError, ValueError):
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError:
        pass


def to_entry(graph: GraphModule) -> dict:
    index = {}
    nodes = []
    for node in graph.graph.nodes:
        if node.op not in ("placeholder", "call_function", "output"):
            raise Unsupported(node.op)
        entry = {"name": node.name, "op": node.op, "target": _encode_target(node),
                 "args": _encode(node.args, index), "kwargs": _encode(dict(node.kwargs), index)}
        if META_DTYPE in node.meta:
            entry["dtype"] = str(node.meta[META_DTYPE]).removeprefix("torch.")
        index[node] = len(nodes)
        nodes.append(entry)
    return {"format": FORMAT, "nodes": nodes}


def _encode_target(node):
    if node.op != "call_function":
        return node.target
    if isinstance(node.target, torch._ops.OpOverload):
        return {"op": str(node.target)}             # 'aten.mm.default'
    name = _PYTHON_NAMES.get(id(node.target))
    if name is None:
        raise Unsupported(str(node.target))
    return {"py": name}


def _encode(value, index):
    if isinstance(value, torch.fx.Node):
        return {"n": index[value]}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else {"f": repr(value)}
    if isinstance(value, tuple):
        return {"t": [_encode(v, index) for v in value]}
    if isinstance(value, list):
        return [_encode(v, index) for v in value]
    if isinstance(value, dict):
        return {"d": {k: _encode(v, index) for k, v in value.items()}}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {"device": str(value)}
    if isinstance(value, torch.memory_format):
        return {"memory_format": str(value).removeprefix("torch.")}
    if isinstance(value, torch.layout):
        return {"layout": str(value).removeprefix("torch.")}
    raise Unsupported(type(value).__name__)


# ---- reading ---------------------------------------------------------------------------------------
def _load(path: Path) -> tuple[GraphModule, object] | None:
    try:
        if not path.is_file() or path.stat().st_size > MAX_ENTRY_BYTES:
            return None
        entry = loads(path.read_text(encoding="utf-8"), str(path))
        return from_entry(entry), entry.get("extra")
    except Exception:          # any unreadable or invalid entry: trace again (and overwrite it)
        return None


def from_entry(entry: dict) -> GraphModule:
    """The graph of an entry, every name, target and reference checked (ValueError if any fails)."""
    if not isinstance(entry, dict) or entry.get("format") != FORMAT or not isinstance(entry.get("nodes"), list):
        raise ValueError("not a graph entry of this format")
    graph = Graph()
    nodes = []
    for item in entry["nodes"]:
        name, op = item["name"], item["op"]
        if not (isinstance(name, str) and _IDENTIFIER.fullmatch(name) and not keyword.iskeyword(name)):
            raise ValueError(f"bad node name {name!r}")
        args, kwargs = _decode(item["args"], nodes), _decode(item["kwargs"], nodes)
        if not isinstance(args, tuple) or not isinstance(kwargs, dict):
            raise ValueError("bad arguments")
        if op == "placeholder":
            target = item["target"]
            if not (isinstance(target, str) and _IDENTIFIER.fullmatch(target)) or args or kwargs:
                raise ValueError(f"bad placeholder {target!r}")
            node = graph.placeholder(target)
        elif op == "call_function":
            node = graph.create_node("call_function", _decode_target(item["target"]), args, kwargs, name=name)
        elif op == "output":
            node = graph.output(args[0])
        else:
            raise ValueError(f"bad node op {op!r}")
        if node.name != name:
            raise ValueError(f"node name {name!r} is taken twice")
        if "dtype" in item:
            node.meta[META_DTYPE] = _DTYPES[item["dtype"]]
        nodes.append(node)
    graph.lint()
    return GraphModule(torch.nn.Module(), graph)


def _decode_target(target):
    if not isinstance(target, dict) or len(target) != 1:
        raise ValueError("bad target")
    if "py" in target:
        return PYTHON_TARGETS[target["py"]]
    parts = target["op"].split(".") if isinstance(target.get("op"), str) else []
    if len(parts) != 3 or parts[0] not in NAMESPACES or not all(_IDENTIFIER.fullmatch(p) for p in parts):
        raise ValueError(f"bad operator {target!r}")
    overload = getattr(getattr(getattr(torch.ops, parts[0]), parts[1]), parts[2])
    if not isinstance(overload, torch._ops.OpOverload):
        raise ValueError(f"bad operator {target!r}")
    return overload


def _decode(value, nodes):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_decode(v, nodes) for v in value]
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError("bad argument")
    (tag, inner), = value.items()
    if tag == "n":
        if not isinstance(inner, int) or isinstance(inner, bool) or not 0 <= inner < len(nodes):
            raise ValueError("a reference to a node not defined before")
        return nodes[inner]
    if tag == "t":
        return tuple(_decode(v, nodes) for v in inner)
    if tag == "d":
        return {str(k): _decode(v, nodes) for k, v in inner.items()}
    if tag == "f":
        if inner not in ("inf", "-inf", "nan"):
            raise ValueError("bad float")
        return float(inner)
    if tag == "dtype":
        return _DTYPES[inner]
    if tag == "device":
        return torch.device(inner)
    if tag == "memory_format":
        return _MEMORY_FORMATS[inner]
    if tag == "layout":
        return _LAYOUTS[inner]
    raise ValueError(f"bad argument tag {tag!r}")
