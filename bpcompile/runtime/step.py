"""Execute the compiled graphs: one training step, and evaluation."""

from typing import Optional

import torch

from ..compiler.streams import seeded_generator
from ..nn.losses import task_loss
from .backend import executable
from .distributed import SINGLE_PROCESS

TOP5_MIN_CLASSES = 10                                   # top-5 error is logged with more classes than this


class CompiledStep:
    """Runs one training graph on a batch and hands each parameter its update direction in `.grad`
    (whatever the rule computed), ready for the optimiser. Parameters and learned rule state that
    this graph does not update get `.grad = None`, so their optimisers skip them (the alternating
    schedule's inverse and forward phases)."""

    def __init__(self, program, graph, signature, name: str = "train"):
        self.program, self.signature = program, signature
        self.graph = executable(graph, program.backend, name)     # the graph itself, or torch.compile of it
        self.static = program.graph_inputs(signature, torch.empty(0), None)   # x, y, noise filled per call
        self.dynamic = [(i, s) for i, s in enumerate(signature.inputs) if s.kind in ("input", "target", "noise")]
        params = dict(program.network.named_parameters())
        self.grad_outputs = [(i, params[s.name]) for i, s in enumerate(signature.outputs) if s.kind == "grad"]
        # gradients of learned rule state (direct Kolen-Pollack's B, target propagation's inverses):
        # the rule's hooks step them
        self.grad_outputs += [(i, program.state[s.name]) for i, s in enumerate(signature.outputs) if s.kind == "state_grad"]
        self.trained = list(params.values()) + list(program.state.values())
        self.loss_index = signature.output_index("loss")
        self.logits_index = signature.output_index("logits")

    def __call__(self, x: torch.Tensor, y: torch.Tensor, noise=None) -> tuple:
        inputs = list(self.static)
        for i, slot in self.dynamic:
            if slot.kind == "input":
                inputs[i] = x
            elif slot.kind == "target":
                inputs[i] = y
            else:
                inputs[i] = noise(slot.name, (x.shape[0], *self.program.noise_shapes[slot.name]))
        with torch.no_grad():
            outputs = self.graph(*inputs)
        for tensor in self.trained:
            tensor.grad = None
        for i, tensor in self.grad_outputs:
            grad = outputs[i]
            tensor.grad = grad if grad is None or grad.dtype == tensor.dtype else grad.to(tensor.dtype)
        return outputs


class CompiledEval:
    """Runs the evaluation graph over a loader's epoch (every rank's shard); returns errors and mean loss."""

    def __init__(self, program, loss_name: str, dist=None):
        self.dist = dist or SINGLE_PROCESS
        self.device = program.device
        self.graph = program.eval_graph
        self.static = program.graph_inputs(program.eval_signature, None)[:-1]
        self.loss_name = loss_name
        self.num_classes = program.network.output_shape[0]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.graph(*self.static, x)[0]

    def __call__(self, loader) -> dict:
        """{'error': top-1 error %, 'loss': mean loss, 'top5_error': top-5 error % (only with more than 10 classes:
        with 10, top-5 of MNIST or CIFAR-10 is half the classes and says little)},
        over all ranks' shards."""
        errors, top5_errors, loss_sum, count = 0, 0, 0.0, 0
        with torch.no_grad():
            for x, y in loader.epoch(0):
                logits = self.logits(x).float()
                errors += int((logits.argmax(1) != y).sum())
                if self.num_classes > TOP5_MIN_CLASSES:
                    top5 = logits.topk(5, dim=1).indices
                    top5_errors += int((top5 != y[:, None]).all(dim=1).sum())
                loss_sum += float(task_loss(self.loss_name, logits, y)) * len(y)
                count += len(y)
        errors, top5_errors, loss_sum, count = self.dist.sum([errors, top5_errors, loss_sum, count], self.device)
        count = max(count, 1)
        result = {"error": 100.0 * errors / count, "loss": loss_sum / count}
        if self.num_classes > TOP5_MIN_CLASSES:
            result["top5_error"] = 100.0 * top5_errors / count
        return result


