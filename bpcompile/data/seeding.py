"""Seeds derived from several integers (run seed, epoch, stream id).

numpy's SeedSequence mixes them, so nearby pairs such as (seed=1, epoch=0) and
(seed=0, epoch=1) give unrelated streams, unlike seed + epoch."""

import numpy as np
import torch


def derive_seed(*values: int) -> int:
    """A 63-bit seed for torch.Generator.manual_seed from any ints."""
    # SeedSequence wants non-negative entries; fold the sign in so -1 and 1 differ.
    entropy = [2 * v if v >= 0 else -2 * v - 1 for v in values]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


def generator(*values: int) -> torch.Generator:
    """A CPU torch.Generator seeded from `values`."""
    return torch.Generator().manual_seed(derive_seed(*values))
