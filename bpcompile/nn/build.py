"""Build the network of a spec: plain layer modules, shapes checked layer by
layer (errors name the layer and its place in the spec), a layer table, and
seeded initialisation. Macros (residual_block, resnet) expand here into plain
layers with dotted names (e.g. 'stage2_block1.conv1')."""

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn

from ..errors import BpcompileError
from ..spec import layers as L
from . import layers as M
from .init import init_tensor
from .ops import FAMILIES
from .ops.shapes import MAX_TENSOR_ELEMENTS, check_size, resolve_padding, window  # noqa: F401  (re-exported)

# default name prefixes of the non-parametric layers (a parametric kind's family has its own)
PREFIX = {"activation": "act", "batch_norm": "bn", "flatten": "flatten", "pool": "pool", "global_avg_pool": "gap",
          "residual_block": "block", "resnet": "resnet"}


@dataclass
class LayerInfo:
    """One parametric layer (dense, locally connected, conv) of the built network."""

    name: str                  # module path, e.g. 'fc1' or 'stage1_block1.conv1'
    type: str                  # spec layer type
    where: str                 # place in the spec, e.g. 'network.layers[3]'
    in_shape: tuple            # per example, without batch
    out_shape: tuple
    fan_in: int
    fan_out: int
    weight: str                # parameter names
    bias: Optional[str]
    geometry: dict = field(default_factory=dict)  # kernel/stride/padding for LC and conv
    init: object = None        # the init scheme W was drawn with (set by `initialise`); feedback B is drawn alike


class Network(nn.Sequential):
    """The built network: named top-level layers applied in order."""

    def __init__(self, modules: "OrderedDict[str, nn.Module]", layer_table: list[LayerInfo],
                 input_shape: tuple, output_shape: tuple, leaf_output_shapes: tuple = ()):
        super().__init__(modules)
        self.layer_table = layer_table
        self.input_shape = input_shape
        self.output_shape = output_shape
        self.leaf_output_shapes = leaf_output_shapes   # per example, of every module without children (budget.py)

    def layer(self, name: str) -> LayerInfo:
        return next(info for info in self.layer_table if info.name == name)


class _Builder:
    def __init__(self):
        self.table: list[LayerInfo] = []
        self.used: set[str] = set()
        self.counters: dict[str, int] = {}
        self.leaf_outputs: list[tuple] = []      # output shape of every leaf module, as planned

    def name(self, spec, explicit: Optional[str] = None) -> str:
        if explicit:
            self.used.add(explicit)
            return explicit
        prefix = FAMILIES[spec.type].prefix if spec.type in FAMILIES else PREFIX[spec.type]
        while True:
            self.counters[prefix] = self.counters.get(prefix, 0) + 1
            candidate = f"{prefix}{self.counters[prefix]}"
            if candidate not in self.used:
                self.used.add(candidate)
                return candidate

    def add(self, spec, shape: tuple, name: str, where: str):
        """(module, output shape) of one layer spec; records the output shape of a leaf module."""
        module, out_shape = self._add(spec, shape, name, where)
        if not list(module.children()):
            self.leaf_outputs.append(tuple(out_shape))
        return module, out_shape

    def _add(self, spec, shape: tuple, name: str, where: str):
        kind = spec.type
        what = f"layer '{name}' ({where}, {kind})"
        if kind in FAMILIES:       # a parametric layer kind: its family plans it (nn/ops/<kind>.py)
            plan = FAMILIES[kind].plan(spec, shape, what)
            self._record(name, kind, where, shape, plan.out_shape, plan.fan_in, plan.fan_out, plan.module,
                         plan.geometry)
            return plan.module, plan.out_shape
        if kind == "pool":
            kernel, stride, padding, h_out, w_out = window(spec, shape, what)
            return M.Pool(spec.kind, kernel, stride, padding), (shape[0], h_out, w_out)
        if kind == "activation":
            return M.Activation(spec.fn), shape
        if kind == "flatten":
            flat = 1
            for d in shape:
                flat *= d
            return M.Flatten(), (flat,)
        if kind == "global_avg_pool":
            if len(shape) != 3:
                raise BpcompileError(f"{what} needs a (channels, height, width) input but gets shape {shape}.")
            return M.GlobalAvgPool(), (shape[0],)
        if kind == "batch_norm":
            if len(shape) not in (1, 3):
                raise BpcompileError(f"{what} needs a (features,) or (channels, height, width) input, not {shape}.")
            cls = nn.BatchNorm1d if len(shape) == 1 else nn.BatchNorm2d
            return cls(shape[0], eps=spec.eps, momentum=spec.momentum, affine=spec.affine), shape
        if kind == "residual_block":
            return self._residual(spec, shape, name, where)
        raise BpcompileError(f"{what}: layer type {kind!r} cannot appear here.")  # resnet is expanded by the caller

    def _record(self, name, kind, where, in_shape, out_shape, fan_in, fan_out, module, geometry=None):
        self.table.append(LayerInfo(
            name=name, type=kind, where=where, in_shape=tuple(in_shape), out_shape=tuple(out_shape),
            fan_in=fan_in, fan_out=fan_out, weight=f"{name}.weight",
            bias=f"{name}.bias" if module.bias is not None else None, geometry=geometry or {},
        ))

    def _residual(self, spec, shape, name, where):
        """Basic or bottleneck block; layers named '<block>.conv1', '<block>.bn1', ..., '<block>.proj'."""
        if len(shape) != 3:
            raise BpcompileError(f"layer '{name}' ({where}, residual_block) needs a (channels, height, width) input, not {shape}.")
        if spec.bottleneck:
            plan = [(1, spec.channels, 1), (3, spec.channels, spec.stride), (1, spec.channels * 4, 1)]
        else:
            plan = [(3, spec.channels, spec.stride), (3, spec.channels, 1)]
        main, cur = OrderedDict(), shape
        for i, (kernel, channels, stride) in enumerate(plan, start=1):
            conv = L.Conv2d(channels=channels, kernel=kernel, stride=stride, bias=False)
            main[f"conv{i}"], cur = self.add(conv, cur, f"{name}.conv{i}", where)
            main[f"bn{i}"], cur = self.add(L.BatchNorm(), cur, f"{name}.bn{i}", where)
            if i < len(plan):
                main[f"act{i}"] = M.Activation("relu")
                self.leaf_outputs.append(tuple(cur))
        shortcut = OrderedDict()
        if cur != shape:
            proj = L.Conv2d(channels=cur[0], kernel=1, stride=spec.stride, bias=False)
            shortcut["proj"], proj_shape = self.add(proj, shape, f"{name}.proj", where)
            shortcut["proj_bn"], _ = self.add(L.BatchNorm(), proj_shape, f"{name}.proj_bn", where)
        return M.Residual(main, shortcut), cur


