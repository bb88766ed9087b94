"""The graph cache (compiler/graph_cache.py): a program compiled from cached graphs is the program traced
afresh (same graph code, same inspect text, the same step bit for bit), an entry cannot make a graph call
anything but torch operators, a bad entry is traced again, and the cache can be turned off."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bpcompile.compiler import compile_experiment
from bpcompile.compiler.dump import dump_text
from bpcompile.compiler import graph_cache
from bpcompile.compiler.graph_cache import from_entry, to_entry, traced
from bpcompile.runtime.step import CompiledStep
from bpcompile.spec import (
    ExperimentSpec, NetworkSpec, Pool, ResidualBlock, Synthetic, TrainSpec, Conv2d, Activation, Flatten, Dense,
    GlobalAvgPool, BatchNorm,
)
from random_nets import batch, make_spec
from test_target_propagation import rule_of, spec_for, two_lc_net

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    directory = tmp_path / "graphs"
    monkeypatch.setenv("BPCOMPILE_CACHE_DIR", str(directory))
    monkeypatch.delenv("BPCOMPILE_GRAPH_CACHE", raising=False)
    return directory


def _graphs(program):
    graphs = {"train": program.train_graph, "eval": program.eval_graph, "probe": program.probe_graph}
    graphs.update({f"phase {k}": g for k, (g, _) in program.phases.items()})
    graphs.update({f"extra {k}": g for k, (g, _) in program.extra_graphs.items()})
    if program.rule_probe_graph is not None:
        graphs["rule probe"] = program.rule_probe_graph
    return graphs


def _step_outputs(program, x, y):
    outputs = {}
    for phase in sorted(set(program.schedule)):
        graph, signature = program.phase(phase)
        noise = {}

        def fixed_noise(name, shape):
            if name not in noise:
                noise[name] = torch.randn(shape, generator=torch.Generator().manual_seed(len(noise)))
            return noise[name]

        outputs[phase] = CompiledStep(program, graph, signature)(x, y, fixed_noise)
    return outputs


def _resnet_spec():
    layers = [Conv2d(name="stem", channels=4, kernel=3), BatchNorm(), Activation(fn="relu"),
              ResidualBlock(name="block1", channels=6, stride=2), GlobalAvgPool(), Dense(name="fc", units=3)]
    return ExperimentSpec(name="t", data=Synthetic(input_shape=[2, 8, 8], num_classes=3),
                          network=NetworkSpec(layers=layers), rule={"name": "kolen_pollack"}, train=TrainSpec(seed=1))


def _two_conv_spec(rule):
    """Padded convs: a mirrored conv weight is averaged over each kernel offset's own count of positions."""
    layers = [Conv2d(name="c1", channels=2, kernel=3, padding="same"), Activation(fn="tanh"),
              Conv2d(name="c2", channels=3, kernel=3, padding="same"), Activation(fn="tanh"), Flatten(),
              Dense(name="out", units=3)]
    return ExperimentSpec(name="t", data=Synthetic(input_shape=[1, 6, 6], num_classes=3),
                          network=NetworkSpec(layers=layers), rule={"name": rule})


CASES = {
    "bp dense": lambda: make_spec(0, "dense", {"name": "bp"})[0],
    "fa lc": lambda: make_spec(1, "lc", {"name": "fa"})[0],
    "dfa conv": lambda: make_spec(2, "conv", {"name": "dfa"})[0],
    "sign symmetry conv": lambda: make_spec(3, "conv", {"name": "sign_symmetry"})[0],
    "weight mirror dense": lambda: make_spec(4, "dense", {"name": "weight_mirror"})[0],
    "weight mirror conv": lambda: _two_conv_spec("weight_mirror"),
    "kolen-pollack resnet block": _resnet_spec,
    "sdtp alternating lc": lambda: spec_for(two_lc_net(), rule_of("sdtp", "alternating"), seed=3)[0],
    "ao-sdtp parallel dense": lambda: make_spec(6, "dense", rule_of("ao_sdtp"), loss="softmax_cross_entropy")[0],
}


# a conv layer's mirror graph holds a constant tensor (samples per kernel offset) that no entry stores
UNCACHED = {"weight mirror conv": 1}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_program_from_cached_graphs_is_the_traced_program(case, cache, monkeypatch):
    spec = CASES[case]()
    cold = compile_experiment(spec)
    assert any(cache.glob("*.json")), "nothing was cached"
    calls = []
    real_make_fx = graph_cache.make_fx
    monkeypatch.setattr(graph_cache, "make_fx", lambda *a, **k: calls.append(a) or real_make_fx(*a, **k))
    warm = compile_experiment(spec)
    assert len(calls) == UNCACHED.get(case, 0), "the warm compile traced again"
    cold_graphs, warm_graphs = _graphs(cold), _graphs(warm)
    assert cold_graphs.keys() == warm_graphs.keys()
    for name in cold_graphs:
        assert warm_graphs[name].code == cold_graphs[name].code, name
    assert dump_text(warm) == dump_text(cold)
    assert warm.train_signature == cold.train_signature
    shape, classes = tuple(cold.network.input_shape), cold.network.output_shape[0]
    x, y = batch(shape, classes, seed=2, size=5)
    for phase, outputs in _step_outputs(cold, x, y).items():
        for a, b in zip(outputs, _step_outputs(warm, x, y)[phase]):
            assert (a is None and b is None) or torch.equal(a, b), (case, phase)


