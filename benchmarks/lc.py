"""Locally connected (LC) layer: forward and backward speed, memory and roofline.

Every LC layer of the paper's nets (Bartunov et al. 2018: MNIST, CIFAR-10 and
ImageNet), at batch sizes 32, 128 and 256, for four implementations:

  unfold_einsum  F.unfold + einsum with a channel-slowest weight (the usual snippet); backward by autograd
  reference      bpcompile's plain-PyTorch reference (strided channels-last patches + one bmm over positions)
  compile        torch.compile (mode default) of unfold_einsum; backward by autograd through it
  triton         bpcompile.kernels.lc (lc_forward, lc_grad_input, lc_grad_weight), skipped if not importable
  triton_cl      the same with the backward kernels' *_cl variants (grad_out copied channels-last first), the
                 third candidate of bpcompile's per-shape 'auto' choice on CUDA
  triton_cells   triton with the input gradient per stride cell (lc_grad_input_cells: one program per
                 stride x stride input pixels), another 'auto' candidate
  triton_cells_cl  triton_cells with both backward kernels' *_cl variants

Per (layer, batch, impl) it reports:
  fwd_ms, bwd_ms     median ms (benchmarks/timing.py: triton.testing.do_bench on CUDA, L2 cleared before each
                     repeat; --warmup / --iters calls on the CPU); backward = grad_x + grad_W + grad_b
                     (= grad_out.sum(0)) for a given grad_out; for the autograd impls the graph is built once,
                     outside the timed region, and its backward repeated (retain_graph)
  grad_input_ms, grad_weight_ms   the backward's two products timed alone (reference and triton, whose ops are
                     separate calls; the autograd impls' cannot be split)
  gbps, tflops       minimum bytes moved (fwd: read x, W, bias, write out; bwd: read grad_out, W, x, write
                     grad_x, grad_W, grad_b) and 2*B*P*O*K flops per GEMM (fwd 1 GEMM, bwd 2), over fwd+bwd
  pct_roofline       roofline time / measured time, in percent; roofline time = max(flops / peak flops,
                     bytes / peak bandwidth) per pass (fp32 or tf32 peak, see --precision), fwd + bwd
  peak_mem_mb        CUDA peak allocated during one fwd+bwd, above what was allocated before it (inputs,
                     weights, grad_out); peak_total_mb adds the bytes of x, W, bias and grad_out back
  weights_activations_mb   bytes of x, W, bias, out, grad_out, grad_x, grad_W (goal: peak_total <= 1.2x this)
  check              at the smallest batch of each layer: fwd and bwd outputs against the reference run in
                     float64, allclose(rtol, atol = rtol * max|expected|), rtol 1e-3 (fp32) or 2e-2 (tf32)
and, on triton rows, speedups (fwd+bwd) over each baseline. A (layer, batch, impl) that runs out of memory
is recorded as error "oom"; any other failure (a torch.compile error, say) records its message.

    python benchmarks/lc.py                                   # all layers, batches 32,128,256, fp32, on cuda
    python benchmarks/lc.py --precision tf32                  # TF32 matmuls, tf32 roofline
    python benchmarks/lc.py --layers mnist_lc1,cifar_lc3 --batches 128 --impls reference,triton
    python benchmarks/lc.py --device cpu --quick --impls unfold_einsum,reference   # CPU smoke test

Writes benchmarks/results/lc_<device>.json (lc_<device>_tf32.json with --precision tf32), device being a
short name such as 'h100', or 'cpu'. The roofline peaks default to an H100 SXM; they mean little on CPU.
"""

import argparse
import gc
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without `pip install -e .` too
sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import median_ms, short_device_name  # noqa: E402

from bpcompile.nn.ops.locally_connected import (  # noqa: E402
    lc_forward_reference,
    lc_grad_input_reference,
    lc_grad_weight_reference,
    lc_output_size,
)

