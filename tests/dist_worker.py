"""Run by tests/test_distributed.py under torchrun: train a spec through run_experiment with the process group,
then gather every rank's parameters, buffers and rule state, and (rank 0) save them for the test.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/dist_worker.py SPEC OUT [--resume]
        [--plugin FILE.py]"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from rich.console import Console

from bpcompile.plugins import load_plugins
from bpcompile.runtime.distributed import Distributed
from bpcompile.runtime.trainer import resume_experiment, run_experiment
from bpcompile.spec import load_spec

captured = {}


def main(spec_path: str, out: str, resume: bool) -> None:
    torch.set_num_threads(1)
    d = Distributed.from_env("cpu")
    spec = load_spec(Path(spec_path))
    import bpcompile.runtime.trainer as trainer_module

    original = trainer_module.Trainer.fit

    def fit(self):                         # keep the trainer to read its tensors after training
        captured["trainer"] = self
        return original(self)

    trainer_module.Trainer.fit = fit
    console = Console(quiet=True)
    if resume:
        resume_experiment(Path(out), spec=spec, device="cpu", console=console, show_progress=False, dist=d)
    else:
        run_experiment(spec, out=Path(out), device="cpu", console=console, show_progress=False, dist=d)
    trainer = captured["trainer"]
    tensors = {**{f"param:{k}": v for k, v in trainer.program.network.named_parameters()},
               **{f"buffer:{k}": v for k, v in trainer.program.network.named_buffers()},
               **{f"state:{k}": v for k, v in trainer.program.state.items()}}
    mine = {k: v.detach().clone() for k, v in tensors.items()}
    gathered = [mine] * d.world
    if d.enabled:
        dist.all_gather_object(gathered, mine)
    if d.is_main:
        torch.save(gathered, Path(out) / "ranks.pt")
    d.close()


if __name__ == "__main__":
    load_plugins([sys.argv[i + 1] for i, arg in enumerate(sys.argv) if arg == "--plugin"])
    main(sys.argv[1], sys.argv[2], "--resume" in sys.argv)
