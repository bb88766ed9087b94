"""Layer modules. The parametric ones live with their op family (ops/dense.py, ops/locally_connected.py,
ops/conv.py) and call its custom ops, so a traced training step shows their forward and backward as named
nodes; they are re-exported here with the non-parametric modules."""

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import ops  # noqa: F401  (registers torch.ops.bpcompile.*)
from .ops.conv import Conv2d  # noqa: F401
from .ops.dense import Dense  # noqa: F401
from .ops.locally_connected import LocallyConnected2d  # noqa: F401


ACTIVATIONS = {
    "tanh": torch.tanh,
    "relu": F.relu,
    "sigmoid": torch.sigmoid,
    "leaky_relu": F.leaky_relu,
    "elu": F.elu,
    "gelu": F.gelu,
    "identity": lambda x: x,
}


class Activation(nn.Module):
    def __init__(self, fn: str):
        super().__init__()
        self.fn_name = fn
        self.fn = ACTIVATIONS[fn]

    def forward(self, x):
        return self.fn(x)

    def extra_repr(self):
        return self.fn_name


class Flatten(nn.Module):
    def forward(self, x):
        return x.flatten(1)


class Pool(nn.Module):
    def __init__(self, kind: str, kernel: int, stride: int, padding: int):
        super().__init__()
        self.kind, self.kernel, self.stride, self.padding = kind, kernel, stride, padding

    def forward(self, x):
        pool = F.max_pool2d if self.kind == "max" else F.avg_pool2d
        return pool(x, self.kernel, self.stride, self.padding)


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.mean((2, 3))


class Residual(nn.Module):
    """out = relu(main(x) + shortcut(x)). Sub-layers are registered directly
    (`<block>.conv1`, `<block>.proj`, ...) so their names match the layer table."""

    def __init__(self, main: "OrderedDict[str, nn.Module]", shortcut: "OrderedDict[str, nn.Module]"):
        super().__init__()
        for name, module in {**main, **shortcut}.items():
            self.add_module(name, module)
        self.main_names, self.shortcut_names = list(main), list(shortcut)

    def forward(self, x):
        out = x
        for name in self.main_names:
            out = getattr(self, name)(out)
        skip = x
        for name in self.shortcut_names:
            skip = getattr(self, name)(skip)
        return F.relu(out + skip)