IMPLS = ["unfold_einsum", "reference", "compile", "triton", "triton_cl", "triton_cells", "triton_cells_cl"]
BASELINES = ["unfold_einsum", "reference", "compile"]
GOAL_SPEEDUP = {"unfold_einsum": 5.0, "reference": 2.0, "compile": 2.0}
GOAL_ROOFLINE = 0.60
GOAL_MEMORY = 1.2


# ----------------------------------------------------------------------------------------------------------
# The layers: (input channels, height, width), kernel, output channels, stride; padding = kernel // 2
# ----------------------------------------------------------------------------------------------------------

@dataclass
class Layer:
    name: str
    in_shape: tuple  # (C, H, W)
    kernel: int
    out_channels: int
    stride: int
    out_hw: int      # expected H_out = W_out, checked against lc_output_size

    @property
    def padding(self) -> int:
        return self.kernel // 2

    @property
    def h_out(self) -> int:
        return lc_output_size(self.in_shape[1], self.kernel, self.stride, self.padding)

    @property
    def w_out(self) -> int:
        return lc_output_size(self.in_shape[2], self.kernel, self.stride, self.padding)

    @property
    def positions(self) -> int:
        return self.h_out * self.w_out

    @property
    def patch_size(self) -> int:
        return self.kernel * self.kernel * self.in_shape[0]

    def describe(self) -> dict:
        c, h, w = self.in_shape
        return {"input": [c, h, w], "kernel": self.kernel, "out_channels": self.out_channels, "stride": self.stride,
                "padding": self.padding, "output": [self.out_channels, self.h_out, self.w_out],
                "P": self.positions, "O": self.out_channels, "K": self.patch_size}


LAYERS = [
    Layer("mnist_lc1", (1, 28, 28), 3, 32, 2, 14),
    Layer("mnist_lc2", (32, 14, 14), 3, 64, 2, 7),
    Layer("cifar_lc1", (3, 32, 32), 5, 64, 2, 16),
    Layer("cifar_lc2", (64, 16, 16), 5, 128, 2, 8),
    Layer("cifar_lc3", (128, 8, 8), 3, 256, 1, 8),
    Layer("imagenet_lc1", (3, 224, 224), 9, 48, 4, 56),
    Layer("imagenet_lc2", (48, 56, 56), 3, 48, 2, 28),
    Layer("imagenet_lc3", (48, 28, 28), 5, 96, 1, 28),
    Layer("imagenet_lc4", (96, 28, 28), 3, 96, 2, 14),
    Layer("imagenet_lc5", (96, 14, 14), 3, 192, 1, 14),
    Layer("imagenet_lc6", (192, 14, 14), 3, 192, 2, 7),
    Layer("imagenet_lc7", (192, 7, 7), 3, 384, 1, 7),
]
for _layer in LAYERS:
    assert _layer.h_out == _layer.w_out == _layer.out_hw, _layer


# ----------------------------------------------------------------------------------------------------------
# The unfold + einsum baseline
# ----------------------------------------------------------------------------------------------------------

def to_channel_slowest(weight: torch.Tensor, kernel: int) -> torch.Tensor:
    """(P, O, K) with K = (row, col, channel) -> (P, O, K) with K = (channel, row, col), F.unfold's order."""
    positions, out_ch, patch = weight.shape
    channels = patch // (kernel * kernel)
    return weight.reshape(positions, out_ch, kernel, kernel, channels).permute(0, 1, 4, 2, 3).reshape(
        positions, out_ch, patch)


def from_channel_slowest(weight: torch.Tensor, kernel: int) -> torch.Tensor:
    positions, out_ch, patch = weight.shape
    channels = patch // (kernel * kernel)
    return weight.reshape(positions, out_ch, channels, kernel, kernel).permute(0, 1, 3, 4, 2).reshape(
        positions, out_ch, patch)


