"""ResNet training throughput (images/s) under each credit-assignment rule, against a plain PyTorch ResNet.

The spec's ResNet macro ({"type": "resnet", "depth": 18|50, "stem": "imagenet"|"cifar"}) on synthetic
ImageNet-shaped data: one batch of N(0, 1) inputs (3 x S x S) and uniform random labels over 1000 classes,
made once on the device (untimed) and fed to every step. Cases:

  plain          a hand-written ResNet (torch.nn.Conv2d / BatchNorm2d / Linear, in-place ReLU), ordinary
                 autograd (`loss.backward()`) and torch.optim.SGD: the baseline
  bp, fa, sign_symmetry (variant 'usf'), weight_mirror, kolen_pollack
                 the same net compiled by bpcompile (`compile_experiment`, `build_optimizer`, `RuleStep`);
                 a timed step is `step(x, y)`: hooks, the compiled graph, the optimiser, hooks

All cases: SGD lr 0.1, momentum 0.9, weight decay 1e-4; softmax cross-entropy; the same precision settings
(--precision: fp32, tf32 = TF32 matmuls/convolutions via bpcompile's set_precision, bf16 = autocast for the
plain net and train.precision='bf16' for bpcompile; --channels-last: plain model and input in channels-last,
train.channels_last for bpcompile, which gets the same channels-last input tensor) and the same cuDNN flags.
Weight mirror runs with a small mirror batch (--mirror-batch, default 8), no pre-training mirror batches and
one mirror batch after every step; Kolen-Pollack with its default weight_decay 1e-4 on W and B.

Timing: --warmup steps, then --repeats runs of --steps steps each, timed by wall clock between
torch.cuda.synchronize() calls; ms/step is the median over repeats (min also kept). Per case: images/s,
ms/step, overhead vs bpcompile BP (%), time ratio vs the plain baseline, CUDA peak memory
(torch.cuda.max_memory_allocated, reset before each case is built, so it holds parameters, optimiser and rule
state, the data batch and the step's activations), and a roofline line: model FLOPs per image = 2 x the conv
and linear multiply-adds (forward hooks on the plain net, on the meta device) x 3 for forward + backward ->
achieved TFLOP/s and its fraction of the device's dense peak (H100/H200 table below; None on CPU). Rule extras
(weight mirror's mirror batches, Kolen-Pollack's paired update) are not counted as model FLOPs. A case that
raises (bpcompile refusing a setting, OOM) records its error and the run goes on.

    python benchmarks/resnet_throughput.py                                  # ResNet-18, 224px, batch 256 on cuda
    python benchmarks/resnet_throughput.py --precision bf16 --channels-last
    python benchmarks/resnet_throughput.py --depth 50 --rules bp,fa --steps 10
    python benchmarks/resnet_throughput.py --device cpu --stem cifar --image-size 16 --width 4 \\
        --batch-size 4 --steps 1 --warmup 1 --rules bp,fa                   # CPU smoke test

Writes benchmarks/results/resnet{depth}_throughput_<device-tag>.json, the tag being a short device name
('h100', 'cpu') plus _<precision> when not fp32, _cl with --channels-last and _cifar with the cifar stem.
"""

import argparse
import gc
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without `pip install -e .` too
sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import short_device_name  # noqa: E402

from bpcompile.compiler import compile_experiment  # noqa: E402
from bpcompile.optim import build_optimizer  # noqa: E402
from bpcompile.runtime.device import resolve_device, set_precision, versions  # noqa: E402
from bpcompile.runtime.step import RuleStep  # noqa: E402
from bpcompile.spec import (  # noqa: E402
    BP, FA, SGD, ExperimentSpec, KolenPollack, MirrorSettings, NetworkSpec, ResNet, SignSymmetry, Synthetic,
    TrainSpec, WeightMirror,
)

RULES = ["bp", "fa", "sign_symmetry", "weight_mirror", "kolen_pollack"]
NUM_CLASSES = 1000
OPTIMIZER = dict(lr=0.1, momentum=0.9, weight_decay=1e-4)

