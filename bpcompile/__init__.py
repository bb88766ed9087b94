"""bpcompile: biologically-motivated learning rules compiled from a declarative spec.

    import bpcompile
    result = bpcompile.train("specs/quickstart.json", overrides={"train.epochs": 3})
    print(result.summary["final_test_error"], result.run_dir)
    print(bpcompile.inspect("specs/mnist_fc_fa.json"))

`train`, `compile`, `inspect` and `load` live in `bpcompile.api` (imported on first use, so `import bpcompile`
stays light); `BpcompileError` is every user-fixable error."""

__version__ = "0.1.0"

__all__ = ["BpcompileError", "TrainResult", "compile", "inspect", "load", "train"]


def __getattr__(name):
    if name in ("TrainResult", "compile", "inspect", "load", "train"):
        from . import api

        return getattr(api, name)
    if name == "BpcompileError":
        from .errors import BpcompileError

        return BpcompileError
    raise AttributeError(f"module 'bpcompile' has no attribute {name!r}")