def lc_forward_unfold_einsum(x: torch.Tensor, weight_cs: torch.Tensor, bias: torch.Tensor,
                             kernel: int, stride: int, padding: int) -> torch.Tensor:
    """out = einsum over unfolded patches; weight_cs is (P, O, C*k*k), channel slowest. Differentiable."""
    batch = x.shape[0]
    h_out = lc_output_size(x.shape[2], kernel, stride, padding)
    w_out = lc_output_size(x.shape[3], kernel, stride, padding)
    patches = F.unfold(x, kernel, padding=padding, stride=stride)   # (B, C*k*k, P)
    out = torch.einsum("bkp,pok->bop", patches, weight_cs)          # (B, O, P)
    return out.reshape(batch, -1, h_out, w_out) + bias


# ----------------------------------------------------------------------------------------------------------
# Implementations: each gives closures over one (layer, batch) problem
# ----------------------------------------------------------------------------------------------------------

@dataclass
class Bench:
    forward: Callable[[], torch.Tensor]                  # one forward, returns out
    prepare_backward: Callable[[], Callable[[], tuple]]  # untimed setup; returns the timed (gx, gw, gb) call
    forward_backward: Callable[[], tuple]                # one fwd + bwd (for peak memory), returns everything
    standard_weight_grad: Callable[[torch.Tensor], torch.Tensor] = lambda g: g  # to (row, col, channel) order
    grad_input: Optional[Callable[[], torch.Tensor]] = None     # the backward's parts alone, where separable
    grad_weight: Optional[Callable[[], torch.Tensor]] = None


def autograd_bench(fn, x, weight, bias, grad_out, geometry, weight_grad_back=lambda g: g) -> Bench:
    x = x.detach().requires_grad_()
    weight = weight.detach().requires_grad_()
    bias = bias.detach().requires_grad_()
    inputs = (x, weight, bias)

    def forward():
        return fn(x, weight, bias, *geometry)

    def prepare_backward():
        out = fn(x, weight, bias, *geometry)
        return lambda: torch.autograd.grad(out, inputs, grad_out, retain_graph=True)   # repeatable

    def forward_backward():
        out = fn(x, weight, bias, *geometry)
        return (out, *torch.autograd.grad(out, inputs, grad_out))

    return Bench(forward, prepare_backward, forward_backward, weight_grad_back)


def explicit_bench(ops, x, weight, bias, grad_out, geometry) -> Bench:
    """ops = (forward, grad_input, grad_weight) with the reference functions' signatures."""
    lc_forward, lc_grad_input, lc_grad_weight = ops
    kernel, stride, padding = geometry
    height, width = x.shape[2], x.shape[3]

    def forward():
        return lc_forward(x, weight, bias, kernel, stride, padding)

    def grad_input():
        return lc_grad_input(grad_out, weight, height, width, kernel, stride, padding)

    def grad_weight():
        return lc_grad_weight(grad_out, x, kernel, stride, padding)

    def backward():
        return grad_input(), grad_weight(), grad_out.sum(0)

    def forward_backward():
        return (forward(), *backward())

    return Bench(forward, lambda: backward, forward_backward, grad_input=grad_input, grad_weight=grad_weight)


def make_bench(impl: str, layer: Layer, x, weight, bias, grad_out, triton_ops) -> Bench:
    geometry = (layer.kernel, layer.stride, layer.padding)
    if impl == "unfold_einsum":
        return autograd_bench(lc_forward_unfold_einsum, x, to_channel_slowest(weight, layer.kernel), bias,
                              grad_out, geometry, lambda g: from_channel_slowest(g, layer.kernel))
    if impl == "compile":
        torch._dynamo.reset()  # fresh compile per shape: no recompile limit, no dynamic shapes
        compiled = torch.compile(lc_forward_unfold_einsum, dynamic=False)
        return autograd_bench(compiled, x, to_channel_slowest(weight, layer.kernel), bias,
                              grad_out, geometry, lambda g: from_channel_slowest(g, layer.kernel))
    if impl == "reference":
        ops = (lc_forward_reference, lc_grad_input_reference, lc_grad_weight_reference)
        return explicit_bench(ops, x, weight, bias, grad_out, geometry)
    if impl.startswith("triton"):
        return explicit_bench(triton_ops[impl], x, weight, bias, grad_out, geometry)
    raise ValueError(impl)


