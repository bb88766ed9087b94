"""The console every command prints through: stderr, no markup highlighting, and soft wrapping, so a long line
(an epoch's metrics, a run header) stays one line in a pipe or a log file, where rich would otherwise break it
at 80 columns; a terminal wraps it visually instead."""

from rich.console import Console


def make_console(quiet: bool = False) -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True, quiet=quiet)
