"""Which phase of the program trains on which batch of an epoch.

Most programs have one phase, 'train', run on every batch. Target propagation's alternating
schedule has two, 'inverse' and 'forward', which take turns (rule.alternation): the epoch's
batches are cut into blocks, and each block is trained `inverse_passes` times by the inverse
phase, then `forward_passes` times by the forward phase, on the same batches. The default (one
block, one pass each) is Lee et al.'s DTP code: an inverse epoch, then a forward epoch.

Each pass reads its own iterator of the loader's epoch, which yields the same batches every time
(the order and augmentation of an epoch depend only on (seed, epoch)), so no batch is held in
memory between passes."""

from typing import Iterator

FORWARD_PHASES = ("train", "forward")   # the phases that train the forward weights


def steps_per_epoch(program, loader) -> int:
    turns = program.alternation
    if turns is None:
        return len(loader)
    return len(loader) * (turns.inverse_passes + turns.forward_passes)


def epoch_steps(program, loader, epoch: int) -> Iterator[tuple[str, int, tuple]]:
    """(phase, index of the batch in the epoch, (x, y)) for every step of `epoch`, in order."""
    turns = program.alternation
    if turns is None:
        for index, batch in enumerate(loader.epoch(epoch)):
            yield program.schedule[0], index, batch
        return
    passes = ["inverse"] * turns.inverse_passes + ["forward"] * turns.forward_passes
    readers = [iter(loader.epoch(epoch)) for _ in passes]
    total = len(loader)
    block = turns.block_batches or total
    for start in range(0, total, block):
        for phase, reader in zip(passes, readers):
            for index in range(start, min(start + block, total)):
                yield phase, index, next(reader)