def test_bf16_graphs_keep_their_casts_through_the_cache(cache):
    spec, *_ = make_spec(7, "dense", {"name": "fa"})
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"precision": "bf16"})})
    cold, warm = compile_experiment(spec), compile_experiment(spec)
    assert "bfloat16" in cold.train_graph.code
    assert warm.train_graph.code == cold.train_graph.code


def test_what_decides_the_graph_decides_the_entry(cache):
    """Two nets alike but for the pool kind (same shapes, same parameters) must not share an entry."""
    def net(kind):
        layers = [Conv2d(name="c1", channels=2, kernel=3), Activation(fn="tanh"), Pool(kind=kind, kernel=2, stride=2),
                  Flatten(), Dense(name="out", units=3)]
        return ExperimentSpec(name="t", data=Synthetic(input_shape=[1, 8, 8], num_classes=3),
                              network=NetworkSpec(layers=layers), rule={"name": "bp"})

    max_pool = compile_experiment(net("max")).train_graph.code
    avg_pool = compile_experiment(net("avg")).train_graph.code
    assert "max_pool2d" in max_pool and "avg_pool2d" in avg_pool and "max_pool2d" not in avg_pool


def _entry():
    graph, _ = traced(lambda a, b: (torch.tanh(a @ b) * 2.0).sum(1), [torch.randn(5, 3), torch.randn(3, 4)],
                      {"what": "test"})
    return graph, to_entry(graph)


def test_an_entry_rebuilds_the_graph(cache):
    graph, entry = _entry()
    assert from_entry(json.loads(json.dumps(entry))).code == graph.code


@pytest.mark.parametrize("tamper", [
    lambda e: e["nodes"][3].update(target={"op": "os.system.default"}),
    lambda e: e["nodes"][3].update(target={"py": "builtins.eval"}),
    lambda e: e["nodes"][3].update(target={"op": "aten.mm.overloads"}),
    lambda e: e["nodes"][3].update(name="x; import os"),
    lambda e: e["nodes"][0].update(target="a=1"),
    lambda e: e["nodes"][3].update(args={"t": [{"n": 99}]}),
    lambda e: e["nodes"][3].update(args={"t": [{"code": "print(1)"}]}),
    lambda e: e.update(format=0),
])
def test_a_tampered_entry_is_refused(tamper, cache):
    _, entry = _entry()
    tamper(entry)
    with pytest.raises((ValueError, KeyError, AttributeError, TypeError)):
        from_entry(entry)


def test_a_bad_entry_is_traced_again_and_rewritten(cache):
    spec, *_ = make_spec(0, "dense", {"name": "fa"})
    expected = compile_experiment(spec).train_graph.code
    entries = sorted(cache.glob("*.json"))
    for path in entries:
        path.write_bytes(b"\x00 not json")
    assert compile_experiment(spec).train_graph.code == expected
    for path in entries:
        assert json.loads(path.read_text())["format"] == 1      # rewritten


def test_an_unwritable_cache_is_no_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory would be")
    monkeypatch.setenv("BPCOMPILE_CACHE_DIR", str(blocker / "graphs"))
    spec, *_ = make_spec(1, "dense", {"name": "bp"})
    compile_experiment(spec)


def test_the_cache_can_be_turned_off(cache, monkeypatch):
    monkeypatch.setenv("BPCOMPILE_GRAPH_CACHE", "0")
    spec, *_ = make_spec(2, "dense", {"name": "bp"})
    compile_experiment(spec)
    assert not cache.exists()


def test_a_warm_compile_traces_nothing(cache):
    """In a fresh process, a compile from the cache runs no make_fx: torch._dynamo (which make_fx imports,
    about a second) stays unimported."""
    script = ("import sys; from bpcompile.spec.io import load_spec; from bpcompile.compiler import "
              "compile_experiment; compile_experiment(load_spec(sys.argv[1])); "
              "print('dynamo' if 'torch._dynamo' in sys.modules else 'no dynamo')")
    env = {**os.environ, "BPCOMPILE_CACHE_DIR": str(cache)}
    spec = str(ROOT / "specs" / "mnist_fc_fa.json")
    runs = [subprocess.run([sys.executable, "-c", script, spec], capture_output=True, text=True, env=env, cwd=ROOT,
                           timeout=300) for _ in range(2)]
    assert [r.stdout.strip() for r in runs] == ["dynamo", "no dynamo"], [r.stderr[-2000:] for r in runs]