class RuleStep:
    """One training step as the rule defines it: before-step hooks, the compiled graph of the current
    phase, before-update hooks, the forward optimiser, after-step hooks (Kolen-Pollack's paired update, weight mirror's
    mirror batches, target propagation's inverse optimiser, ...). `select` picks the phase of the
    program's schedule that the next steps run (runtime/schedule.py says which); noise inputs come
    from the step's own seeded generator."""

    def __init__(self, program, optimizer, seed: int = 0, dist=None):
        self.program, self.optimizer = program, optimizer
        self.dist = dist or SINGLE_PROCESS
        names = sorted(set(program.schedule))
        self.compiled = {name: CompiledStep(program, *program.phase(name), name=name) for name in names}
        self.phase = program.schedule[0]
        self.hooks = program.hooks
        self.count = 0
        self.batches_per_epoch: Optional[int] = None   # set by the trainer (weight mirror's pre_batches='epoch')
        # the epoch being trained (0-based) and the run's length, set by the trainer: rule optimisers with their
        # own schedule (target propagation's inverse optimiser) read them
        self.epoch, self.epochs = 0, None
        self.last_outputs: dict = {}       # the last step's extra outputs (targets, losses), by (kind, name)
        self.generator = seeded_generator(seed, "runtime", "noise_inputs", program.device)
        # per phase: which outputs are losses, and whether each has been finite in every step so far (kept on
        # the device, so the per-step check costs no sync; check() reads it every few steps)
        self.loss_slots = {name: [(i, s) for i, s in enumerate(step.signature.outputs) if s.kind in program.loss_outputs]
                           for name, step in self.compiled.items()}
        self.finite = {name: torch.ones(len(slots), dtype=torch.bool, device=program.device)
                       for name, slots in self.loss_slots.items()}

    def select(self, phase: str) -> None:
        """Run the program's phase `phase` ('train', or 'inverse' / 'forward') from the next step on."""
        if phase not in self.compiled:
            raise ValueError(f"the program has no phase {phase!r}; it has {sorted(self.compiled)}")
        self.phase = phase

    def noise(self, name: str, shape: tuple) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=self.program.device)

    def _sharded_noise(self, total: int):
        start, stop = self.dist.shard.bounds(total)
        return lambda name, shape: self.noise(name, (total, *shape[1:]))[start:stop]

    def start(self) -> None:
        """Before the first step of a fresh run (weight mirror's initial mirror phase)."""
        for hook in self.hooks:
            hook.on_train_start(self)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, global_size: Optional[int] = None) -> tuple:
        """One step on this rank's (x, y); with several processes `global_size` is the global batch's size: the
        updates are averaged over it and noise inputs are this rank's rows of the global batch's noise, so the
        step equals one process's step on the whole batch."""
        local = x.shape[0]
        total = global_size or local
        for hook in self.hooks:
            hook.before_step(self)
        compiled = self.compiled[self.phase]
        outputs = compiled(x, y, self.noise if total == local else self._sharded_noise(total))
        self.dist.reduce_step(compiled.trained, local, total)
        for hook in self.hooks:
            hook.before_update(self)
        self.optimizer.step()
        self.last_outputs = {(s.kind, s.name): outputs[i] for i, s in enumerate(compiled.signature.outputs)
                             if s.kind in self.program.kept_outputs}
        slots = self.loss_slots[self.phase]
        if slots:
            self.finite[self.phase] &= torch.stack([torch.isfinite(outputs[i]).all() for i, _ in slots])
        for hook in self.hooks:
            hook.after_step(self)
        self.count += 1
        return outputs[compiled.loss_index], outputs[compiled.logits_index]

    def check(self) -> str | None:
        """Divergence beyond the mean train loss: any loss output (local and inverse losses too) that was not
        finite in any step so far, or a rule's own check (e.g. exploding targets); a message, or None."""
        if not bool(torch.cat(list(self.finite.values())).all()):
            for phase, flags in self.finite.items():
                for ok, (_, slot) in zip(flags.tolist(), self.loss_slots[phase]):
                    if not ok:
                        what = "the task loss" if slot.kind == "loss" else \
                            f"the {slot.kind.replace('_', ' ')} of layer {slot.name!r}"
                        return f"{what} was not finite in a step" + (f" of the {phase} phase" if phase != "train" else "")
        for hook in self.hooks:
            problem = hook.check(self)
            if problem:
                return problem
        return None

    def state_dict(self) -> dict:
        return {"count": self.count, "hooks": [hook.state_dict() for hook in self.hooks],
                "noise_generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.count = state["count"]
        for hook, hook_state in zip(self.hooks, state["hooks"]):
            hook.load_state_dict(hook_state)
        if "noise_generator" in state:
            self.generator.set_state(state["noise_generator"])
