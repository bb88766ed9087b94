"""The compiled training graph against independent references.

BP: the compiled gradients equal torch.autograd's through a plain network.
FA: they equal a hand-written FA backward (plain_nets.feedback_grads) using
the program's feedback tensors, and differ from BP's below the top layer.
Random dense, locally connected and conv nets, random losses."""

import pytest
import torch

from bpcompile.compiler import compile_experiment
from bpcompile.errors import BpcompileError, NotImplementedYet
from bpcompile.spec import BP, DTP, FA, Feedback, RuleOverride
from plain_nets import bp_grads, feedback_grads, forward, rel_error
from random_nets import batch, make_spec, run_graph

TOL = 1e-5


@pytest.mark.parametrize("kind", ["dense", "lc", "conv"])
@pytest.mark.parametrize("seed", range(6))
def test_bp_gradients_equal_autograd(kind, seed):
    spec, plain, shape, classes = make_spec(seed, kind, BP())
    program = compile_experiment(spec)
    params = {k: v.detach() for k, v in program.network.named_parameters()}
    x, y = batch(shape, classes, seed)
    out = run_graph(program, x, y)
    expected = bp_grads(plain, params, x, y, spec.loss)
    assert set(expected) == {s.name for s in program.train_signature.outputs if s.kind == "grad"}
    for name, grad in expected.items():
        assert rel_error(out[name], grad) <= TOL, name
    torch.testing.assert_close(out["logits"], forward(plain, params, x), rtol=1e-5, atol=1e-6)
    assert not program.rewrites and not program.state


@pytest.mark.parametrize("kind", ["dense", "lc", "conv"])
@pytest.mark.parametrize("seed", range(6))
def test_fa_gradients_equal_hand_written_fa_and_differ_from_bp(kind, seed):
    spec, plain, shape, classes = make_spec(seed, kind, FA())
    program = compile_experiment(spec)
    params = {k: v.detach() for k, v in program.network.named_parameters()}
    feedback = {k.removesuffix(".feedback"): v for k, v in program.state.items()}
    parametric = [layer[1] for layer in plain if layer[0] in ("dense", "lc", "conv")]
    # every layer but the first carries errors back, so every layer but the first has a B
    assert sorted(feedback) == sorted(parametric[1:])
    for name, b in feedback.items():
        assert b.shape == params[f"{name}.weight"].shape and not torch.equal(b, params[f"{name}.weight"])
    x, y = batch(shape, classes, seed)
    out = run_graph(program, x, y)
    expected = feedback_grads(plain, params, feedback, x, y, spec.loss)
    for name, grad in expected.items():
        assert rel_error(out[name], grad) <= TOL, name
    true = bp_grads(plain, params, x, y, spec.loss)
    # the top layer's update is the same under FA; every layer below it gets a different one
    assert rel_error(out["out.weight"], true["out.weight"]) <= TOL
    for name in parametric[:-1]:
        assert rel_error(out[f"{name}.weight"], true[f"{name}.weight"]) > 1e-3, name


def test_fa_rewrites_exactly_the_live_input_gradient_nodes():
    spec, plain, *_ = make_spec(1, "lc", FA())
    program = compile_experiment(spec)
    parametric = [layer[1] for layer in plain if layer[0] in ("dense", "lc", "conv")]
    assert sorted(r.layer for r in program.rewrites) == sorted(parametric[1:])
    code = program.train_graph.code
    for name in parametric[1:]:
        assert f"{name}_feedback" in code
    # no grad_input node reads a forward weight any more
    for node in program.train_graph.graph.nodes:
        if node.meta.get("bpcompile_role") == "grad_input":
            assert node.args[1].name.endswith("_feedback")


def test_graph_serves_any_batch_size():
    spec, plain, shape, classes = make_spec(2, "lc", FA(), loss="softmax_cross_entropy")
    program = compile_experiment(spec)
    params = {k: v.detach() for k, v in program.network.named_parameters()}
    feedback = {k.removesuffix(".feedback"): v for k, v in program.state.items()}
    for size in (1, 3, 64):
        x, y = batch(shape, classes, 2, size=size)
        out = run_graph(program, x, y)
        for name, grad in feedback_grads(plain, params, feedback, x, y, spec.loss).items():
            assert rel_error(out[name], grad) <= TOL
        logits = program.eval_graph(*program.graph_inputs(program.eval_signature, x))[0]
        torch.testing.assert_close(logits, forward(plain, params, x), rtol=1e-5, atol=1e-6)


def test_per_layer_override_trains_named_layers_with_bp():
    spec, plain, shape, classes = make_spec(4, "dense", FA(), overrides=[RuleOverride(layers=["out"], rule=BP())])
    program = compile_experiment(spec)
    assert program.layer_rules["out"] == "bp" and "out.feedback" not in program.state
    params = {k: v.detach() for k, v in program.network.named_parameters()}
    feedback = {k.removesuffix(".feedback"): v for k, v in program.state.items()}
    x, y = batch(shape, classes, 4)
    out = run_graph(program, x, y)
    for name, grad in feedback_grads(plain, params, feedback, x, y, spec.loss).items():
        assert rel_error(out[name], grad) <= TOL


