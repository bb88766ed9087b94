"""The repository's top-level entry (the design card's `cli.py`): `python cli.py run specs/mnist_fc_bp.json` is
`bpcompile run specs/mnist_fc_bp.json`, the same commands, options, messages and exit codes."""

from bpcompile.cli import main

if __name__ == "__main__":
    main()
