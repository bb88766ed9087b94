"""This process's share of every batch when several processes train together (torchrun).

Every rank walks the same global batches in the same seeded order and takes one contiguous chunk of each
(the first n % world ranks one example more), so world ranks with global batch B see exactly the examples, and
the augmentation draws, that one process with batch B sees. In training, a last global batch with fewer
examples than ranks is dropped so no rank ever steps on an empty batch."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1

    def bounds(self, n: int) -> tuple[int, int]:
        """[start, stop) of this rank's chunk of a global batch of n examples."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    def batches(self, n: int, batch_size: int, training: bool) -> int:
        """Global batches an epoch of n examples has. Training drops a last batch smaller than the world (every
        rank must take part in each step); evaluation keeps it (a rank with an empty chunk skips it)."""
        full, rest = divmod(n, batch_size)
        return full + (1 if rest >= (self.world if training else 1) else 0)


SINGLE = Shard()
