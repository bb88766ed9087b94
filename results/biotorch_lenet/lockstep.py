"""Lock-step check: our compiled rule and BioTorch's own layers, from the same weights, on the same batches.

    pip install --no-deps biotorch==0.0.16
    python results/biotorch_lenet/lockstep.py --steps 30      # writes results/biotorch_lenet/lockstep.json

For BP, FA, DFA (BioTorch's forms: a dense B for dense layers, a k x k kernel for conv layers), uSF and frSF
(BioTorch magnitudes) BioTorch's LeNetMNIST gets our initial W, biases and feedback tensors (FA's and DFA's B,
frSF's magnitudes), then both take --steps SGD steps of the spec's optimiser on the same
batches. Equal rules give equal losses step by step until float rounding, amplified by training at lr 0.1, sets
the trajectories apart; the table records the largest relative loss gap over the steps (brSF redraws random
magnitudes: not comparable step by step)."""

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from biotorch_side import MODES, import_biotorch  # noqa: E402


def lockstep(rule: str, steps: int, data_dir: str) -> dict:
    from bpcompile.compiler import compile_experiment
    from bpcompile.data import load_dataset, make_loaders
    from bpcompile.optim import build_forward_optimizer
    from bpcompile.runtime.step import RuleStep
    from bpcompile.spec import load_spec

    spec = load_spec(ROOT / "specs" / "biotorch" / f"mnist_lenet_{rule}.json")
    program = compile_experiment(spec)
    BioModule, le_net_mnist = import_biotorch()
    model = BioModule(le_net_mnist(), mode=MODES[rule], **({"output_dim": 10} if rule == "dfa" else {}))
    ours = dict(program.network.named_parameters())
    with torch.no_grad():
        for name, p in model.module.named_parameters():
            if name in ours:
                p.copy_(ours[name])
        for name, tensor in program.state.items():   # FA's, DFA's B; frSF's magnitudes (BioTorch keeps |M| there)
            layer, kind = name.rsplit(".", 1)
            getattr(model.module, layer).weight_backward.copy_(tensor)
    o = spec.optimizer
    theirs = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=o.lr, momentum=o.momentum,
                             weight_decay=o.weight_decay)
    step = RuleStep(program, build_forward_optimizer(o, program))
    initial = {name: p.detach().clone() for name, p in ours.items()}
    loader = make_loaders(spec, load_dataset(spec.data, data_dir=data_dir), torch.device("cpu"))["train"]
    gaps, losses = [], []
    for i, (x, y) in enumerate(loader.epoch(0)):
        if i >= steps:
            break
        ours_loss = float(step(x, y)[0])
        logits = model(x, targets=y, loss_function=F.cross_entropy) if rule == "dfa" else model(x)
        loss = F.cross_entropy(logits, y)
        theirs.zero_grad()
        loss.backward()
        theirs.step()
        gaps.append(abs(ours_loss - float(loss.detach())) / abs(float(loss.detach())))
        losses.append((ours_loss, float(loss.detach())))
    # the weights after the steps, against how far they moved: a gap in the rule shows here even where a small
    # learning rate (DFA's 1e-4) leaves the loss almost unchanged
    theirs_params = dict(model.module.named_parameters())
    drift = {name: float((p.detach() - theirs_params[name].detach()).norm() / (p.detach() - initial[name]).norm())
             for name, p in ours.items() if float((p.detach() - initial[name]).norm()) > 0}
    return {"rule": rule, "steps": steps, "max_relative_loss_gap": max(gaps),
            "max_weight_gap_over_distance_moved": max(drift.values()), "first_and_last_losses": [losses[0], losses[-1]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rules", default="bp,fa,dfa,usf,frsf")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [lockstep(rule, args.steps, args.data_dir) for rule in args.rules.split(",")]
    for row in rows:
        print(f"{row['rule']:5s} max relative loss gap over {row['steps']} steps: {row['max_relative_loss_gap']:.2e}; "
              f"weights apart / moved: {row['max_weight_gap_over_distance_moved']:.2e}")
    (HERE / "lockstep.json").write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
