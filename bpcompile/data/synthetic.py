"""Synthetic data: N(0, 1) inputs labelled by a fixed random teacher network.

The teacher is a random one-hidden-layer tanh network, so the labels depend
on the input in a smooth, learnable way. Its output rows have equal norms, so
no class dominates the argmax. Teacher, train set and test set come from
separate generators derived from data_seed, so changing train_size does not
change the test set."""

import math
from typing import Sequence

import torch

from .seeding import generator as seeded_generator
from .splits import RawData

TEACHER_HIDDEN = 64


def _teacher(dim: int, num_classes: int, g: torch.Generator):
    w1 = torch.randn(dim, TEACHER_HIDDEN, generator=g) / math.sqrt(dim)  # unit-variance hidden pre-activations
    w2 = torch.randn(TEACHER_HIDDEN, num_classes, generator=g)
    w2 = w2 / w2.norm(dim=0, keepdim=True)
    return lambda x: (torch.tanh(x.reshape(len(x), -1) @ w1) @ w2).argmax(dim=1)


def make_synthetic(spec) -> RawData:
    """train_size / test_size examples of shape input_shape, labels from the teacher of data_seed."""
    shape = tuple(spec.input_shape)
    teacher = _teacher(math.prod(shape), spec.num_classes, seeded_generator(spec.data_seed, 0))
    train_x = torch.randn((spec.train_size, *shape), generator=seeded_generator(spec.data_seed, 1))
    test_x = torch.randn((spec.test_size, *shape), generator=seeded_generator(spec.data_seed, 2))
    return RawData(train_x, teacher(train_x), test_x, teacher(test_x), spec.num_classes,
                   f"synthetic (data_seed={spec.data_seed}, random tanh teacher, {spec.num_classes} classes)")


def random_batch(input_shape: Sequence[int], num_classes: int, batch_size: int,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of N(0, 1) inputs and uniform random labels, for dry runs and shape checks."""
    x = torch.randn((batch_size, *input_shape), generator=generator)
    y = torch.randint(0, num_classes, (batch_size,), generator=generator)
    return x, y
