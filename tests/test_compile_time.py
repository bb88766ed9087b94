"""What the compiler does to start faster must not change what it compiles: graph copies equal deep copies,
an alternating phase cut out of the joint target-propagation step equals the phase traced on its own, and
the size budget's planned layer outputs equal a meta-device forward pass."""

import copy
from pathlib import Path

import pytest
import torch

from bpcompile.compiler import compile_experiment
from bpcompile.compiler.lower import lower
from bpcompile.compiler.rules import pass_for
from bpcompile.compiler.rules.target_propagation import trace_program
from bpcompile.compiler.trace import copy_graph
from bpcompile.runtime.step import CompiledStep
from random_nets import batch, make_spec
from test_target_propagation import rule_of, spec_for, two_lc_net


def test_copy_graph_equals_a_deep_copy_and_is_independent():
    spec, *_ = make_spec(3, "conv", {"name": "fa"})
    program = compile_experiment(spec)
    original = program.train_graph
    copied = copy_graph(original)
    assert copied.code == copy.deepcopy(original).code
    assert [n.name for n in copied.graph.nodes] == [n.name for n in original.graph.nodes]
    assert [dict(n.meta) for n in copied.graph.nodes] == [dict(n.meta) for n in original.graph.nodes]
    first = next(n for n in copied.graph.nodes if n.op == "call_function")
    first.meta["changed"] = True
    first.name = "renamed"
    assert all("changed" not in n.meta and n.name != "renamed" for n in original.graph.nodes)


@pytest.mark.parametrize("rule, kind", [("dtp", "lc"), ("sdtp", "dense"), ("ao_sdtp", "lc"), ("tp", "dense")])
def test_an_alternating_phase_equals_the_phase_traced_on_its_own(rule, kind):
    """Both phases are cut out of the joint step's graph; traced separately (as before) they give the same
    outputs bit for bit, in the same order, on a random batch and noise."""
    if kind == "lc":
        spec, _, shape, classes = spec_for(two_lc_net(), rule_of(rule, "alternating"), seed=5)
    else:
        spec, _, shape, classes = make_spec(7, "dense", rule_of(rule, "alternating"), loss="softmax_cross_entropy")
    program = compile_experiment(spec)
    rule_pass = pass_for(spec.rule)
    flatten_input, blocks = rule_pass.check(spec, program.network, program.network.layer_table)
    step = rule_pass.step_class(spec.rule, blocks, flatten_input, spec.loss, program.network)
    x, y = batch(shape, classes, seed=5, size=6)
    for phase, flags in {"inverse": (False, True), "forward": (True, False)}.items():
        traced, traced_signature = trace_program(step, program.network, program.state, *flags)
        lower(traced, program.device)
        cut, cut_signature = program.phases[phase]
        assert cut_signature == traced_signature
        noise = {}

        def same_noise(name, shape):
            if name not in noise:
                noise[name] = torch.randn(shape, generator=torch.Generator().manual_seed(len(noise)))
            return noise[name]

        expected = CompiledStep(program, traced, traced_signature)(x, y, same_noise)
        got = CompiledStep(program, cut, cut_signature)(x, y, same_noise)
        assert len(got) == len(expected)
        for slot, a, b in zip(cut_signature.outputs, got, expected):
            assert torch.equal(a, b), (phase, slot)


def _meta_forward_outputs(network):
    """The reference: every leaf module's output shape from a forward pass on the meta device (what the
    budget ran before it read the plan)."""
    outputs = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: outputs.append(tuple(out.shape[1:])))
             for m in network.modules() if not list(m.children())]
    network.eval()
    with torch.no_grad():
        network(torch.empty((1, *network.input_shape), device="meta"))
    for hook in hooks:
        hook.remove()
    return sorted(outputs)


def _shipped_networks():
    from bpcompile.spec import data_shapes
    from bpcompile.spec.io import load_spec

    root = Path(__file__).resolve().parents[1] / "specs"
    seen = {}
    for path in sorted(root.rglob("*.json")):
        if path.name == "schema.json" or "spaces" in path.parts:
            continue
        spec = load_spec(path)
        shape, classes = data_shapes(spec.data)
        seen.setdefault((spec.network.model_dump_json(), shape, classes), (path.name, spec.network, shape, classes))
    return list(seen.values())


def test_planned_layer_outputs_equal_a_meta_forward_pass_on_every_shipped_network():
    from bpcompile.nn.build import plan_network

    networks = _shipped_networks()
    assert len(networks) > 10
    for name, network_spec, shape, classes in networks:
        with torch.device("meta"):
            network = plan_network(network_spec, shape, classes)
        assert sorted(network.leaf_output_shapes) == _meta_forward_outputs(network), name


@pytest.mark.parametrize("seed, kind", [(0, "dense"), (1, "lc"), (2, "conv"), (3, "conv")])
def test_planned_layer_outputs_equal_a_meta_forward_pass_on_random_nets(seed, kind):
    from bpcompile.nn.build import plan_network

    spec, _, shape, classes = make_spec(seed, kind, {"name": "bp"})
    with torch.device("meta"):
        network = plan_network(spec.network, shape, classes)
    assert sorted(network.leaf_output_shapes) == _meta_forward_outputs(network)