def import_triton_kernels():
    """({'triton': (lc_forward, lc_grad_input, lc_grad_weight), 'triton_cl': (the same with the *_cl backward
    kernels)}, module name) from bpcompile.kernels.lc or kernels.lc, or (None, why not)."""
    errors = []
    for module_name in ("bpcompile.kernels.lc", "kernels.lc"):
        try:
            module = __import__(module_name, fromlist=["lc_forward"])
            return {"triton": (module.lc_forward, module.lc_grad_input, module.lc_grad_weight),
                    "triton_cl": (module.lc_forward, module.lc_grad_input_cl, module.lc_grad_weight_cl),
                    "triton_cells": (module.lc_forward, module.lc_grad_input_cells, module.lc_grad_weight),
                    "triton_cells_cl": (module.lc_forward, module.lc_grad_input_cells_cl,
                                        module.lc_grad_weight_cl)}, module_name
        except Exception as e:  # noqa: BLE001 - any import failure just skips the triton impl
            errors.append(f"{module_name}: {type(e).__name__}: {e}")
    return None, "; ".join(errors)


# ----------------------------------------------------------------------------------------------------------
# Timing, memory, correctness
# ----------------------------------------------------------------------------------------------------------

def time_ms(fn: Callable[[], object], device: torch.device, args) -> float:
    """Median ms of fn() (benchmarks/timing.py: do_bench on CUDA; --warmup / --iters calls on the CPU)."""
    return median_ms(fn, device, cpu_warmup=args.warmup, cpu_iters=args.iters)


def peak_memory_mb(bench: Bench, device: torch.device) -> Optional[float]:
    """Peak CUDA memory of one fwd+bwd above what is allocated before it (MB), outputs included."""
    if device.type != "cuda":
        return None
    gc.collect()
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    results = bench.forward_backward()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del results
    return peak / 2**20


def check_outputs(bench: Bench, expected: tuple, rtol: float) -> tuple[str, float]:
    """Compare (out, grad_x, grad_w, grad_b) with float64 results; returns ("ok" | "mismatch", worst error)."""
    out = bench.forward()
    grad_x, grad_w, grad_b = bench.prepare_backward()()
    got = (out, grad_x, bench.standard_weight_grad(grad_w), grad_b)
    ok, worst = True, 0.0
    for actual, want in zip(got, expected):
        actual = actual.detach().double()
        scale = want.abs().max().item() or 1.0
        if actual.shape != want.shape:
            return "mismatch", None
        worst = max(worst, (actual - want).abs().max().item() / scale)
        ok = ok and torch.allclose(actual, want, rtol=rtol, atol=rtol * scale)
    return ("ok" if ok else "mismatch"), worst


def expected_outputs(x, weight, bias, grad_out, layer: Layer) -> tuple:
    """The reference in float64: (out, grad_x, grad_w, grad_b)."""
    x, weight, bias, grad_out = (t.double() for t in (x, weight, bias, grad_out))
    geometry = (layer.kernel, layer.stride, layer.padding)
    out = lc_forward_reference(x, weight, bias, *geometry)
    grad_x = lc_grad_input_reference(grad_out, weight, x.shape[2], x.shape[3], *geometry)
    grad_w = lc_grad_weight_reference(grad_out, x, *geometry)
    return out, grad_x, grad_w, grad_out.sum(0)