def test_feedback_parts_give_the_same_program_as_the_named_rule():
    named, *_ = make_spec(5, "dense", FA())
    parts, *_ = make_spec(5, "dense", Feedback(source="random"))
    a, b = compile_experiment(named), compile_experiment(parts)
    assert a.train_graph.code == b.train_graph.code
    for name in a.state:
        assert torch.equal(a.state[name], b.state[name])


def test_override_naming_a_missing_layer_fails_naming_both():
    spec, *_ = make_spec(0, "dense", FA(), overrides=[RuleOverride(layers=["nope"], rule=BP())])
    with pytest.raises(BpcompileError, match=r"rule_overrides\[0\].layers names layer 'nope' \(rule 'bp'\)"):
        compile_experiment(spec)


def test_features_not_built_yet_fail_at_compile_time():
    """bf16 and channels-last are built for the gradient-family rules, not yet for target propagation."""
    spec, *_ = make_spec(0, "dense", DTP())
    for update in ({"precision": "bf16"}, {"channels_last": True}):
        bad = spec.model_copy(update={"train": spec.train.model_copy(update=update)})
        with pytest.raises(NotImplementedYet, match="rule 'dtp' \\(target propagation\\)"):
            compile_experiment(bad)



def test_same_seed_gives_same_forward_weights_under_bp_and_fa():
    bp, *_ = make_spec(3, "lc", BP())
    fa, *_ = make_spec(3, "lc", FA())
    a = dict(compile_experiment(bp).network.named_parameters())
    b = dict(compile_experiment(fa).network.named_parameters())
    for name in a:
        assert torch.equal(a[name], b[name])


# ---- the pipeline's checks between stages ------------------------------------------------------------

def _traced(kind="lc"):
    from bpcompile.compiler.trace import trace_training_graph
    from bpcompile.nn import build_network

    spec, *_ = make_spec(7, kind, FA())
    network = build_network(spec.network, tuple(spec.data.input_shape), spec.data.num_classes, 0)
    return trace_training_graph(network, spec.loss, False)


def test_graph_checks_catch_what_a_broken_stage_leaves():
    import copy

    from bpcompile.compiler.graph_checks import CompilerInvariantError, check_lowered, check_signature, check_tagged
    from bpcompile.compiler.lower import lower
    from bpcompile.compiler.program import META_LAYER

    graph, signature = _traced()
    check_signature(graph, signature, "train", "trace")
    check_tagged(graph, "train", "trace")
    with pytest.raises(CompilerInvariantError, match="after lowering, graph 'train': node .* still calls the custom op"):
        check_lowered(graph, "train")
    lowered = copy.deepcopy(graph)
    lower(lowered, torch.device("cpu"))
    check_lowered(lowered, "train")
    extra = copy.deepcopy(graph)
    first = next(n for n in extra.graph.nodes if n.op == "placeholder")
    with extra.graph.inserting_before(first):
        extra.graph.placeholder("stray")
    with pytest.raises(CompilerInvariantError, match="placeholders but"):
        check_signature(extra, signature, "train", "the rule passes")
    untagged = copy.deepcopy(graph)
    node = next(n for n in untagged.graph.nodes if "grad_input" in str(n.target))
    del node.meta[META_LAYER]
    with pytest.raises(CompilerInvariantError, match="has no layer tag"):
        check_tagged(untagged, "train", "the rule passes")


def test_a_missing_triton_on_cuda_is_loud_never_silent(monkeypatch):
    import importlib

    lowering = importlib.import_module("bpcompile.compiler.lower")    # the package exports the function `lower`
    monkeypatch.setattr(lowering, "load_triton_implementations", lambda: False)
    monkeypatch.setattr(lowering, "_WARNED", [])
    graph, _ = _traced()
    with pytest.warns(RuntimeWarning, match="triton cannot be imported"):
        lowering.lower(graph, torch.device("cuda"))      # lowering only picks functions: no GPU needed
    monkeypatch.setenv("BPCOMPILE_IMPL", "triton")
    with pytest.raises(BpcompileError, match="BPCOMPILE_IMPL=triton"):
        lowering.lower(_traced()[0], torch.device("cuda"))


def test_a_layer_type_without_an_op_family_is_an_error():
    from types import SimpleNamespace

    from bpcompile.nn.ops.maps import linear_map

    info = SimpleNamespace(name="odd", type="hexagonal", geometry={})
    with pytest.raises(BpcompileError, match="layer 'odd' has type 'hexagonal', which has no op family"):
        linear_map(info, torch.zeros(1, 2), torch.zeros(2, 2))
