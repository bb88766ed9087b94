"""Lowering's 'auto' implementation (compiler/timed_choice.py): per shape key, the fastest candidate, timed once
and remembered on disk. Timers are replaced here by fakes (real timings are a GPU benchmark's business); the LC
programs run their Triton candidates through the interpreter."""

import json

import pytest
import torch

from bpcompile.compiler import timed_choice
from bpcompile.compiler.lower import preference
from bpcompile.compiler.timed_choice import FastestOf


@pytest.fixture
def choices_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BPCOMPILE_CACHE_DIR", str(tmp_path / "graphs"))
    timed_choice.forget()
    yield tmp_path
    timed_choice.forget()


def counting_timer(costs, calls):
    """A timer that reports costs[(candidate name, first argument's rows)] and counts its calls."""
    def timer(fn, args):
        calls.append(fn.__name__)
        return costs[(fn.__name__, args[0].shape[0])]
    return timer


def double(x):
    return x * 2


def twice(x):
    return x + x


def test_the_fastest_candidate_per_shape_timed_once_per_shape(choices_dir):
    calls = []
    costs = {("double", 3): 1.0, ("twice", 3): 2.0, ("double", 5): 3.0, ("twice", 5): 0.5}
    op = FastestOf("double_op", {"double": double, "twice": twice}, timer=counting_timer(costs, calls))
    small, large = torch.randn(3, 2), torch.randn(5, 2)
    torch.testing.assert_close(op(small), small * 2)
    torch.testing.assert_close(op(large), large * 2)
    op(small), op(large), op(torch.randn(3, 2))                  # same keys: no timing again
    assert sorted(calls) == ["double", "double", "twice", "twice"]
    chosen = {key.split("|")[-1]: name for key, name in timed_choice.decisions().items()}
    assert chosen == {"(3, 2):float32:c": "double", "(5, 2):float32:c": "twice"}


def test_repeated_calls_skip_the_key(choices_dir, monkeypatch):
    """After the first call with a layout, a call costs a tuple lookup: the string key (and the disk) is not
    consulted again until forget()."""
    op = FastestOf("double_op", {"double": double, "twice": twice}, timer=lambda fn, args: 1.0)
    keys = []
    real_key = FastestOf.key
    monkeypatch.setattr(FastestOf, "key", lambda self, args: keys.append(1) or real_key(self, args))
    x = torch.randn(3)
    for _ in range(4):
        op(x)
    op(torch.randn(4))
    assert len(keys) == 2
    timed_choice.forget()
    op(x)
    assert len(keys) == 3


def test_layout_dtype_and_arguments_are_part_of_the_key(choices_dir):
    op = FastestOf("double_op", {"double": double, "twice": twice}, timer=lambda fn, args: 1.0)
    x = torch.randn(4, 6)
    keys = {op.key((x,)), op.key((x.t(),)), op.key((x.double(),)), op.key((x, 3)), op.key((x, 4))}
    assert len(keys) == 5


def test_choices_persist_across_processes_and_a_bad_file_is_retimed(choices_dir):
    calls = []
    costs = {("double", 3): 2.0, ("twice", 3): 1.0}
    op = FastestOf("double_op", {"double": double, "twice": twice}, timer=counting_timer(costs, calls))
    op(torch.randn(3, 2))
    path = timed_choice.choices_path()
    assert path.parent == choices_dir and list(json.loads(path.read_text()).values()) == ["twice"]

    timed_choice.forget()                                        # a new process: reads the file, times nothing
    calls.clear()
    op = FastestOf("double_op", {"double": double, "twice": twice}, timer=counting_timer(costs, calls))
    op(torch.randn(3, 2))
    assert calls == [] and list(timed_choice.decisions().values()) == ["twice"]

    for bad in ("{not json", json.dumps(["a", "list"]), json.dumps({op.key((torch.randn(3, 2),)): "gone"})):
        path.write_text(bad)                                     # malformed, or naming no candidate: time again
        timed_choice.forget()
        calls.clear()
        op(torch.randn(3, 2))
        assert sorted(calls) == ["double", "twice"]
        assert list(json.loads(path.read_text()).values()) == ["twice"]