def nbytes(*tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def empty_cache(device: torch.device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------------------
# One (layer, batch): all impls
# ----------------------------------------------------------------------------------------------------------

def problem(layer: Layer, batch: int, device: torch.device, seed: int = 0):
    generator = torch.Generator(device="cpu").manual_seed(seed)
    c, h, w = layer.in_shape
    p, o, k = layer.positions, layer.out_channels, layer.patch_size

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=generator) * scale).to(device)

    x = randn(batch, c, h, w)
    weight = randn(p, o, k, scale=k ** -0.5)
    bias = randn(o, layer.h_out, layer.w_out, scale=0.1)
    grad_out = randn(batch, o, layer.h_out, layer.w_out)
    return x, weight, bias, grad_out


def traffic(layer: Layer, batch: int, x, weight, bias, grad_out) -> dict:
    """Minimum bytes and flops of each pass, and the weights + activations footprint."""
    out_bytes = grad_out_bytes = nbytes(grad_out)
    x_bytes, w_bytes, b_bytes = nbytes(x), nbytes(weight), nbytes(bias)
    gemm_flops = 2 * batch * layer.positions * layer.out_channels * layer.patch_size
    return {
        "fwd_bytes": x_bytes + w_bytes + b_bytes + out_bytes,
        # read grad_out, W, x; write grad_x, grad_W, grad_b
        "bwd_bytes": grad_out_bytes + w_bytes + x_bytes + x_bytes + w_bytes + b_bytes,
        "fwd_flops": gemm_flops,
        "bwd_flops": 2 * gemm_flops,
        "inputs_bytes": x_bytes + w_bytes + b_bytes + grad_out_bytes,
        "weights_activations_bytes": x_bytes + w_bytes + b_bytes + out_bytes + grad_out_bytes + x_bytes + w_bytes,
    }


def run_case(impl, layer, batch, tensors, expected, args, device, triton_ops, peaks) -> dict:
    x, weight, bias, grad_out = tensors
    t = traffic(layer, batch, *tensors)
    row = {"layer": layer.name, "batch": batch, "impl": impl, "fwd_ms": None, "bwd_ms": None, "total_ms": None,
           "peak_mem_mb": None, "peak_total_mb": None,
           "weights_activations_mb": t["weights_activations_bytes"] / 2**20,
           "gbps": None, "tflops": None, "pct_roofline": None, "check": None}
    if impl.startswith("triton") and triton_ops is None:
        row["error"] = "not importable"
        return row
    failure, bench = None, None
    try:
        bench = make_bench(impl, layer, x, weight, bias, grad_out, triton_ops)
        # grad mode stays on: the autograd impls' forward is timed as in training (saving for backward)
        fwd_ms = time_ms(bench.forward, device, args)
        bwd_ms = time_ms(bench.prepare_backward(), device, args)
        if bench.grad_input is not None:
            row["grad_input_ms"] = time_ms(bench.grad_input, device, args)
            row["grad_weight_ms"] = time_ms(bench.grad_weight, device, args)
        peak = peak_memory_mb(bench, device)
        if expected is not None:
            row["check"], row["check_err"] = check_outputs(bench, expected, args.rtol)
            row["check_batch"] = batch
    except Exception as e:  # noqa: BLE001 - one failing case must not stop the run
        failure = "oom" if is_oom(e) else f"{type(e).__name__}: {str(e).strip()[:500]}"
    bench = None  # drop its tensors (and, outside the except block, the traceback's) before emptying the cache
    if failure is not None:
        row["error"] = failure
        empty_cache(device)
        return row

    fwd_roof = max(t["fwd_flops"] / peaks["flops"], t["fwd_bytes"] / peaks["bandwidth"]) * 1e3  # ms
    bwd_roof = max(t["bwd_flops"] / peaks["flops"], t["bwd_bytes"] / peaks["bandwidth"]) * 1e3
    total_ms = fwd_ms + bwd_ms
    row.update({
        "fwd_ms": fwd_ms, "bwd_ms": bwd_ms, "total_ms": total_ms,
        "peak_mem_mb": peak,
        "peak_total_mb": None if peak is None else peak + t["inputs_bytes"] / 2**20,
        "gbps": (t["fwd_bytes"] + t["bwd_bytes"]) / (total_ms * 1e-3) / 1e9,
        "tflops": (t["fwd_flops"] + t["bwd_flops"]) / (total_ms * 1e-3) / 1e12,
        "pct_roofline": 100.0 * (fwd_roof + bwd_roof) / total_ms,
        "fwd_gbps": t["fwd_bytes"] / (fwd_ms * 1e-3) / 1e9,
        "fwd_tflops": t["fwd_flops"] / (fwd_ms * 1e-3) / 1e12,
        "fwd_pct_roofline": 100.0 * fwd_roof / fwd_ms,
        "bwd_gbps": t["bwd_bytes"] / (bwd_ms * 1e-3) / 1e9,
        "bwd_tflops": t["bwd_flops"] / (bwd_ms * 1e-3) / 1e12,
        "bwd_pct_roofline": 100.0 * bwd_roof / bwd_ms,
    })
    return row