# Dense (no sparsity) peak TFLOP/s by precision; fp32 = non-tensor-core FP32. The first matching name wins.
PEAK_TFLOPS = [
    ("H100 PCIe", {"fp32": 51.0, "tf32": 378.0, "bf16": 756.0}),
    ("H100", {"fp32": 67.0, "tf32": 495.0, "bf16": 990.0}),   # SXM
    ("H200", {"fp32": 67.0, "tf32": 495.0, "bf16": 990.0}),
]


# ----------------------------------------------------------------------------------------------------------
# The plain baseline: a hand-written ResNet with the layout of bpcompile's macro (torchvision's v1.5 layout:
# bias-free convs, BN after each, stride on the 3x3 conv, 1x1 conv + BN projection when the shape changes)
# ----------------------------------------------------------------------------------------------------------

class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = projection(in_channels, width, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, 1, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, 1, 0, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = projection(in_channels, out_channels, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def projection(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=False), nn.BatchNorm2d(out_channels))


class PlainResNet(nn.Module):
    """ResNet-18 (basic blocks 2-2-2-2) or ResNet-50 (bottlenecks 3-4-6-3). Stem 'imagenet': 7x7/2 conv, BN,
    ReLU, 3x3/2 max pool; 'cifar': 3x3/1 conv, BN, ReLU."""

    def __init__(self, depth: int = 18, stem: str = "imagenet", width: int = 64, num_classes: int = NUM_CLASSES):
        super().__init__()
        block, counts = {18: (BasicBlock, [2, 2, 2, 2]), 50: (Bottleneck, [3, 4, 6, 3])}[depth]
        if stem == "imagenet":
            self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                      nn.ReLU(inplace=True))
        blocks, channels = [], width
        for stage, count in enumerate(counts):
            stage_width = width * 2 ** stage
            for b in range(count):
                blocks.append(block(channels, stage_width, 2 if (b == 0 and stage > 0) else 1))
                channels = stage_width * block.expansion
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def forward_macs_per_image(depth: int, stem: str, width: int, image_size: int) -> dict:
    """Multiply-adds of one image's forward pass through the convs and the linear layer, counted by forward
    hooks on the plain net built on the meta device (no memory, no compute)."""
    counts = {"conv": 0, "linear": 0}

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            counts["conv"] += output[0].numel() * (module.in_channels // module.groups) * kh * kw
        else:
            counts["linear"] += module.in_features * module.out_features

    with torch.device("meta"):
        model = PlainResNet(depth, stem, width, NUM_CLASSES).eval()  # eval: a 1-image batch norm is fine
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.empty(1, 3, image_size, image_size, device="meta"))
    return counts


# ----------------------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------------------

def rule_spec(name: str, args):
    if name == "bp":
        return BP()
    if name == "fa":
        return FA()
    if name == "sign_symmetry":
        return SignSymmetry(variant="usf")
    if name == "weight_mirror":
        return WeightMirror(mirror=MirrorSettings(batch_size=args.mirror_batch, pre_batches=0, batches_per_step=1))
    if name == "kolen_pollack":
        return KolenPollack()
    raise ValueError(name)


def experiment_spec(rule: str, args) -> ExperimentSpec:
    return ExperimentSpec(
        name=f"resnet{args.depth}_{rule}_throughput",
        data=Synthetic(input_shape=[3, args.image_size, args.image_size], num_classes=NUM_CLASSES,
                       batch_size=args.batch_size),
        network=NetworkSpec(layers=[ResNet(depth=args.depth, stem=args.stem, width=args.width,
                                           num_classes=NUM_CLASSES)]),
        rule=rule_spec(rule, args),
        optimizer=SGD(**OPTIMIZER),
        train=TrainSpec(seed=args.seed, precision=args.precision, channels_last=args.channels_last),
    )


