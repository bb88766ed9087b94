"""Peak memory of one training step, estimated on the CPU from the compiled graph, and measured on a GPU.

The estimate runs the lowered training graph once on fake tensors (torch's FakeTensorMode: shapes and dtypes, no
data, no compute) at the asked-for batch, then walks the nodes in execution order: a node's output is allocated
when it runs and freed after its last user; outputs of view ops (any op whose schema returns an alias: view, t,
expand, getitem, ...) take no memory and keep their base alive. The graph's inputs (parameters, buffers, rule
state, the batch) are live throughout; the optimiser's state is added per the spec's optimiser (Adam: 2 tensors
per trained parameter, SGD with momentum: 1). For a two-phase schedule (alternating TP) the larger phase counts.
Not counted: the optimiser
step's own temporaries (foreach Adam allocates about one parameter-sized buffer) and the CUDA allocator's
caching and fragmentation, so the estimate is a floor. A measured row (--device cuda) trains the same steps on the
GPU (each phase of the schedule) and reads torch.cuda.max_memory_allocated.

    python benchmarks/memory.py                                   # ImageNet LC net, batch 256, BP / FA / DFA / DTP
    python benchmarks/memory.py --nets mnist_lc --batch 128       # the MNIST LC net
    python benchmarks/memory.py --device cuda                     # also measure on the GPU

Writes benchmarks/results/memory_<device>.json. Goal (issue 18): the ImageNet LC net at batch 256 in 16 GB under
BP, FA, DFA and DTP."""

import argparse
import json
import sys
from pathlib import Path

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
from timing import environment, short_device_name  # noqa: E402

GIB = 2 ** 30
RULES = {"bp": {"name": "bp"}, "fa": {"name": "fa"}, "dfa": {"name": "dfa"}, "dtp": None}   # None: the paper's spec
NETS = {"imagenet_lc": "imagenet", "mnist_lc": "mnist", "cifar_lc": "cifar10"}              # net -> data set


def experiment(net: str, rule: str, batch: int, device: str):
    """The spec of one (net, rule): Bartunov et al.'s Table 3 net with its DTP-alternating settings (the ImageNet
    cell the paper ran), the rule swapped for the gradient rules."""
    from bpcompile.spec import apply_overrides, spec_from_dict, spec_to_json
    from bpcompile.spec.paper import paper_experiment

    spec = paper_experiment(NETS[net], "lc", "dtp_alternating")
    sets = [f"data.batch_size={batch}", f'train.device="{device}"']
    if RULES[rule] is not None:
        sets.append(f"rule={json.dumps(RULES[rule])}")
    return spec_from_dict(apply_overrides(json.loads(spec_to_json(spec)), sets))


def _aliases(node) -> bool:
    target = node.target
    if node.op != "call_function":
        return False
    if getattr(target, "__name__", "") == "getitem":
        return True
    schema = getattr(target, "_schema", None)
    return schema is not None and any(r.alias_info is not None for r in schema.returns)


def _bytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_bytes(v) for v in value)
    return 0


def graph_peak_bytes(graph: torch.fx.GraphModule, inputs: list) -> dict:
    """{'inputs': bytes of the graph's inputs, 'peak': inputs + the largest sum of live intermediate tensors}."""
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        fake_inputs = [mode.from_tensor(t) if isinstance(t, torch.Tensor) else t for t in inputs]
        values = {}

        class Recorder(torch.fx.Interpreter):
            def run_node(self, n):
                out = super().run_node(n)
                values[n] = out
                return out

        Recorder(graph).run(*fake_inputs)
    nodes = list(graph.graph.nodes)
    root = {}
    for n in nodes:                     # a view's memory is its base's
        base = n.args[0] if _aliases(n) and n.args and isinstance(n.args[0], torch.fx.Node) else None
        root[n] = root[base] if base is not None else n
    last_use = {}
    for i, n in enumerate(nodes):
        for a in n.all_input_nodes:
            last_use[root[a]] = i
    input_bytes = sum(_bytes(values[n]) for n in nodes if n.op == "placeholder")
    live, peak, held = input_bytes, input_bytes, {}
    for i, n in enumerate(nodes):
        if n.op == "call_function" and root[n] is n:
            held[n] = _bytes(values.get(n))
            live += held[n]
        peak = max(peak, live)
        for a in n.all_input_nodes:
            r = root[a]
            if last_use.get(r) == i and r in held and r.op != "placeholder":
                live -= held.pop(r)
    return {"inputs": input_bytes, "peak": peak}