# ----------------------------------------------------------------------------------------------------------
# Speedups, goals, output
# ----------------------------------------------------------------------------------------------------------

def add_speedups(rows: list[dict]):
    by_case = {(r["layer"], r["batch"], r["impl"]): r for r in rows}
    for row in rows:
        if not row["impl"].startswith("triton") or row["total_ms"] is None:
            continue
        for base in BASELINES:
            other = by_case.get((row["layer"], row["batch"], base))
            if other is not None and other["total_ms"] is not None:
                row[f"speedup_vs_{base}"] = other["total_ms"] / row["total_ms"]


def goals(rows: list[dict]) -> dict:
    """Per (layer, batch): does the fastest Triton impl (triton, triton_cl, triton_cells, ... that ran; the
    choice bpcompile's 'auto' lowering makes among its kernels) meet each goal? True / False / None (could not
    tell)."""
    by_case = {(r["layer"], r["batch"], r["impl"]): r for r in rows}
    triton_rows = {}
    for (layer, batch, impl), row in by_case.items():
        if impl.startswith("triton"):
            triton_rows.setdefault((layer, batch), []).append(row)
    cases = []
    for (layer, batch), candidates in triton_rows.items():
        ran = [r for r in candidates if r["total_ms"] is not None]
        row = min(ran, key=lambda r: r["total_ms"]) if ran else candidates[0]
        case = {"layer": layer, "batch": batch, "impl": row["impl"]}
        ran = row["total_ms"] is not None
        for base, factor in GOAL_SPEEDUP.items():
            other = by_case.get((layer, batch, base))
            key = f"speedup_{base}_{factor:g}x"
            if not ran or other is None:
                case[key] = None
            elif other.get("error") == "oom":
                case[key] = True  # the baseline does not fit at all
            else:
                speedup = row.get(f"speedup_vs_{base}")
                case[key] = None if speedup is None else speedup >= factor
        case["roofline_60pct"] = row["pct_roofline"] >= 100 * GOAL_ROOFLINE if ran else None
        case["peak_mem_1.2x"] = (row["peak_total_mb"] <= GOAL_MEMORY * row["weights_activations_mb"]
                                 if row["peak_total_mb"] is not None else None)
        case["check_ok"] = None if row.get("check") is None else row["check"] == "ok"
        cases.append(case)
    keys = [f"speedup_{b}_{f:g}x" for b, f in GOAL_SPEEDUP.items()] + ["roofline_60pct", "peak_mem_1.2x", "check_ok"]
    summary = {}
    for key in keys:
        values = [c[key] for c in cases]
        summary[key] = {"met": values.count(True), "failed": values.count(False), "unknown": values.count(None),
                        "all_met": all(v is True for v in values) if values else None}
    notes = ("per (layer, batch) fastest Triton row (its impl named): true / false / null (not measurable: "
             "triton or the baseline missing or failed, peak memory off CUDA); a baseline that ran out of memory "
             "counts as met; speedups are fwd+bwd; peak_mem compares peak_total_mb with weights_activations_mb")
    return {"summary": summary, "cases": cases, "notes": notes}


