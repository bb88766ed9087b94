"""Several processes (torchrun): process group, one fused all-reduce per step, and who writes.

    torchrun --nproc_per_node 4 -m bpcompile run SPEC

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; `Distributed.from_env` joins the process group (nccl on GPUs,
gloo on CPUs) and each rank takes the GPU of its LOCAL_RANK. Without torchrun it is a single process and every
method is a no-op, so the trainer has one code path.

Why not DistributedDataParallel: DDP all-reduces inside autograd's backward, through hooks on the parameters'
gradient accumulators. A bpcompile step never calls autograd: the compiled FX graph computes every update itself
(the rule's, not the gradient) and hands it over as `.grad`. So every rank runs the graph on its shard, and
`reduce_step` averages everything the step trained (forward parameters, learned rule state such as target
propagation's inverses or direct Kolen-Pollack's B) with one all-reduce of one flat buffer, weighted by shard
size, so that world ranks with global batch B take exactly the step of one process with batch B. What rules
update outside the graph is identical on every rank without communication: weight mirror's noise and brSF's
magnitudes come from generators seeded alike, Kolen-Pollack adds W's (already averaged) update to B."""

import os
from typing import Optional

import torch
import torch.distributed as dist

from ..data.shard import Shard
from ..errors import BpcompileError


class Distributed:
    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0):
        self.rank, self.world, self.local_rank = rank, world, local_rank

    @classmethod
    def from_env(cls, device_type: str) -> "Distributed":
        """Join torchrun's process group when WORLD_SIZE > 1 (backend nccl for 'cuda', gloo for 'cpu')."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if device_type == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise BpcompileError(
                    f"torchrun started local rank {local_rank} but this machine has {torch.cuda.device_count()} "
                    f"GPU(s): give --nproc_per_node at most the number of GPUs, or --device cpu.")
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        return cls(rank, world, local_rank)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run directory (metrics, checkpoints, summary) and prints."""
        return self.rank == 0

    @property
    def shard(self) -> Shard:
        return Shard(self.rank, self.world)

    def device(self, device: torch.device) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.enabled and device.type == "cuda" else device

    def reduce_step(self, tensors: list, local: int, total: int) -> None:
        """Replace each tensor's .grad (this rank's mean over its `local` examples) by the mean over all `total`
        examples of the global batch: one all-reduce of the flat, shard-weighted buffer."""
        if not self.enabled:
            return
        grads = [t.grad for t in tensors if t.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads]) * (local / total)
        dist.all_reduce(flat)
        for g, part in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(part.view_as(g))

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sums of `values` over all ranks (metrics: loss sums, error counts, example counts)."""
        if not self.enabled:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def broadcast_tensors(self, tensors: list) -> None:
        """Make every rank's copies equal rank 0's (parameters, buffers, rule state at the start)."""
        if self.enabled:
            for t in tensors:
                dist.broadcast(t.data, src=0)

    def average(self, tensors: list) -> None:
        """Average floating-point tensors over ranks (batch norm's running statistics, which each rank
        updates from its own shard)."""
        if self.enabled:
            for t in tensors:
                if t.is_floating_point():
                    dist.all_reduce(t.data)
                    t.data.div_(self.world)

    def broadcast_object(self, obj):
        """Rank 0's value of `obj` on every rank (the run directory's name, a divergence message)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank if it is true on any (so all ranks stop together)."""
        return bool(self.sum([float(flag)], device)[0]) if self.enabled else flag

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self, wait: bool = True) -> None:
        """Destroy the process group. wait: first meet every rank (after a run that ended normally: a rank
        destroying gloo's group while its peer still has work in flight aborts the peer, "terminate called
        without an active exception"); never after an error, when a peer may not come."""
        if self.enabled and dist.is_initialized():
            if wait:
                dist.barrier()
            dist.destroy_process_group()


SINGLE_PROCESS = Distributed()


def describe(d: Optional[Distributed]) -> str:
    return f"rank {d.rank} of {d.world}" if d is not None and d.enabled else "single process"