def build_plain(args, device):
    """-> (step function, info)."""
    torch.manual_seed(args.seed)
    model = PlainResNet(args.depth, args.stem, args.width, NUM_CLASSES).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), **OPTIMIZER)
    autocast = args.precision == "bf16"

    def step(x, y):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    return step, {"params": count_parameters(model)}, (model, optimizer)


def build_bpcompile(rule: str, args, device):
    spec = experiment_spec(rule, args)
    program = compile_experiment(spec, device)
    optimizer = build_optimizer(spec.optimizer, program.network.parameters())
    rule_step = RuleStep(program, optimizer, spec.train.seed)
    rule_step.select("train")
    rule_step.start()  # the rule's start hooks (weight mirror: pre_batches = 0 mirror batches), untimed

    def step(x, y):
        return rule_step(x, y)[0]

    info = {"params": count_parameters(program.network), "rule_spec": spec.rule.model_dump(mode="json"),
            "layer_rules": len(program.layer_rules)}
    return step, info, (program, optimizer, rule_step)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def release(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_case(case: str, args, device, x, y, flops_per_image: float, peak_tflops) -> dict:
    impl = "plain" if case == "plain" else "bpcompile"
    row = {"case": case, "impl": impl, "rule": "bp" if case == "plain" else case, "error": None}
    release(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    failure, held = None, None
    try:
        started = time.perf_counter()
        step, info, held = build_plain(args, device) if case == "plain" else build_bpcompile(case, args, device)
        row["build_seconds"] = time.perf_counter() - started
        row.update(info)
        for _ in range(args.warmup):
            loss = step(x, y)
        sync(device)
        repeat_seconds = []
        for _ in range(args.repeats):
            sync(device)
            started = time.perf_counter()
            for _ in range(args.steps):
                loss = step(x, y)
            sync(device)
            repeat_seconds.append(time.perf_counter() - started)
        row["final_loss"] = float(loss.detach())
        row["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        row["ms_per_step_repeats"] = [1e3 * s / args.steps for s in repeat_seconds]
    except Exception as e:  # noqa: BLE001 - one failing case must not stop the run
        failure = "oom" if is_oom(e) else f"{type(e).__name__}: {str(e).strip()[:1000]}"
        row["traceback_tail"] = traceback.format_exc(limit=-3)[-2000:]
    held = step = None  # noqa: F841 - drop the case's model, optimiser and graphs before the next case
    if failure is not None:
        row["error"] = failure
        release(device)
        return row
    ms = statistics.median(row["ms_per_step_repeats"])
    row["ms_per_step"] = ms
    row["ms_per_step_min"] = min(row["ms_per_step_repeats"])
    row["images_per_s"] = args.batch_size / (ms * 1e-3)
    row["tflops"] = flops_per_image * row["images_per_s"] / 1e12
    row["pct_peak"] = None if peak_tflops is None else 100.0 * row["tflops"] / peak_tflops
    return row


def add_comparisons(rows: list[dict]) -> dict:
    ok = {r["case"]: r for r in rows if r["error"] is None}
    plain, bp = ok.get("plain"), ok.get("bp")
    for r in rows:
        r["overhead_vs_bp_pct"] = None
        r["time_ratio_vs_plain"] = None
        if r["error"] is not None:
            continue
        if r["impl"] == "bpcompile" and bp is not None:
            r["overhead_vs_bp_pct"] = 100.0 * (r["ms_per_step"] / bp["ms_per_step"] - 1.0)
        if plain is not None:
            r["time_ratio_vs_plain"] = r["ms_per_step"] / plain["ms_per_step"]
    summary = {
        "bp_vs_plain_time_ratio": bp["ms_per_step"] / plain["ms_per_step"] if bp and plain else None,
        "bp_vs_plain_speed_ratio": bp["images_per_s"] / plain["images_per_s"] if bp and plain else None,
        "param_counts_match": len({r["params"] for r in rows if "params" in r}) == 1 if rows else None,
        "failed_cases": [r["case"] for r in rows if r["error"] is not None],
    }
    return summary


# ----------------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------------

def device_tag(device, args) -> str:
    tag = short_device_name(device)
    if args.precision != "fp32":
        tag += f"_{args.precision}"
    if args.channels_last:
        tag += "_cl"
    if args.stem != "imagenet":
        tag += f"_{args.stem}"
    return tag


def peak_for(device, device_name: str, precision: str, override):
    if override is not None:
        return override, "--peak-tflops"
    if device.type != "cuda":
        return None, None
    for key, peaks in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return peaks[precision], key
    return None, None


def fmt(value, spec=".1f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict], title: str):
    headers = ["case", "images/s", "ms/step", "vs BP %", "x plain time", "TFLOP/s", "% peak", "peak MB",
               "build s", "loss"]
    lines = []
    for r in rows:
        label = "plain PyTorch" if r["case"] == "plain" else f"bpcompile {r['case']}"
        if r["error"] is not None:
            lines.append([label, "error: " + r["error"].splitlines()[0][:70], *[""] * (len(headers) - 2)])
            continue
        lines.append([label, fmt(r["images_per_s"]), fmt(r["ms_per_step"], ".2f"),
                      fmt(r["overhead_vs_bp_pct"], "+.1f"), fmt(r["time_ratio_vs_plain"], ".3f"),
                      fmt(r["tflops"], ".2f" if r["tflops"] >= 0.01 else ".2g"), fmt(r["pct_peak"]),
                      fmt(r["peak_mem_mb"], ".0f"), fmt(r["build_seconds"]), fmt(r["final_loss"], ".3f")])
    from rich.console import Console   # a dependency of bpcompile
    from rich.table import Table

    table = Table(title=title)
    for h in headers:
        table.add_column(h, justify="left" if h == "case" else "right")
    for line in lines:
        table.add_row(*line)
    Console(width=150).print(table)


# ----------------------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda or cuda:N")
    p.add_argument("--depth", type=int, choices=[18, 50], default=18)
    p.add_argument("--stem", choices=["imagenet", "cifar"], default="imagenet")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=None, help="default 256 on cuda, 8 on cpu")
    p.add_argument("--width", type=int, default=64, help="channels of the first stage")
    p.add_argument("--steps", type=int, default=None, help="timed steps per repeat (default 20 on cuda, 3 on cpu)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5 on cuda, 1 on cpu)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of --steps steps; ms/step is their median")
    p.add_argument("--rules", default=",".join(RULES), help=f"comma list of {', '.join(RULES)}")
    p.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="fp32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--mirror-batch", type=int, default=8, help="weight mirror's noise batch (mirror.batch_size)")
    p.add_argument("--cudnn-benchmark", action=argparse.BooleanOptionalAction, default=True,
                   help="torch.backends.cudnn.benchmark for every case (default on)")
    p.add_argument("--peak-tflops", type=float, default=None, help="override the roofline peak (TFLOP/s)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None,
                   help="JSON path (default benchmarks/results/resnet{depth}_throughput_<device-tag>.json)")
    args = p.parse_args(argv)
    args.rules = [r for r in args.rules.split(",") if r]
    unknown = [r for r in args.rules if r not in RULES]
    if unknown:
        p.error(f"unknown rules {unknown}; choose from {RULES}")
    for name in ("image_size", "width", "repeats", "mirror_batch"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    args.batch_size = args.batch_size or (256 if cuda else 8)
    args.steps = args.steps if args.steps is not None else (20 if cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    if args.steps <= 0 or args.batch_size <= 0 or args.warmup < 0:
        raise SystemExit("--steps and --batch-size must be positive, --warmup not negative")
    if args.threads:
        torch.set_num_threads(args.threads)
    set_precision(args.precision)  # tf32: TF32 matmuls and convolutions; fp32 and bf16: off
    torch.backends.cudnn.benchmark = bool(args.cudnn_benchmark and cuda)
    info = versions(device)
    peak_tflops, peak_source = peak_for(device, info["device_name"], args.precision, args.peak_tflops)

    macs = forward_macs_per_image(args.depth, args.stem, args.width, args.image_size)
    forward_flops = 2 * (macs["conv"] + macs["linear"])
    train_flops = 3 * forward_flops

    # one batch, made on the device once and fed to every step of every case
    generator = torch.Generator(device=device).manual_seed(args.seed)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device, generator=generator)
    y = torch.randint(0, NUM_CLASSES, (args.batch_size,), device=device, generator=generator)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    print(f"ResNet-{args.depth} ({args.stem} stem, width {args.width}) on {args.image_size}px, batch "
          f"{args.batch_size}, {args.precision}{', channels-last' if args.channels_last else ''}, "
          f"{info['device_name']}, torch {info['torch']}, triton {info['triton']}; {args.warmup} warm-up + "
          f"{args.repeats} x {args.steps} timed steps; {train_flops / 1e9:.3f} GFLOP per image (fwd+bwd)",
          flush=True)
    rows = []
    for case in ["plain"] + args.rules:
        row = run_case(case, args, device, x, y, train_flops, peak_tflops)
        rows.append(row)
        status = (f"error {row['error'].splitlines()[0][:120]}" if row["error"] is not None else
                  f"{row['images_per_s']:.1f} images/s, {row['ms_per_step']:.2f} ms/step (built in "
                  f"{row['build_seconds']:.1f} s)")
        print(f"  {case:14s} {status}", flush=True)
    summary = add_comparisons(rows)

    title = (f"ResNet-{args.depth} training throughput, {info['device_name']}, {args.precision}"
             f"{' channels-last' if args.channels_last else ''}, batch {args.batch_size}, {args.image_size}px")
    print_table(rows, title)
    if summary["bp_vs_plain_time_ratio"] is not None:
        print(f"bpcompile BP / plain step time: {summary['bp_vs_plain_time_ratio']:.3f} "
              f"(speed ratio {summary['bp_vs_plain_speed_ratio']:.3f})")
    if peak_tflops is None:
        print("roofline: no peak known for this device (pass --peak-tflops)")
    else:
        print(f"roofline: {train_flops / 1e9:.3f} GFLOP per image, peak {peak_tflops} TFLOP/s "
              f"({peak_source}, {args.precision} dense)")

    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / (
        f"resnet{args.depth}_throughput_{device_tag(device, args)}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "resnet_throughput",
        **info,
        "device_tag": device_tag(device, args),
        "settings": {
            "depth": args.depth, "stem": args.stem, "width": args.width, "image_size": args.image_size,
            "num_classes": NUM_CLASSES, "batch_size": args.batch_size, "precision": args.precision,
            "channels_last": args.channels_last, "steps": args.steps, "warmup": args.warmup,
            "repeats": args.repeats, "rules": args.rules, "seed": args.seed,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "optimizer": {"name": "sgd", **OPTIMIZER},
            "loss": "softmax_cross_entropy",
            "data": "one synthetic batch on the device: x ~ N(0, 1), labels uniform over the classes; untimed",
            "rule_settings": {r: rule_spec(r, args).model_dump(mode="json") for r in args.rules},
            "weight_mirror": {"batch_size": args.mirror_batch, "pre_batches": 0, "batches_per_step": 1},
            "plain": "hand-written ResNet, torch.nn Conv2d/BatchNorm2d/Linear, loss.backward(), torch.optim.SGD"
                     + (", torch.autocast bf16" if args.precision == "bf16" else "")
                     + (", model and input channels-last" if args.channels_last else ""),
            "timing": "wall clock between cuda synchronisations; ms_per_step = median over repeats",
        },
        "roofline": {
            "forward_macs_per_image": macs,
            "forward_flops_per_image": forward_flops,
            "train_flops_per_image": train_flops,
            "convention": "2 FLOPs per conv/linear multiply-add, x3 for forward + backward (input and weight "
                          "gradients); batch norm, pooling, optimiser and rule extras not counted",
            "peak_tflops": peak_tflops, "peak_source": peak_source,
            "peak_table": {k: v for k, v in PEAK_TFLOPS},
        },
        "summary": summary,
        "cases": rows,
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
