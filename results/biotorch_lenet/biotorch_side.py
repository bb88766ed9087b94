"""Train BioTorch's own LeNetMNIST under one rule on exactly our batches: the peer's layers beside ours.

    pip install --no-deps biotorch==0.0.16            # BioTorch's layers (its other dependencies are not needed)
    python results/biotorch_lenet/biotorch_side.py specs/biotorch/mnist_lenet_usf.json --epochs 15 --out DIR

The data, batch order, optimiser (SGD with the spec's lr, momentum, weight decay and multistep schedule) and
evaluation come from bpcompile (the spec's loaders: 32x32 MNIST, the same shuffled batches for the same seed);
the model is BioTorch's, built as its benchmark builds it (biotorch/models/utils.py, `create_le_net_biomodel`:
`BioModule(le_net_mnist(), mode=..., copy_weights=False)`), so W and B take BioTorch's Xavier init, and trained
by its rule's backward (biotorch.layers.*). (BioModule's default copy_weights=True would keep le_net_mnist's
PyTorch-default W, about half Xavier's scale in the dense layers; runs before this fix did.) Writes DIR/metrics.jsonl (epoch, train_loss, test_error) and DIR/summary.json.
torchvision is only imported by BioTorch's model zoo, which is not used here: an empty stand-in module is
registered when torchvision is absent."""

import argparse
import importlib.util
import json
import math
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

MODES = {"bp": "backpropagation", "fa": "fa", "dfa": "dfa", "usf": "usf", "brsf": "brsf", "frsf": "frsf"}


def import_biotorch():
    if "torchvision" not in sys.modules and importlib.util.find_spec("torchvision") is None:
        for name in ("torchvision", "torchvision.models", "torchvision.transforms", "torchvision.datasets"):
            sys.modules[name] = types.ModuleType(name)
        sys.modules["torchvision"].models = sys.modules["torchvision.models"]
    from biotorch.module.biomodule import BioModule
    spec = importlib.util.find_spec("biotorch")
    path = Path(spec.origin).parent / "models" / "le_net.py"      # load le_net.py alone, not the model zoo
    module_spec = importlib.util.spec_from_file_location("biotorch_le_net", path)
    le_net = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(le_net)
    return BioModule, le_net.le_net_mnist


def rule_of(spec) -> str:
    if spec.rule.name == "sign_symmetry":
        return spec.rule.variant
    return spec.rule.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from bpcompile.data import load_dataset, make_loaders
    from bpcompile.optim import build_scheduler
    from bpcompile.spec import load_spec

    torch.set_num_threads(args.threads)
    spec = load_spec(args.spec)
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"seed": args.seed, "epochs": args.epochs})})
    rule = rule_of(spec)
    BioModule, le_net_mnist = import_biotorch()
    torch.manual_seed(args.seed)
    model = BioModule(le_net_mnist(), mode=MODES[rule], copy_weights=False,    # as create_le_net_biomodel
                      **({"output_dim": 10} if rule == "dfa" else {}))
    opt = spec.optimizer
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=opt.lr, momentum=opt.momentum,
                                weight_decay=opt.weight_decay)
    scheduler = build_scheduler(opt, optimizer, args.epochs)      # the spec's schedule, stepped once per epoch
    splits = load_dataset(spec.data, data_dir=args.data_dir, seed=args.seed)
    loaders = make_loaders(spec, splits, torch.device("cpu"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = out / "metrics.jsonl"
    metrics.write_text("")
    started, final = time.perf_counter(), None
    for epoch in range(args.epochs):
        model.train()
        t0, losses, diverged = time.perf_counter(), [], False
        for x, y in loaders["train"].epoch(epoch):
            logits = model(x, targets=y, loss_function=F.cross_entropy) if rule == "dfa" else model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        scheduler.step()
        model.eval()
        errors = count = 0
        with torch.no_grad():
            for x, y in loaders["test"].epoch(0):
                errors += int((model(x).argmax(1) != y).sum())
                count += len(y)
        train_loss = sum(losses) / len(losses)
        diverged = not math.isfinite(train_loss)
        final = 100.0 * errors / count
        row = {"epoch": epoch + 1, "train_loss": train_loss, "test_error": final, "seconds": time.perf_counter() - t0}
        with metrics.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    summary = {"name": spec.name, "implementation": "biotorch 0.0.16", "rule": rule, "epochs": args.epochs,
               "seed": args.seed, "final_test_error": final, "diverged": diverged,
               "wall_seconds": time.perf_counter() - started}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