def test_a_failing_candidate_is_left_out_loudly_and_all_failing_raises(choices_dir):
    def broken(x):
        raise RuntimeError("no kernel for this shape")

    def timer(fn, args):
        fn(*args)
        return 1.0

    op = FastestOf("double_op", {"broken": broken, "double": double}, timer=timer)
    with pytest.warns(RuntimeWarning, match="double_op: implementation 'broken' failed at shapes .*no kernel"):
        torch.testing.assert_close(op(torch.ones(2)), torch.full((2,), 2.0))
    with pytest.raises(RuntimeError, match="no kernel"):
        FastestOf("broken_op", {"broken": broken}, timer=timer)(torch.ones(3))


def test_without_a_cache_directory_choices_live_in_the_process(monkeypatch):
    monkeypatch.setenv("BPCOMPILE_GRAPH_CACHE", "0")
    timed_choice.forget()
    try:
        op = FastestOf("double_op", {"double": double, "twice": twice}, timer=lambda fn, args: len(fn.__name__))
        op(torch.randn(2))
        assert timed_choice.choices_path() is None
        assert list(timed_choice.decisions().values()) == ["twice"]     # the shorter name "ran" faster
    finally:
        timed_choice.forget()


def test_the_default_timer_times_a_cpu_call():
    assert timed_choice.time_ms(torch.mm, (torch.randn(8, 8), torch.randn(8, 8))) > 0


def test_preference_by_device_and_environment(monkeypatch):
    monkeypatch.delenv("BPCOMPILE_IMPL", raising=False)
    assert preference(torch.device("cpu")) == ("reference",)
    assert preference(torch.device("cuda")) == ("auto", "triton", "reference")
    monkeypatch.setenv("BPCOMPILE_IMPL", "triton")
    assert preference(torch.device("cuda")) == ("triton", "reference")
    monkeypatch.setenv("BPCOMPILE_IMPL", "reference")
    assert preference(torch.device("cuda")) == ("reference",)


triton = pytest.importorskip("triton")


@pytest.mark.parametrize("rule_name", ["fa", "sign_symmetry"])
def test_auto_lowered_lc_programs_compute_the_reference_updates(rule_name, choices_dir, monkeypatch):
    """Each LC op under 'auto' takes the candidate the timer calls fastest -- here the Triton forward, the input
    gradients' stride-cell kernel reading grad_out channels-last, the reference weight gradients -- and the step
    equals the reference's."""
    from bpcompile.compiler import compile_experiment
    from bpcompile.spec import FA, SignSymmetry
    from random_nets import batch, make_spec, run_graph

    rule = FA() if rule_name == "fa" else SignSymmetry()
    seed = next(s for s in range(100) if sum(layer[0] == "lc" for layer in make_spec(s, "lc", rule)[1]) >= 2)
    spec, _, shape, classes = make_spec(seed, "lc", rule)
    timed = []

    def timer(fn, args):
        name = getattr(fn, "__name__", "")
        timed.append(name)
        if "input" in name:
            return 0.25 if "cells" in name and name.endswith("_cl") else 0.5 if name.endswith("_cl") else 2.0
        prefers_triton = "weight" not in name
        return 1.0 if ("reference" not in name) == prefers_triton else 2.0

    monkeypatch.setattr(timed_choice, "time_ms", timer)
    reference = compile_experiment(spec)
    auto = compile_experiment(spec, prefer=("auto", "triton", "reference"))
    impls = {n.meta.get("bpcompile_impl") for n in auto.train_graph.graph.nodes
             if n.meta.get("bpcompile_layer", "").startswith("lc")}
    assert impls <= {"auto", "auto (sign fused)"} and "auto" in impls
    assert ("auto (sign fused)" in impls) == (rule_name == "sign_symmetry")
    x, y = batch(shape, classes, seed)
    expected, actual = run_graph(reference, x, y), run_graph(auto, x, y)
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, rtol=1e-4, atol=1e-5)
    chosen = set(timed_choice.decisions().values())
    assert chosen == {"triton", "triton, stride cells, grad_out channels-last", "reference"} and timed
