"""Lowering's 'auto' implementation: per shape, whichever of an op's implementations runs fastest.

No single formulation of the locally connected ops wins at every shape on a GPU: the Triton kernels beat the
channels-last bmm reference 2-3x on the MNIST and small CIFAR layers and lose to it (0.3-0.9x) on cifar_lc3 and
every ImageNet layer (benchmarks/results/lc_h100.json). A `FastestOf` stands in for the op in the lowered graph
and, on the first call with a new shape key (argument shapes, dtypes and layouts, the non-tensor arguments, the
device, TF32), times every candidate on those very arguments (triton.testing.do_bench on CUDA; the candidates are
pure functions, so the timing calls change nothing) and from then on calls the fastest.

Choices are kept in one JSON file beside the graph cache (`choices_path`), keyed also by the device name and the
torch and triton versions, so a later run on the same machine reuses them without timing and computes the same
numbers (the candidates agree only to float rounding). The file is data only: a malformed one is ignored and
rewritten. `decisions()` lists what was chosen (benchmarks/epoch.py records it)."""

import json
import os
import statistics
import tempfile
import time
import warnings
import weakref
from pathlib import Path
from typing import Callable, Optional

import torch

from .graph_cache import cache_dir

_CHOICES: dict[str, str] = {}      # shape key -> candidate name, this process (and what was read from disk)
_LOADED: list = []
_INSTANCES: "weakref.WeakSet" = weakref.WeakSet()     # so forget() can clear their shortcuts


def choices_path() -> Optional[Path]:
    """The choices file: next to the graph cache ($BPCOMPILE_CACHE_DIR etc.); None when that cache is off."""
    graphs = cache_dir()
    return None if graphs is None else graphs.parent / "implementation_choices.json"


def time_ms(fn: Callable, args: tuple) -> float:
    """Milliseconds per call of fn(*args): triton.testing.do_bench for CUDA tensors (its warm-up call also runs
    any Triton autotuning), else the median of a few wall-clock calls after one warm-up."""
    if any(isinstance(a, torch.Tensor) and a.is_cuda for a in args):
        from triton.testing import do_bench

        return float(do_bench(lambda: fn(*args), warmup=5, rep=20, return_mode="median"))
    fn(*args)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _describe(arg) -> str:
    if isinstance(arg, torch.Tensor):
        layout = "c" if arg.is_contiguous() else ("cl" if arg.dim() == 4 and arg.is_contiguous(
            memory_format=torch.channels_last) else "s" + ",".join(map(str, arg.stride())))
        return f"{tuple(arg.shape)}:{str(arg.dtype).removeprefix('torch.')}:{layout}"
    return repr(arg)


def _device_tag(args: tuple) -> str:
    tensor = next((a for a in args if isinstance(a, torch.Tensor)), None)
    if tensor is None or not tensor.is_cuda:
        return "cpu"
    name = torch.cuda.get_device_name(tensor.device)
    return f"{name}|tf32={torch.backends.cuda.matmul.allow_tf32}"


def _versions() -> str:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "none"
    return f"torch {torch.__version__}|triton {triton_version}"


class FastestOf:
    """Calls whichever of `candidates` (name -> function, all with the op's signature) was fastest for the shape
    key of the arguments; times them on the first call with a new key. `timer(fn, args) -> ms` is replaceable
    (tests)."""

    def __init__(self, op_name: str, candidates: dict, timer: Optional[Callable] = None):
        self.op_name = op_name
        self.candidates = dict(candidates)
        self.timer = timer
        self._by_layout: dict = {}                 # per step: a cheap tuple key -> the chosen function
        self.__name__ = f"fastest_of_{op_name}"     # fx prints the target's name in graph code
        _INSTANCES.add(self)

    def key(self, args: tuple) -> str:
        return "|".join([self.op_name, _device_tag(args), _versions(), *map(_describe, args)])

    def choose(self, args: tuple) -> str:
        key = self.key(args)
        _load()
        choice = _CHOICES.get(key)
        if choice not in self.candidates:
            choice = self._time_all(args)
            _CHOICES[key] = choice
            _save()
        return choice

    def _time_all(self, args: tuple) -> str:
        """The fastest candidate's name. A candidate that fails on these arguments (a kernel that does not compile
        for the shape, memory running out) is left out with a warning that names it; if all fail, the first
        error is raised."""
        timer = self.timer or time_ms
        timings, errors = {}, {}
        for name, fn in self.candidates.items():
            try:
                timings[name] = timer(fn, args)
            except Exception as error:       # noqa: BLE001 -- any failure rules the candidate out
                errors[name] = error
        if not timings:
            raise next(iter(errors.values()))
        for name, error in errors.items():
            warnings.warn(f"{self.op_name}: implementation '{name}' failed at shapes "
                          f"{', '.join(map(_describe, args))} ({type(error).__name__}: {error}); the faster of "
                          f"{', '.join(timings)} runs there instead.", RuntimeWarning, stacklevel=4)
        return min(timings, key=timings.get)

    def __call__(self, *args):
        layout = (torch.backends.cuda.matmul.allow_tf32,
                  *((a.shape, a.stride(), a.dtype, a.device) if isinstance(a, torch.Tensor) else a for a in args))
        try:
            fn = self._by_layout.get(layout)
        except TypeError:                          # an unhashable argument: no shortcut
            return self.candidates[self.choose(args)](*args)
        if fn is None:
            fn = self._by_layout[layout] = self.candidates[self.choose(args)]
        return fn(*args)


def decisions() -> dict[str, str]:
    """Every shape key this process chose for (or read from the choices file) -> the candidate's name."""
    _load()
    return dict(_CHOICES)


def _load() -> None:
    if _LOADED:
        return
    _LOADED.append(True)
    path = choices_path()
    try:
        stored = json.loads(path.read_text()) if path is not None and path.exists() else {}
    except (OSError, ValueError):
        stored = {}            # unreadable or malformed: time again and rewrite it
    if isinstance(stored, dict):
        _CHOICES.update({k: v for k, v in stored.items() if isinstance(k, str) and isinstance(v, str)})


def _save() -> None:
    """Write every choice atomically (a temporary file renamed over the old one): a reader never sees half a file;
    concurrent processes (torchrun ranks) each write a whole file, and the last one stays."""
    path = choices_path()
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".choices-", suffix=".json")
    except OSError:
        return                 # a read-only cache costs a re-timing next run, nothing else
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(_CHOICES, out, indent=0, sort_keys=True)
        os.replace(temporary, path)
    except OSError:
        Path(temporary).unlink(missing_ok=True)


def forget() -> None:
    """Drop this process's choices, as a new process starts (tests; the file stays)."""
    _CHOICES.clear()
    _LOADED.clear()
    for instance in _INSTANCES:
        instance._by_layout.clear()
