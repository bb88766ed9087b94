"""What the fused-kernel benchmarks share (benchmarks/feedback.py, benchmarks/target.py): each times one Triton
kernel against the unfused PyTorch form the graph runs without it and torch.compile of that form, per (case,
batch), checks every output against the unfused form in float64, and writes a JSON result with the environment.

A script describes its kernel as a FusedKernel (cases, the unfused function, the inputs of a case, the minimum
memory traffic, how to import the kernel) and calls main(kernel, argv, doc)."""

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from timing import environment, median_ms, short_device_name

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class FusedKernel:
    name: str                              # result files: <name>_<device>[_tf32].json
    cases: dict                            # case name -> whatever `problem` reads
    quick: list                            # the smoke test's cases (batch 4)
    unfused: Callable                      # unfused(*inputs): the graph's form
    problem: Callable                      # problem(case, batch, device) -> inputs (tensors first, then options)
    traffic: Callable                      # traffic(inputs) -> bytes the kernel must at least move
    load_kernel: Callable                  # () -> the Triton function (raises ImportError without triton)


def implementations(kernel: FusedKernel, names) -> dict:
    impls = {}
    for name in names:
        if name == "unfused":
            impls[name] = kernel.unfused
        elif name == "compile":
            impls[name] = torch.compile(kernel.unfused, dynamic=False)
        elif name == "triton":
            try:
                impls[name] = kernel.load_kernel()
            except ImportError as err:
                print(f"note: skipping 'triton', the kernel does not import ({err})")
        else:
            raise SystemExit(f"--impls: unknown implementation {name!r} (unfused, compile, triton)")
    return impls


def _float64(inputs):
    return tuple(x.double() if isinstance(x, torch.Tensor) else x for x in inputs)


def run(kernel: FusedKernel, args) -> dict:
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
    impls = implementations(kernel, args.impls.split(","))
    cases = kernel.quick if args.quick else (args.cases.split(",") if args.cases else list(kernel.cases))
    batches = [4] if args.quick else [int(b) for b in args.batches.split(",")]
    rtol = 2e-2 if args.precision == "tf32" else 1e-3
    rows = []
    for case in cases:
        for batch in batches:
            inputs = kernel.problem(case, batch, device)
            expected = kernel.unfused(*_float64(inputs))
            traffic = kernel.traffic(inputs)
            for name, fn in impls.items():
                row = {"case": case, "batch": batch, "impl": name}
                try:
                    out = fn(*inputs)
                    ok = torch.allclose(out.double(), expected, rtol=rtol, atol=rtol * float(expected.abs().max()))
                    row["check"] = "ok" if ok else "MISMATCH"
                    row["ms"] = median_ms(lambda: fn(*inputs), device)
                    row["gbps"] = traffic / row["ms"] / 1e6
                except Exception as err:       # a compile failure is a result of the benchmark, not its end
                    row["error"] = f"{type(err).__name__}: {err}"[:300]
                rows.append(row)
    by_key = {(r["case"], r["batch"], r["impl"]): r for r in rows}
    for row in rows:
        if row["impl"] == "triton" and "ms" in row:
            for base in ("unfused", "compile"):
                other = by_key.get((row["case"], row["batch"], base), {})
                if "ms" in other:
                    row[f"speedup_vs_{base}"] = other["ms"] / row["ms"]
    speedups = [r["speedup_vs_unfused"] for r in rows if "speedup_vs_unfused" in r]
    goals = {"min_speedup_vs_unfused": min(speedups) if speedups else None,
             "goal_2x_unfused_everywhere": bool(speedups) and min(speedups) >= 2.0}
    return {"environment": environment(device), "precision": args.precision, "rows": rows, "goals": goals}


def print_table(result: dict) -> None:
    env = result["environment"]
    print(f"{env['device']}, torch {env['torch']}, triton {env['triton']}, {result['precision']}")
    print(f"{'case':18s} {'batch':>5s} {'impl':8s} {'ms':>9s} {'GB/s':>8s} {'vs unfused':>10s} {'vs compile':>10s} check")
    for r in result["rows"]:
        def f(key, spec):
            return format(r[key], spec) if key in r else "-"
        print(f"{r['case']:18s} {r['batch']:5d} {r['impl']:8s} {f('ms', '9.4f')} {f('gbps', '8.1f')} "
              f"{f('speedup_vs_unfused', '10.2f')} {f('speedup_vs_compile', '10.2f')} {r.get('check', r.get('error'))}")
    print(f"goals: {result['goals']}")


def main(kernel: FusedKernel, argv, doc: str) -> dict:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", choices=["fp32", "tf32"], default="fp32")
    p.add_argument("--impls", default="unfused,compile,triton")
    p.add_argument("--cases", default=None, help=f"comma-separated, of {', '.join(kernel.cases)}")
    p.add_argument("--batches", default="32,128,256")
    p.add_argument("--quick", action="store_true", help="two small cases at batch 4 (smoke test)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error(f"--device cuda: torch {torch.__version__} sees no CUDA GPU; use --device cpu")
    result = run(kernel, args)
    print_table(result)
    suffix = "_tf32" if args.precision == "tf32" else ""
    out = Path(args.out) if args.out else RESULTS / f"{kernel.name}_{short_device_name(device)}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result
