"""Device choice, numeric precision flags and version info for summaries."""

import platform

import torch

from ..errors import BpcompileError


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise BpcompileError(
            f"device {requested!r} was asked for (train.device or --device) but torch {torch.__version__} sees no CUDA "
            f"GPU here; use --device cpu or auto."
        )
    return torch.device(requested)


def set_precision(precision: str) -> None:
    """fp32 means true fp32 matrix products; tf32 allows TF32 on GPUs."""
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True   # pick the fastest conv algorithms for the run's fixed shapes


def versions(device: torch.device) -> dict:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    return {
        "device": str(device),
        "device_name": name,
        "torch": torch.__version__,
        "triton": triton_version,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }
