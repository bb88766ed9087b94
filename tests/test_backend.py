"""train.backend 'inductor' (runtime/backend.py): torch.compile of the lowered step graphs computes what the FX
graphs compute, for gradient rules and both target-propagation schedules, with the program's graphs and `inspect`
untouched; batch norm statistics still update in place; Triton implementations stay opaque calls; a failed
compile is one clear error; a whole run under Inductor follows the FX run. Each case compiles with Inductor (a few
seconds on the CPU), so the nets are small."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import bpcompile
from bpcompile.compiler import compile_experiment
from bpcompile.compiler.dump import dump_text
from bpcompile.compiler.program import META_IMPL
from bpcompile.errors import BpcompileError
from bpcompile.runtime.backend import InductorGraph, executable
from bpcompile.runtime.step import CompiledStep
from bpcompile.spec import (
    DFA, FA, Activation, BatchNorm, BP, Conv2d, Dense, ExperimentSpec, Flatten, LocallyConnected, NetworkSpec, SignSymmetry,
    Synthetic, TrainSpec,
)
from random_nets import batch, make_spec
from test_graph_cache import _step_outputs as step_outputs
from test_target_propagation import rule_of, spec_for

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = dict(rtol=1e-4, atol=1e-5)   # Inductor may reassociate float sums; the values agree, not the bits


def _with_backend(spec, backend):
    return spec.model_copy(update={"train": spec.train.model_copy(update={"backend": backend})})


def _assert_outputs_close(got: dict, expected: dict):
    assert got.keys() == expected.keys()
    for phase in expected:
        assert len(got[phase]) == len(expected[phase])
        for i, (a, b) in enumerate(zip(got[phase], expected[phase])):
            if b is None:
                assert a is None, (phase, i)
                continue
            assert a.shape == b.shape and a.dtype == b.dtype, (phase, i)
            torch.testing.assert_close(a, b, **TOLERANCE, msg=lambda m: f"phase {phase}, output {i}: {m}")


def _lc_dense_net():
    layers = [LocallyConnected(name="lc1", channels=3, kernel=3, stride=2), Activation(fn="tanh"), Flatten(),
              Dense(name="fc1", units=6), Activation(fn="relu"), Dense(name="out", units=4)]
    return ExperimentSpec(name="t", data=Synthetic(input_shape=[2, 7, 7], num_classes=4),
                          network=NetworkSpec(layers=layers), rule=FA(), train=TrainSpec(seed=3)), (2, 7, 7), 4


def _conv_net(rule):
    layers = [Conv2d(name="conv1", channels=3, kernel=3, stride=1), Activation(fn="relu"), Flatten(),
              Dense(name="out", units=3)]
    return ExperimentSpec(name="t", data=Synthetic(input_shape=[1, 6, 6], num_classes=3),
                          network=NetworkSpec(layers=layers), rule=rule, train=TrainSpec(seed=4)), (1, 6, 6), 3


def _case(built):
    """(spec, input shape, classes) of make_spec's or spec_for's (spec, plain layers, shape, classes)."""
    spec, _, shape, classes = built
    return spec, shape, classes


def _dense_tp_net():
    layers = [Dense(name="fc1", units=6), Activation(fn="tanh"), Dense(name="fc2", units=5), Activation(fn="tanh"),
              Dense(name="out", units=3)]
    return layers, None, (4,), 3


CASES = {
    "bp dense": lambda: _case(make_spec(11, "dense", BP())),
    "fa lc+dense": _lc_dense_net,
    "dfa dense": lambda: _case(make_spec(12, "dense", DFA(), loss="softmax_cross_entropy")),
    "sign symmetry conv": lambda: _conv_net(SignSymmetry()),
    # a TP program on an LC net compiles for minutes under Inductor on the CPU: the TP cases use dense nets
    "dtp parallel dense": lambda: _case(spec_for(_dense_tp_net(), rule_of("dtp"), 5)),
    "sdtp alternating dense": lambda: _case(spec_for(_dense_tp_net(), rule_of("sdtp", "alternating"), 6)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_inductor_step_equals_the_fx_step(case):
    spec, shape, classes = CASES[case]()
    x, y = batch(tuple(shape), classes, seed=len(case))
    fx_program = compile_experiment(_with_backend(spec, "fx"))
    program = compile_experiment(_with_backend(spec, "inductor"))
    code_before = {phase: program.phase(phase)[0].code for phase in program.schedule}
    expected = step_outputs(fx_program, x, y)      # each phase's outputs from the same noise
    got = step_outputs(program, x, y)
    _assert_outputs_close(got, expected)
    # the program's own graphs are what FX runs and inspect prints: torch.compile ran a copy
    for phase in program.schedule:
        assert program.phase(phase)[0].code == code_before[phase]
        assert program.phase(phase)[0].code == fx_program.phase(phase)[0].code
    inspected, fx_inspected = dump_text(program).splitlines(), dump_text(fx_program).splitlines()
    assert [line for line in inspected if not line.startswith("# backend")] == fx_inspected
    assert any(line.startswith("# backend 'inductor'") for line in inspected)


def test_the_fx_backend_runs_the_graph_itself():
    spec, _, shape, classes = make_spec(2, "dense", FA())
    program = compile_experiment(spec)
    assert program.backend == "fx"
    assert executable(program.train_graph, "fx", "train") is program.train_graph
    with pytest.raises(ValueError, match="unknown backend"):
        executable(program.train_graph, "tvm", "train")


def test_triton_implementations_stay_opaque_calls():
    """An LC layer lowered to its Triton kernels (the interpreter on the CPU): Inductor calls the kernels as they
    are (wrapped by torch.compiler.disable), and the step equals the FX step with the same kernels."""
    spec, shape, classes = _lc_dense_net()
    x, y = batch(shape, classes, seed=2, size=3)
    program = compile_experiment(spec, prefer=("triton", "reference"))
    triton_nodes = [n for n in program.train_graph.graph.nodes if n.meta.get(META_IMPL) == "triton"]
    assert triton_nodes, "the LC layer should be lowered to its Triton kernels"
    graph = InductorGraph(program.train_graph, "train")
    copied = {n.name: n for n in graph.compiled._orig_mod.graph.nodes}
    for node in triton_nodes:
        wrapped = copied[node.name].target
        assert wrapped is not node.target and getattr(wrapped, "__wrapped__", None) is node.target
    inputs = program.graph_inputs(program.train_signature, x, y)
    with torch.no_grad():
        expected = program.train_graph(*inputs)
        got = graph(*inputs)
    for a, b in zip(got, expected):
        if b is not None:
            torch.testing.assert_close(a, b, **TOLERANCE)


FAILED_COMPILE = """
import sys
import torch._inductor.config as inductor_config
inductor_config.fx_graph_cache = False
inductor_config.cpp.cxx = ("/nonexistent/c++",)
sys.path.insert(0, "tests")
from bpcompile.compiler import compile_experiment
from bpcompile.errors import BpcompileError
from bpcompile.runtime.step import CompiledStep
from bpcompile.spec import FA
from random_nets import batch, make_spec
spec, _, shape, classes = make_spec(21, "dense", FA())
spec = spec.model_copy(update={"train": spec.train.model_copy(update={"backend": "inductor"})})
program = compile_experiment(spec)
x, y = batch(shape, classes, seed=21)
try:
    CompiledStep(program, program.train_graph, program.train_signature, name="train")(x, y)
except BpcompileError as error:
    print(error)
    sys.exit(2)
"""


def test_a_failed_compile_is_one_clear_error(tmp_path):
    """No working C++ compiler (in a child process: Inductor caches what it found): the first step raises a
    BpcompileError naming the graph, the field and the way out."""
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    done = subprocess.run([sys.executable, "-c", FAILED_COMPILE], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=600)
    assert done.returncode == 2, done.stderr[-2000:]
    message = done.stdout.strip()
    assert "train.backend 'inductor'" in message and "train graph" in message and "'fx'" in message
    assert "\n" not in message and "Traceback" not in done.stderr


def test_a_run_under_inductor_follows_the_fx_run(tmp_path):
    """Two epochs through bpcompile.train (the trainer, the optimiser, evaluation), the last batch of each epoch
    shorter (a second compile): the same losses and errors as under FX."""
    spec, _, shape, classes = make_spec(8, "dense", FA(), loss="softmax_cross_entropy")
    raw = json.loads(spec.model_dump_json())
    raw["data"].update(train_size=70, test_size=30, batch_size=32)
    raw["train"].update(epochs=2)
    histories = {}
    for backend in ("fx", "inductor"):
        raw["train"]["backend"] = backend
        result = bpcompile.train(raw, out=tmp_path / backend)
        histories[backend] = [row for row in result.history if row.get("epoch", 0) > 0]
    assert len(histories["fx"]) == len(histories["inductor"]) == 2
    for fx_row, row in zip(histories["fx"], histories["inductor"]):
        assert row["train_loss"] == pytest.approx(fx_row["train_loss"], rel=1e-4)
        assert row["test_loss"] == pytest.approx(fx_row["test_loss"], rel=1e-4)
        assert row["test_error"] == fx_row["test_error"]


def test_batch_norm_statistics_update_in_place_under_inductor():
    """The step graph updates batch norm's running statistics in place (graph inputs): torch.compile keeps those
    writes, so after three steps the buffers equal FX's."""
    layers = [Conv2d(name="conv1", channels=3, kernel=3), BatchNorm(name="bn1"), Activation(fn="relu"), Flatten(),
              Dense(name="out", units=3)]
    x, y = batch((2, 6, 6), 3, seed=9, size=5)
    buffers = {}
    for backend in ("fx", "inductor"):
        spec = ExperimentSpec(name="t", data=Synthetic(input_shape=[2, 6, 6], num_classes=3),
                              network=NetworkSpec(layers=layers), rule=FA(), train=TrainSpec(seed=1, backend=backend))
        program = compile_experiment(spec)
        step = CompiledStep(program, program.train_graph, program.train_signature)
        for _ in range(3):
            step(x, y)
        buffers[backend] = {name: value.clone() for name, value in program.network.named_buffers()}
    assert int(buffers["inductor"]["bn1.num_batches_tracked"]) == 3
    for name, value in buffers["fx"].items():
        torch.testing.assert_close(buffers["inductor"][name], value, **TOLERANCE)