def fmt(value, spec=".3f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict], title: str):
    headers = ["layer", "batch", "impl", "fwd_ms", "bwd_ms", "gx_ms", "gw_ms", "total_ms", "GB/s", "TFLOP/s", "%roof",
               "peak_MB", "W+A_MB", "check", "x unfold", "x ref", "x compile"]
    lines = []
    for r in rows:
        if r.get("error"):
            timing = [r["error"][:40], "", "", "", "", "", "", "", ""]
        else:
            timing = [fmt(r["fwd_ms"]), fmt(r["bwd_ms"]), fmt(r.get("grad_input_ms")), fmt(r.get("grad_weight_ms")),
                      fmt(r["total_ms"]), fmt(r["gbps"], ".1f"),
                      fmt(r["tflops"], ".2f"), fmt(r["pct_roofline"], ".1f"), fmt(r["peak_mem_mb"], ".1f")]
        speedups = [fmt(r.get(f"speedup_vs_{b}"), ".2f") if r["impl"].startswith("triton") else ""
                    for b in BASELINES]
        lines.append([r["layer"], str(r["batch"]), r["impl"], *timing, fmt(r["weights_activations_mb"], ".1f"),
                      r.get("check") or "-", *speedups])
    from rich.console import Console   # a dependency of bpcompile
    from rich.table import Table

    table = Table(title=title)
    for h in headers:
        table.add_column(h, justify="left" if h in ("layer", "impl", "check") else "right")
    for line in lines:
        table.add_row(*line)
    Console(width=max(160, len(headers) * 10)).print(table)


def print_goals(result: dict):
    if not result["cases"]:
        print("no triton rows: goals not assessed")
        return
    print("triton goals (per layer and batch: met / failed / unknown):")
    for key, s in result["summary"].items():
        print(f"  {key:28s} {s['met']:3d} / {s['failed']:3d} / {s['unknown']:3d}   all met: {s['all_met']}")


# ----------------------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument("--batches", default=None, help="comma list (default 32,128,256; 2 with --quick)")
    p.add_argument("--layers", default=None,
                   help="comma list of layer names or 'all' (default all; MNIST with --quick)")
    p.add_argument("--impls", default=",".join(IMPLS), help=f"comma list of {', '.join(IMPLS)}")
    p.add_argument("--precision", choices=["fp32", "tf32"], default="fp32")
    p.add_argument("--warmup", type=int, default=None, help="CPU: warm-up calls (default 5; 1 with --quick); CUDA: do_bench decides")
    p.add_argument("--iters", type=int, default=None, help="CPU: timed calls (default 20; 3 with --quick); CUDA: do_bench decides")
    p.add_argument("--quick", action="store_true", help="batch 2, MNIST layers, few iterations: a CPU smoke test")
    p.add_argument("--peak-fp32-tflops", type=float, default=67.0, help="default: H100 SXM, non-tensor-core fp32")
    p.add_argument("--peak-tf32-tflops", type=float, default=495.0, help="default: H100 SXM, dense tf32")
    p.add_argument("--peak-bandwidth-tbs", type=float, default=3.35, help="default: H100 SXM HBM3, TB/s")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default torch's; 1 with --quick: a busy small machine stalls)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/lc_<device>.json)")
    args = p.parse_args(argv)

    args.batches = [int(b) for b in (args.batches or ("2" if args.quick else "32,128,256")).split(",")]
    layers = args.layers or ("mnist_lc1,mnist_lc2" if args.quick else "all")
    names = [layer.name for layer in LAYERS]
    args.layers = names if layers == "all" else layers.split(",")
    unknown = [n for n in args.layers if n not in names]
    if unknown:
        p.error(f"unknown layers {unknown}; choose from {names}")
    args.impls = args.impls.split(",")
    unknown = [i for i in args.impls if i not in IMPLS]
    if unknown:
        p.error(f"unknown impls {unknown}; choose from {IMPLS}")
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5)
    args.iters = args.iters if args.iters is not None else (3 if args.quick else 20)
    args.rtol = 1e-3 if args.precision == "fp32" else 2e-2
    args.threads = args.threads if args.threads is not None else (1 if args.quick else None)
    return args


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: torch {torch.__version__} sees no CUDA GPU; use --device cpu")
    if device.type == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton kernels run through the interpreter on CPU
    if args.threads:
        torch.set_num_threads(args.threads)
    tf32 = args.precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    peaks = {"flops": (args.peak_tf32_tflops if tf32 else args.peak_fp32_tflops) * 1e12,
             "bandwidth": args.peak_bandwidth_tbs * 1e12}

    triton_ops, triton_source, triton_version = None, None, None
    if any(impl.startswith("triton") for impl in args.impls):
        triton_ops, triton_source = import_triton_kernels()
        if triton_ops is None:
            print(f"note: skipping the 'triton' impls, their kernels do not import ({triton_source})")
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        pass

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{device_name}, torch {torch.__version__}, triton {triton_version}, {args.precision}, "
          f"batches {args.batches}, impls {args.impls}"
          + ("" if device.type == "cuda" else f", {args.warmup} warm-up + {args.iters} timed iterations"))

    rows = []
    layers = [layer for layer in LAYERS if layer.name in args.layers]
    smallest = min(args.batches)
    for layer in layers:
        for batch in sorted(args.batches):
            tensors = problem(layer, batch, device, args.seed)
            expected = expected_outputs(*tensors, layer) if batch == smallest else None
            for impl in args.impls:
                row = run_case(impl, layer, batch, tensors, expected, args, device, triton_ops, peaks)
                rows.append(row)
                if row.get("error"):
                    status = row["error"].splitlines()[0][:100]
                else:
                    status = f"fwd {row['fwd_ms']:.3f} ms, bwd {row['bwd_ms']:.3f} ms" + (
                        f" (grad_input {row['grad_input_ms']:.3f}, grad_weight {row['grad_weight_ms']:.3f})"
                        if "grad_input_ms" in row else "")
                print(f"  {layer.name:13s} batch {batch:4d} {impl:14s} {status}"
                      + (f"  check {row['check']}" if row.get("check") else ""), flush=True)
            del tensors, expected
            empty_cache(device)
    # carry each (layer, impl)'s check from the smallest batch to its other rows
    checks = {(r["layer"], r["impl"]): r for r in rows if r.get("check_batch") is not None}
    for row in rows:
        checked = checks.get((row["layer"], row["impl"]))
        if row.get("check") is None and checked is not None and row["total_ms"] is not None:
            row["check"], row["check_err"], row["check_batch"] = (checked["check"], checked["check_err"],
                                                                  checked["check_batch"])
    add_speedups(rows)
    goal_result = goals(rows)

    print_table(rows, f"locally connected layer, {device_name}, {args.precision} (times in ms, median)")
    print_goals(goal_result)

    short = short_device_name(device)
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / (
        f"lc_{short}.json" if args.precision == "fp32" else f"lc_{short}_{args.precision}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "device_name": device_name,
        "device": short,
        "torch": torch.__version__,
        "triton": triton_version,
        "triton_impl": triton_source,  # the kernels' module, or why they did not import
        "precision": args.precision,
        "peaks": {"fp32_tflops": args.peak_fp32_tflops, "tf32_tflops": args.peak_tf32_tflops,
                  "bandwidth_tbs": args.peak_bandwidth_tbs, "roofline_uses_tflops": peaks["flops"] / 1e12},
        "settings": {"batches": args.batches, "impls": args.impls, "warmup": args.warmup, "iters": args.iters,
                     "quick": args.quick, "check_rtol": args.rtol, "seed": args.seed,
                     "threads": torch.get_num_threads()},
        "layers": {layer.name: layer.describe() for layer in layers},
        "rows": rows,
        "goals": goal_result,
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