def optimizer_state_bytes(spec, program) -> int:
    per_param = {"adam": 2, "sgd": 1 if getattr(spec.optimizer, "momentum", 0) else 0}.get(spec.optimizer.name, 2)
    trained = sum(p.numel() * p.element_size() for p in program.network.parameters() if p.requires_grad)
    extra = 0
    inverse = getattr(spec.rule, "inverse_optimizer", None)
    if inverse is not None:             # TP: the inverses' Adam state
        extra = 2 * sum(t.numel() * t.element_size() for name, t in program.state.items() if "inverse" in name)
    return per_param * trained + extra


def estimate(net: str, rule: str, batch: int) -> dict:
    from bpcompile.compiler import compile_experiment

    spec = experiment(net, rule, batch, "cpu")
    program = compile_experiment(spec)
    shape = (batch, *program.network.input_shape)
    x = torch.empty(shape)          # (never filled: the graph runs on fake copies)
    y = torch.zeros(batch, dtype=torch.long)
    phases = [(program.train_signature, program.train_graph)] + [
        (signature, graph) for graph, signature in program.phases.values()]
    best = None
    for signature, graph in phases:
        inputs = program.graph_inputs(signature, x, y)
        found = graph_peak_bytes(graph, inputs)
        best = found if best is None or found["peak"] > best["peak"] else best
    opt = optimizer_state_bytes(spec, program)
    return {"net": net, "rule": rule, "batch": batch, "estimated_graph_peak_gib": best["peak"] / GIB,
            "graph_inputs_gib": best["inputs"] / GIB, "optimizer_state_gib": opt / GIB,
            "estimated_total_gib": (best["peak"] + opt) / GIB}


def train_steps(net: str, rule: str, batch: int, device: str, steps: int = 2) -> float:
    """Train `steps` steps of each phase on random data of the spec's shapes on `device`; the last loss."""
    from bpcompile.compiler import compile_experiment
    from bpcompile.optim import build_forward_optimizer
    from bpcompile.runtime.step import RuleStep

    spec = experiment(net, rule, batch, device)
    program = compile_experiment(spec)
    step = RuleStep(program, build_forward_optimizer(spec.optimizer, program))
    x = torch.randn(batch, *program.network.input_shape, device=device)
    y = torch.randint(0, program.network.output_shape[-1], (batch,), device=device)
    step.start()
    loss = None
    for phase in sorted(set(program.schedule)):      # every phase of a two-phase schedule
        step.select(phase)
        for _ in range(steps):
            loss, _ = step(x, y)
    return float(loss)


def measure(net: str, rule: str, batch: int, steps: int = 2) -> float:
    """Peak CUDA memory (GiB) over `steps` training steps of each phase."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    train_steps(net, rule, batch, "cuda", steps)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / GIB


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", default="imagenet_lc", help=f"comma-separated, of {', '.join(NETS)}")
    p.add_argument("--rules", default="bp,fa,dfa,dtp", help=f"comma-separated, of {', '.join(RULES)}")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: also measure on the GPU")
    p.add_argument("--limit-gib", type=float, default=16.0)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    nets, rules = args.nets.split(","), args.rules.split(",")
    for flag, names, known in (("--nets", nets, NETS), ("--rules", rules, RULES)):
        unknown = [n for n in names if n not in known]
        if unknown:
            p.error(f"{flag}: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error(f"--device cuda: torch {torch.__version__} sees no CUDA GPU; use --device cpu")
    rows = []
    for net in nets:
        for rule in rules:
            row = estimate(net, rule, args.batch)
            if args.device == "cuda":
                try:
                    row["measured_peak_gib"] = measure(net, rule, args.batch)
                except torch.cuda.OutOfMemoryError as err:
                    row["measured_error"] = f"out of memory: {str(err)[:200]}"
                torch.cuda.empty_cache()
            row["within_limit"] = row.get("measured_peak_gib", row["estimated_total_gib"]) <= args.limit_gib
            rows.append(row)
            print(f"{net:12s} {rule:4s} batch {args.batch}: estimated {row['estimated_total_gib']:.2f} GiB "
                  f"(graph peak {row['estimated_graph_peak_gib']:.2f}, of it inputs {row['graph_inputs_gib']:.2f}; "
                  f"optimiser {row['optimizer_state_gib']:.2f})"
                  + (f", measured {row['measured_peak_gib']:.2f} GiB" if "measured_peak_gib" in row else ""), flush=True)
    device = torch.device(args.device)
    result = {"environment": environment(device), "limit_gib": args.limit_gib, "rows": rows}
    out = Path(args.out) if args.out else HERE / "results" / f"memory_{short_device_name(device)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
