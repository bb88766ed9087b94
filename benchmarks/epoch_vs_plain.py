"""bpcompile's compiled training graph against a plain hand-written PyTorch loop.

Same spec net (dense/activation/flatten), same initial weights (copied from
bpcompile's seeded initialisation), same optimiser and settings, same batches
in the same order (one BatchLoader). The plain loop is the usual
`loss.backward(); opt.step()`. Reports the test error after the epochs and the
epoch times over --repeats fresh runs, alternating which goes first; the
time ratio is the median of the per-repeat (paired) ratios.
Goal (issue: walking skeleton): same test error within 0.3 points, epoch time
at most 1.1x the plain loop's.

    python benchmarks/epoch_vs_plain.py --data-dir ../shared/data              # mnist_fc_bp, 1 epoch, 3 repeats
    python benchmarks/epoch_vs_plain.py --spec specs/mnist_fc_fa.json ...      # FA vs the plain BP loop's speed

Writes benchmarks/results/epoch_vs_plain_<device>.json."""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from bpcompile.data import load_dataset
from bpcompile.runtime.device import resolve_device, set_precision, versions
from bpcompile.runtime.trainer import Trainer
from bpcompile.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}


def plain_model(spec, compiled_network) -> nn.Sequential:
    """nn.Sequential of torch layers for a dense net, with bpcompile's initial weights."""
    params = dict(compiled_network.named_parameters())
    layers = []
    for layer in spec.network.layers:
        if layer.type == "flatten":
            layers.append(nn.Flatten())
        elif layer.type == "activation":
            layers.append(ACTIVATIONS[layer.fn]())
        elif layer.type == "dense":
            weight = params[f"{layer.name}.weight"]
            linear = nn.Linear(weight.shape[1], weight.shape[0], bias=layer.bias)
            with torch.no_grad():
                linear.weight.copy_(weight)
                if layer.bias:
                    linear.bias.copy_(params[f"{layer.name}.bias"])
            layers.append(linear)
        else:
            raise SystemExit(f"the plain baseline covers dense nets only, not {layer.type!r}")
    return nn.Sequential(*layers).to(compiled_network.out.weight.device)


def test_error(model_fn, loader) -> float:
    errors = count = 0
    with torch.no_grad():
        for x, y in loader.epoch(0):
            errors += int((model_fn(x).argmax(1) != y).sum())
            count += len(y)
    return 100.0 * errors / count


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_plain(spec, trainer, epochs, device) -> tuple[float, list[float]]:
    model = plain_model(spec, trainer.program.network)
    o = spec.optimizer
    opt = torch.optim.Adam(model.parameters(), lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
    times = []
    for epoch in range(epochs):
        sync(device)
        start = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        errors = torch.zeros((), dtype=torch.long, device=device)
        for x, y in trainer.train_loader.epoch(epoch):
            opt.zero_grad(set_to_none=True)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(y)
            errors += (logits.detach().argmax(1) != y).sum()
        float(loss_sum)
        sync(device)
        times.append(time.perf_counter() - start)
    return test_error(model, trainer.eval_loaders["test"]), times


def run_compiled(trainer, epochs, device) -> tuple[float, list[float]]:
    trainer.step.start()   # the rule's start hooks (e.g. weight mirror's first mirror phase), untimed
    times = []
    for _ in range(epochs):
        sync(device)
        start = time.perf_counter()
        trainer.train_epoch()
        sync(device)
        times.append(time.perf_counter() - start)
        trainer.epoch += 1
    return test_error(trainer.evaluate.logits, trainer.eval_loaders["test"]), times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=str(ROOT / "specs" / "mnist_fc_bp.json"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None, help="results JSON (default benchmarks/results/epoch_vs_plain_<device>.json)")
    args = parser.parse_args()

    spec = load_spec(args.spec, [f"train.epochs={args.epochs}"])
    device = resolve_device(args.device)
    set_precision(spec.train.precision)
    splits = load_dataset(spec.data, data_dir=args.data_dir, seed=spec.train.seed)
    console = Console(stderr=True)
    rows = []
    for repeat in range(args.repeats):
        order = ["plain", "bpcompile"] if repeat % 2 == 0 else ["bpcompile", "plain"]
        for impl in order:
            trainer = Trainer(spec, device, splits, None, console, show_progress=False)   # fresh, same seeded init
            error, times = (run_plain(spec, trainer, args.epochs, device) if impl == "plain"
                            else run_compiled(trainer, args.epochs, device))
            rows.append({"impl": impl, "repeat": repeat, "test_error": error, "epoch_seconds": times})
            console.print(f"repeat {repeat} {impl:9s}: test error {error:.2f}%  epoch s {[round(t, 3) for t in times]}")

    def median_epoch(impl):
        return statistics.median(t for r in rows if r["impl"] == impl for t in r["epoch_seconds"])

    def errors(impl):
        return [r["test_error"] for r in rows if r["impl"] == impl]

    def paired_ratios():
        # each repeat runs both back to back, so slow spells of a shared machine hit both alike
        by_repeat = {}
        for r in rows:
            by_repeat.setdefault(r["repeat"], {})[r["impl"]] = sum(r["epoch_seconds"])
        return [v["bpcompile"] / v["plain"] for v in by_repeat.values()]

    plain_s, compiled_s = median_epoch("plain"), median_epoch("bpcompile")
    ratios = paired_ratios()
    result = {
        "benchmark": "epoch_vs_plain", "spec": spec.name, "rule": spec.rule.name, "epochs": args.epochs,
        "batch_size": spec.data.batch_size, "train_examples": len(splits.train_y), "data_source": splits.source,
        **versions(device),
        "plain_median_epoch_seconds": plain_s, "bpcompile_median_epoch_seconds": compiled_s,
        "time_ratio": statistics.median(ratios), "time_ratios_per_repeat": ratios,
        "plain_min_epoch_seconds": min(t for r in rows if r["impl"] == "plain" for t in r["epoch_seconds"]),
        "bpcompile_min_epoch_seconds": min(t for r in rows if r["impl"] == "bpcompile" for t in r["epoch_seconds"]),
        "plain_test_error": errors("plain"), "bpcompile_test_error": errors("bpcompile"),
        "max_test_error_gap": max(abs(a - b) for a, b in zip(errors("plain"), errors("bpcompile"))),
        "goal": {"time_ratio_at_most": 1.1, "test_error_gap_at_most": 0.3},
        "runs": rows,
    }
    result["goal_met"] = result["time_ratio"] <= 1.1 and result["max_test_error_gap"] <= 0.3
    table = Table(title=f"{spec.name}: {args.epochs} epoch(s), batch {spec.data.batch_size}, {result['device_name']}")
    for col in ("impl", "median epoch s", "test error % (per repeat)"):
        table.add_column(col)
    table.add_row("plain PyTorch loop", f"{plain_s:.3f}", ", ".join(f"{e:.2f}" for e in errors("plain")))
    table.add_row("bpcompile", f"{compiled_s:.3f}", ", ".join(f"{e:.2f}" for e in errors("bpcompile")))
    Console().print(table)
    print(f"time ratio bpcompile/plain, median of paired repeats {result['time_ratio']:.3f} (goal <= 1.1; per repeat "
          f"{', '.join(f'{r:.2f}' for r in ratios)}), max test error gap {result['max_test_error_gap']:.2f} "
          f"points (goal <= 0.3): {'met' if result['goal_met'] else 'NOT met'}")
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"epoch_vs_plain_{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if result["goal_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