def expand_macros(layer_specs: list) -> list[tuple[object, str]]:
    """Replace resnet macros by their plain layers; returns (layer spec, place in the spec) pairs."""
    out = []
    for i, spec in enumerate(layer_specs):
        where = f"network.layers[{i}]"
        if spec.type != "resnet":
            out.append((spec, where))
            continue
        imagenet = spec.stem == "imagenet"
        stem = [L.Conv2d(name="stem_conv", channels=spec.width, kernel=7 if imagenet else 3, stride=2 if imagenet else 1, bias=False),
                L.BatchNorm(name="stem_bn"), L.Activation(fn="relu")]
        if imagenet:
            stem.append(L.Pool(kind="max", kernel=3, stride=2, padding=1))
        blocks = [2, 2, 2, 2] if spec.depth == 18 else [3, 4, 6, 3]
        body = []
        for stage, count in enumerate(blocks, start=1):
            width = spec.width * 2 ** (stage - 1)
            for b in range(1, count + 1):
                stride = 2 if (b == 1 and stage > 1) else 1
                body.append(L.ResidualBlock(name=f"stage{stage}_block{b}", channels=width, stride=stride,
                                            bottleneck=spec.depth == 50))
        head = [L.GlobalAvgPool(), L.Dense(name="fc", units=spec.num_classes, init=spec.head_init)]
        out += [(layer, f"{where} (resnet{spec.depth})") for layer in stem + body + head]
    return out


def build_network(network_spec, input_shape: tuple, num_classes: int, seed: int) -> Network:
    """Build and initialise the network of `network_spec` for inputs of `input_shape` (per example)."""
    network = plan_network(network_spec, input_shape, num_classes)
    initialise(network, network_spec, seed)
    return network


def plan_network(network_spec, input_shape: tuple, num_classes: int) -> Network:
    """The network of `network_spec`, shapes checked, parameters uninitialised (torch.empty). Built under
    `torch.device("meta")` it allocates nothing: the size budget reads shapes and counts off such a plan."""
    volume = 1
    for d in input_shape:
        volume *= d
    check_size("the input", "elements per example", volume, f"shape {tuple(input_shape)}")
    builder = _Builder()
    for spec, _ in expand_macros(network_spec.layers):
        if getattr(spec, "name", None):
            builder.used.add(spec.name)
    modules, shape = OrderedDict(), tuple(input_shape)
    for spec, where in expand_macros(network_spec.layers):
        name = builder.name(spec, getattr(spec, "name", None))
        modules[name], shape = builder.add(spec, shape, name, where)
    if shape != (num_classes,):
        last = next(reversed(modules))
        raise BpcompileError(
            f"the network's output has shape {shape} (last layer '{last}') but the data set has {num_classes} "
            f"classes: the last layer must be a dense layer of {num_classes} units."
        )
    return Network(modules, builder.table, tuple(input_shape), shape, tuple(builder.leaf_outputs))


def initialise(network: Network, network_spec, seed: int) -> None:
    """Seeded initialisation of every parametric layer, in layer-table order (biases zero)."""
    generator = torch.Generator().manual_seed(seed)
    layer_inits = {}
    for spec, _ in expand_macros(network_spec.layers):
        if getattr(spec, "init", None) is not None and getattr(spec, "name", None):
            layer_inits[spec.name] = spec.init
    params = dict(network.named_parameters())
    for info in network.layer_table:
        scheme = layer_inits.get(info.name, network_spec.init)
        info.init = scheme
        init_tensor(params[info.weight], scheme, info.fan_in, info.fan_out, generator)
