"""Execute the compiled graphs: one training step, and evaluation."""

import torch

from ..nn.losses import task_loss


class CompiledStep:
    """Runs the training graph on a batch and hands each parameter its update
    direction in `.grad` (whatever the rule computed), ready for the optimiser."""

    def __init__(self, program):
        sig = program.train_signature
        if [s.kind for s in sig.inputs[-2:]] != ["input", "target"]:
            raise RuntimeError("training graph inputs must end with the batch (x, y)")
        self.graph = program.train_graph
        self.static = program.graph_inputs(sig, None, None)[:-2]   # params, buffers, rule state: same objects every step
        params = dict(program.network.named_parameters())
        self.grad_outputs = [(i, params[s.name]) for i, s in enumerate(sig.outputs) if s.kind == "grad"]
        # gradients of learned rule state (e.g. direct Kolen-Pollack's B): the rule's hooks step them
        self.grad_outputs += [(i, program.state[s.name]) for i, s in enumerate(sig.outputs) if s.kind == "state_grad"]
        self.loss_index = sig.output_index("loss")
        self.logits_index = sig.output_index("logits")

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            outputs = self.graph(*self.static, x, y)
        for i, tensor in self.grad_outputs:
            tensor.grad = outputs[i]
        return outputs[self.loss_index], outputs[self.logits_index]


class CompiledEval:
    """Runs the evaluation graph; returns (error %, mean loss) over a loader's epoch."""

    def __init__(self, program, loss_name: str):
        self.graph = program.eval_graph
        self.static = program.graph_inputs(program.eval_signature, None)[:-1]
        self.loss_name = loss_name

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.graph(*self.static, x)[0]

    def __call__(self, loader) -> tuple[float, float]:
        errors, loss_sum, count = 0, 0.0, 0
        with torch.no_grad():
            for x, y in loader.epoch(0):
                logits = self.logits(x)
                errors += int((logits.argmax(1) != y).sum())
                loss_sum += float(task_loss(self.loss_name, logits, y)) * len(y)
                count += len(y)
        return 100.0 * errors / max(count, 1), loss_sum / max(count, 1)


class RuleStep:
    """One training step as the rule defines it: before-step hooks, the compiled graph, the forward
    optimiser, after-step hooks (Kolen-Pollack's paired update, weight mirror's mirror batches, ...)."""

    def __init__(self, program, optimizer):
        self.program, self.optimizer = program, optimizer
        self.compiled = CompiledStep(program)
        self.hooks = program.hooks
        self.count = 0

    def start(self) -> None:
        """Before the first step of a fresh run (weight mirror's initial mirror phase)."""
        for hook in self.hooks:
            hook.on_train_start(self)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for hook in self.hooks:
            hook.before_step(self)
        loss, logits = self.compiled(x, y)
        self.optimizer.step()
        for hook in self.hooks:
            hook.after_step(self)
        self.count += 1
        return loss, logits

    def state_dict(self) -> dict:
        return {"count": self.count, "hooks": [hook.state_dict() for hook in self.hooks]}

    def load_state_dict(self, state: dict) -> None:
        self.count = state["count"]
        for hook, hook_state in zip(self.hooks, state["hooks"]):
            hook.load_state_dict(hook_state)
