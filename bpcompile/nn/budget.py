"""The size budget: how much memory a spec needs at least, known from the spec before anything is allocated.

The network is planned on the meta device (shapes and parameter counts, no
storage; every layer's output shape comes from the plan, not from running it:
a meta forward pass imports torch._dynamo for Python meta kernels, a second of
startup), and the least a training step holds is counted: every weight and its
gradient, the rule's feedback tensors (B for FA-like rules, DFA's direct
matrices, target propagation's inverses and AO-SDTP's auxiliary map), one
training batch with every layer's output kept for the backward pass, and a
synthetic data set (generated in host memory). Optimiser state, workspace and
the allocator's slack come on top, so a run may still run out of memory; but a
spec whose least exceeds the limit is refused with the numbers, not an
allocation failure deep inside torch.
"""

import math
from dataclasses import dataclass

import torch

from ..errors import BpcompileError
from .build import plan_network

BYTES_PER_ELEMENT = 4            # fp32 master weights and activations (bf16 autocast keeps fp32 weights)
SPEC_LIMIT_BYTES = 2**40         # 1 TiB: no machine this project runs on holds more


@dataclass
class Estimate:
    parameters: int              # forward weights and biases
    feedback: int                # elements of the rule's own tensors
    activations: int             # elements per example: the input and every layer's output
    widest: int                  # elements per example of the input plus the largest layer output (evaluation)
    batch_size: int
    eval_batch_size: int
    data: int                    # elements of a synthetic data set held in memory (0 for files)
    biggest: str                 # the layer with the most weights, to name in messages

    @property
    def bytes(self) -> int:
        # training keeps every layer's output for the backward pass; evaluation (no gradients) one at a time
        batch = max(self.batch_size * self.activations, self.eval_batch_size * self.widest)
        return BYTES_PER_ELEMENT * (2 * self.parameters + self.feedback + batch + self.data)

    def describe(self) -> str:
        return (f"{_gib(self.bytes)} at least: {self.parameters:,} parameters (with their gradients), "
                f"{self.feedback:,} feedback or inverse elements, {self.activations:,} activations per example at "
                f"data.batch_size {self.batch_size} (evaluation: the widest layer at data.eval_batch_size "
                f"{self.eval_batch_size}), {self.data:,} elements of synthetic data; the largest layer is "
                f"{self.biggest}")


def estimate(spec, input_shape: tuple, classes: int) -> Estimate:
    """The least memory a training run of `spec` holds (see the module docstring)."""
    with torch.device("meta"):
        network = plan_network(spec.network, input_shape, classes)
    parameters = sum(p.numel() for p in network.parameters())
    outputs = [math.prod(shape) for shape in network.leaf_output_shapes]
    activations = math.prod(input_shape) + sum(outputs)
    sizes = {info.name: math.prod(network.get_parameter(info.weight).shape) for info in network.layer_table}
    biggest = max(network.layer_table, key=lambda info: sizes[info.name]) if network.layer_table else None
    data = spec.data
    synthetic = (data.train_size + data.test_size) * math.prod(input_shape) if data.name == "synthetic" else 0
    return Estimate(
        parameters=parameters, feedback=_feedback_elements(spec, network), activations=activations,
        widest=math.prod(input_shape) + max(outputs, default=0), batch_size=data.batch_size,
        eval_batch_size=data.eval_batch_size, data=synthetic,
        biggest=(f"'{biggest.name}' ({biggest.where}, {biggest.type}, {sizes[biggest.name]:,} weights)"
                 if biggest else "(none)"),
    )


def check_budget(spec, input_shape: tuple, classes: int, limit_bytes: int = SPEC_LIMIT_BYTES,
                 where: str = "any machine this project runs on") -> Estimate:
    """Refuse a spec whose least memory exceeds `limit_bytes`, naming the fields that drive it."""
    found = estimate(spec, input_shape, classes)
    if found.bytes > limit_bytes:
        raise BpcompileError(
            f"the spec needs {found.describe()}; that is more than {where} ({_gib(limit_bytes)}): lower "
            f"data.batch_size / data.eval_batch_size, the layers' units or channels, the input size or a synthetic set's "
            f"train_size and test_size."
        )
    return found


CPU_HEADROOM = 2   # on the CPU the least is held against half the free memory (see device_memory_bytes)


def device_memory_bytes(device: torch.device) -> int:
    """What a run's least may use on its device. A GPU: its total memory (torch raises OutOfMemoryError, which
    the CLI reports cleanly, when the rest does not fit). The CPU: half the memory available now, because past it
    Linux's OOM killer ends the process without a word, and activation gradients and workspace come on top."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        with open("/proc/meminfo") as f:
            available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        try:
            import os
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):   # not a POSIX system: only the spec limit applies
            return SPEC_LIMIT_BYTES
    return available // CPU_HEADROOM


def _feedback_elements(spec, network) -> int:
    """Elements of the tensors the rules add beside the forward weights (each rule's pass says)."""
    from ..compiler.rules import state_elements      # the rules import nn: look them up when asked

    return state_elements(spec, network)


def _gib(count: int) -> str:
    return f"{count / 2**30:,.1f} GiB" if count >= 2**30 else f"{count / 2**20:,.1f} MiB"
