"""Task losses on logits and integer labels (the spec's `loss`)."""

import torch
import torch.nn.functional as F


def task_loss(name: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if name == "softmax_cross_entropy":
        return F.cross_entropy(logits, labels)
    one_hot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    if name == "sigmoid_cross_entropy":
        return F.binary_cross_entropy_with_logits(logits, one_hot)
    if name == "mse":
        return F.mse_loss(logits, one_hot)
    raise ValueError(f"unknown loss {name!r}")  # the spec's Literal lists every loss
