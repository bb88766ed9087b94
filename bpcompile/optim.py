"""torch.optim optimisers and per-epoch learning-rate schedules from optimiser specs (used by the runtime for
forward parameters and by rule hooks for feedback parameters)."""

import math

import torch


def build_optimizer(spec, params) -> torch.optim.Optimizer:
    params = list(params)
    if spec.name == "adam":
        return torch.optim.Adam(params, lr=spec.lr, betas=tuple(spec.betas), eps=spec.eps, weight_decay=spec.weight_decay)
    if spec.name == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov,
                               weight_decay=spec.weight_decay)
    raise ValueError(f"unknown optimizer {spec.name!r}")  # the spec union lists every optimiser


def build_forward_optimizer(spec, program) -> torch.optim.Optimizer:
    """The forward optimiser over the network's parameters. Parameters whose decay the rule applies itself
    (program.decay_exempt: Kolen-Pollack's W) get no L2 term from it; every other parameter (biases, batch
    norm, layers of other rules) is decayed by spec.weight_decay under every rule alike."""
    named = list(program.network.named_parameters())
    exempt = [p for n, p in named if n in program.decay_exempt]
    if not exempt:
        return build_optimizer(spec, [p for _, p in named])
    others = [p for n, p in named if n not in program.decay_exempt]
    groups = [{"params": others}] if others else []
    return build_optimizer(spec, groups + [{"params": exempt, "weight_decay": 0.0}])


def lr_factor(schedule, epoch: int, epochs: int) -> float:
    """Multiplier of the base learning rate during (0-based) `epoch`."""
    if schedule.name == "constant":
        return 1.0
    if schedule.name == "step":
        return schedule.gamma ** (epoch // schedule.step_epochs)
    if schedule.name == "multistep":
        return schedule.gamma ** sum(epoch >= m for m in schedule.milestones)
    if schedule.name == "cosine":
        if epoch < schedule.warmup_epochs:
            return (epoch + 1) / schedule.warmup_epochs
        span = max(1, (schedule.epochs or epochs) - schedule.warmup_epochs)
        progress = min(1.0, (epoch - schedule.warmup_epochs) / span)
        return schedule.min_lr_factor + (1 - schedule.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule.name!r}")


def build_scheduler(spec, optimizer, epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    schedule = _view(spec)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(schedule, epoch, epochs))


def scheduled_lr(spec, epoch: int, epochs: int) -> float:
    """The optimiser spec's learning rate during (0-based) `epoch` of a run of `epochs` (for optimisers stepped by
    a rule's hook rather than the runtime's per-epoch scheduler)."""
    return spec.lr * lr_factor(_view(spec), epoch, epochs)


def _view(spec):
    return _CosineView(spec.schedule, spec.lr) if spec.schedule.name == "cosine" else spec.schedule


class _CosineView:
    """Cosine schedule with min_lr expressed as a factor of the base lr."""

    name = "cosine"

    def __init__(self, schedule, base_lr: float):
        self.warmup_epochs, self.epochs = schedule.warmup_epochs, schedule.epochs
        self.min_lr_factor = schedule.min_lr / base_lr
