"""How a step graph is executed: `train.backend`.

'fx' runs the lowered GraphModule itself: its generated Python calls each node's implementation directly.
'inductor' hands a copy of the same lowered graph to `torch.compile` (Inductor), which traces through the
plain-PyTorch reference implementations (so their elementwise work can fuse with the graph's) and keeps
every other implementation (the Triton kernels on CUDA) an opaque call. The program's graphs are not
touched: `inspect`, the alignment probes, weight mirror's mirror program and evaluation keep running FX.

Inductor compiles on the first step and once more for each new batch shape (the last short batch of an
epoch); on the CPU it needs a C++ compiler. Measured on the CPU it is slower than FX for every rule
(benchmarks/results/backend_cpu_fc.json, backend_cpu_lc.json), so 'fx' is the default."""

import torch
from torch.fx import GraphModule

from ..compiler.program import META_IMPL
from ..compiler.trace import copy_graph
from ..errors import BpcompileError

BACKENDS = ("fx", "inductor")


def executable(graph: GraphModule, backend: str, name: str):
    """The callable that runs `graph` (the program's lowered graph `name`) under `backend`."""
    if backend == "fx":
        return graph
    if backend == "inductor":
        return InductorGraph(graph, name)
    raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")


class InductorGraph:
    """A lowered step graph compiled by torch.compile on its first call. Compilation failures (no C++
    compiler, an op Inductor cannot lower) become one-paragraph errors naming the graph and the spec field."""

    def __init__(self, graph: GraphModule, name: str):
        self.name = name
        module = copy_graph(graph)
        for node in module.graph.nodes:
            # a non-reference implementation (a Triton kernel launcher) is run as it is, not traced into
            if node.op == "call_function" and node.meta.get(META_IMPL, "reference") != "reference":
                node.target = torch.compiler.disable(node.target)
        module.recompile()
        # dynamic=False: one specialised compile per batch shape (in practice two: the batch and the last,
        # shorter one), rather than a symbolic-shape compile
        self.compiled = torch.compile(module, backend="inductor", dynamic=False)

    def __call__(self, *inputs):
        try:
            return self.compiled(*inputs)
        except Exception as error:
            if not _from_compiler(error):
                raise
            cause = getattr(error, "inner_exception", None) or error     # BackendCompilerFailed wraps the cause
            lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
            first = lines[0][:300] if lines else ""
            raise BpcompileError(
                f"train.backend 'inductor': torch.compile could not compile the {self.name} graph "
                f"({type(cause).__name__}: {first}). On the CPU Inductor needs a working C++ compiler (g++ or "
                f"clang); set train.backend to 'fx' to run the same graph without torch.compile."
            ) from None


def _from_compiler(error: Exception) -> bool:
    """Whether the error was raised by torch.compile's machinery (Dynamo, Inductor), not by the graph's ops."""
    module = type(error).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor"))
