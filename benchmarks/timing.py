"""What the GPU kernel benchmarks share: timing by triton.testing.do_bench on CUDA (a median over repeats, L2
cleared between them), a plain perf_counter median on the CPU (smoke runs only: CPU numbers of GPU kernels
mean nothing), the short device name used in result file names, and the environment every JSON records."""

import platform
import re
import statistics
import time

import torch


def median_ms(fn, device: torch.device, warmup: int = 10, rep: int = 50, cpu_warmup: int = 2,
              cpu_iters: int = 5) -> float:
    """Median milliseconds of fn() on `device`: triton.testing.do_bench on CUDA (warmup / rep in ms there; it
    clears the L2 cache before each repeat), else cpu_iters calls after cpu_warmup."""
    if device.type == "cuda":
        from triton.testing import do_bench
        return float(do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))
    for _ in range(cpu_warmup):
        fn()
    times = []
    for _ in range(cpu_iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def short_device_name(device: torch.device) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'h100'; 'cpu' on the CPU."""
    if device.type != "cuda":
        return device.type
    words = torch.cuda.get_device_name(device).split()
    for word in words:
        if any(ch.isdigit() for ch in word) and word.upper() != "NVIDIA":
            return re.sub(r"[^a-z0-9]+", "", word.lower())
    return re.sub(r"[^a-z0-9]+", "_", words[-1].lower()) if words else "cuda"


def environment(device: torch.device) -> dict:
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "triton": triton_version,
            "tf32": bool(torch.backends.cuda.matmul.allow_tf32)}
