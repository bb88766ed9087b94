"""The fused feedback product (kernels/feedback.py) against its unfused PyTorch form and torch.compile of it.

(g @ B) * f'(saved) at the dense-layer shapes of the paper's nets where the product feeds an activation's
backward (the pattern lowering fuses): FA / KP / WM / BP hidden layers (B of W's layout), sign symmetry (sign(W)
* s taken inside the kernel), DFA's projection of the output error (K = 10 classes). Batches 32, 128, 256.

  unfused   torch.mm (or sign(W) * s, then mm) and the activation's aten backward: what the graph runs today
  compile   torch.compile of the unfused function
  triton    bpcompile.kernels.feedback.feedback_product

Per (case, batch, impl): median ms (triton.testing.do_bench on CUDA), GB/s over the minimum traffic (read g, B,
saved; write out), a check against float64 (rtol 1e-3 fp32, 2e-2 tf32); on triton rows the speedup over each
baseline. Goal (issue 18): triton at least 2x the unfused form at every case.

    python benchmarks/feedback.py                          # on cuda, fp32
    python benchmarks/feedback.py --precision tf32
    python benchmarks/feedback.py --device cpu --quick --impls unfused   # CPU smoke test

Writes benchmarks/results/feedback_<device>.json (feedback_<device>_tf32.json with --precision tf32)."""

import argparse
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from timing import environment, median_ms, short_device_name  # noqa: E402

# name: (K = features the error arrives on, N = features of the layer's input, activation below, form)
CASES = {
    "mnist_fc_fa": (256, 256, "tanh", "weight"),           # Bartunov MNIST FC: 5 x 256 tanh
    "mnist_fc_sign": (256, 256, "tanh", "sign"),
    "mnist_fc_dfa": (10, 256, "tanh", "weight"),           # DFA: e (classes) @ B
    "cifar_fc_fa": (1024, 1024, "tanh", "weight"),         # CIFAR FC: 3 x 1024 tanh
    "cifar_fc_dfa": (10, 1024, "tanh", "weight"),
    "lc_head_fa": (10, 1024, "tanh", "weight"),            # the LC nets' FC1024 under the softmax layer
    "akrout_fc_relu": (500, 784, "relu", "weight"),        # a ReLU case (Akrout's MNIST net is 784-500-10)
}
QUICK = ["mnist_fc_fa", "mnist_fc_dfa"]


def unfused(g, b, saved, activation, sign, scale):
    weight = torch.sign(b) * scale if sign else b
    out = torch.mm(g, weight)
    if activation == "tanh":
        return torch.ops.aten.tanh_backward(out, saved)
    if activation == "sigmoid":
        return torch.ops.aten.sigmoid_backward(out, saved)
    return torch.ops.aten.threshold_backward(out, saved, 0)


def problem(case: str, batch: int, device: torch.device, seed: int = 0):
    k, n, activation, form = CASES[case]
    gen = torch.Generator(device="cpu").manual_seed(seed)
    g = torch.randn(batch, k, generator=gen).to(device)
    b = (torch.randn(k, n, generator=gen) / k ** 0.5).to(device)
    pre = torch.randn(batch, n, generator=gen).to(device)
    saved = torch.tanh(pre) if activation == "tanh" else torch.relu(pre)
    return g, b, saved, activation, form == "sign", (1 / k ** 0.5 if form == "sign" else 1.0)


def implementations(names):
    impls = {}
    for name in names:
        if name == "unfused":
            impls[name] = unfused
        elif name == "compile":
            impls[name] = torch.compile(unfused, dynamic=False)
        elif name == "triton":
            try:
                from bpcompile.kernels.feedback import feedback_product
            except ImportError as err:
                print(f"note: skipping 'triton', the kernel does not import ({err})")
                continue
            impls[name] = feedback_product
        else:
            raise SystemExit(f"--impls: unknown implementation {name!r} (unfused, compile, triton)")
    return impls


def run(args) -> dict:
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
    impls = implementations(args.impls.split(","))
    cases = QUICK if args.quick else (args.cases.split(",") if args.cases else list(CASES))
    batches = [4] if args.quick else [int(b) for b in args.batches.split(",")]
    rtol = 2e-2 if args.precision == "tf32" else 1e-3
    rows = []
    for case in cases:
        for batch in batches:
            inputs = problem(case, batch, device)
            g, b, saved, activation, sign, scale = inputs
            expected = unfused(g.double(), b.double(), saved.double(), activation, sign, scale)
            traffic = 4 * (g.numel() + b.numel() + 2 * saved.numel())
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
    print(f"{result['environment']['device']}, torch {result['environment']['torch']}, "
          f"triton {result['environment']['triton']}, {result['precision']}")
    print(f"{'case':16s} {'batch':>5s} {'impl':8s} {'ms':>9s} {'GB/s':>8s} {'vs unfused':>10s} {'vs compile':>10s} check")
    for r in result["rows"]:
        def f(key, spec):
            return format(r[key], spec) if key in r else "-"
        print(f"{r['case']:16s} {r['batch']:5d} {r['impl']:8s} {f('ms', '9.4f')} {f('gbps', '8.1f')} "
              f"{f('speedup_vs_unfused', '10.2f')} {f('speedup_vs_compile', '10.2f')} {r.get('check', r.get('error'))}")
    print(f"goals: {result['goals']}")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", choices=["fp32", "tf32"], default="fp32")
    p.add_argument("--impls", default="unfused,compile,triton")
    p.add_argument("--cases", default=None, help=f"comma-separated, of {', '.join(CASES)}")
    p.add_argument("--batches", default="32,128,256")
    p.add_argument("--quick", action="store_true", help="two small cases at batch 4 (smoke test)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device cuda: torch {torch.__version__} sees no CUDA GPU; use --device cpu")
    result = run(args)
    print_table(result)
    suffix = "_tf32" if args.precision == "tf32" else ""
    out = Path(args.out) if args.out else HERE / "results" / f"feedback_{short_device_name(device)}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
