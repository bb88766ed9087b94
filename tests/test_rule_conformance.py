"""One suite over every registered rule (the built-ins and the plug-ins of examples/rules/): a compiled
step against the rule's plain reference on random dense, locally connected and conv nets; and every
registered rule in the resume table (test_cli.py: resume equals an uninterrupted run) and the torchrun
table (test_distributed.py: two processes equal one).

A new rule joins this suite by registering itself; it must bring its plain reference here (REFERENCES),
or the first test fails naming it. The references are independent of the compiler: plain_nets.py's
hand-written feedback backward pass (B read off the rule's state, the stand-in for W as its hooks report
it) and plain_tp.py's target-propagation step."""

from pathlib import Path

import pytest
import torch

from bpcompile.compiler import compile_experiment
from bpcompile.compiler.rules import registered_rules, rule_entry
from bpcompile.plugins import load_plugin_file
from bpcompile.spec import SGD
from plain_nets import feedback_grads, rel_error
from random_nets import batch, make_spec, run_graph
from test_target_propagation import INVERSE_LR, LR, check_step

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples" / "rules").glob("*.py"))
for _example in EXAMPLES:
    load_plugin_file(_example)


def layerwise_feedback(program, plain, x, y, loss):
    """Errors cross each layer through the tensor the rule's hooks report standing in for W (BP: W itself)."""
    feedback = {}
    for hook in program.hooks:
        feedback.update(hook.feedback_tensors())
    params = dict(program.network.named_parameters())
    return feedback_grads(plain, params, feedback, x, y, loss)


def direct_feedback(program, plain, x, y, loss):
    """DFA: the output error reaches each layer's input through its B (classes x input features)."""
    direct = {name.removesuffix(".feedback"): b for name, b in program.state.items()}
    return feedback_grads(plain, dict(program.network.named_parameters()), {}, x, y, loss, direct=direct)


GRADIENT_REFERENCES = {
    "bp": layerwise_feedback, "fa": layerwise_feedback, "sign_symmetry": layerwise_feedback,
    "weight_mirror": layerwise_feedback, "kolen_pollack": layerwise_feedback, "feedback": layerwise_feedback,
    "dfa": direct_feedback, "fa_redrawn": layerwise_feedback,
}
TARGET_PROPAGATION_REFERENCES = {"tp", "dtp", "sdtp", "ao_sdtp"}      # plain_tp.tp_step, through check_step
NAMES = [entry.name for entry in registered_rules()]


@pytest.fixture(autouse=True)
def float64():
    """As test_target_propagation.py: DTP's difference corrections cancel, so compare in float64."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def test_every_registered_rule_has_a_plain_reference():
    missing = set(NAMES) - set(GRADIENT_REFERENCES) - TARGET_PROPAGATION_REFERENCES
    assert not missing, f"registered rules without a plain reference in this suite: {sorted(missing)}"
    assert {"fa_redrawn"} <= set(NAMES)       # the example plug-ins are in the suite


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind,seed", [("dense", 31), ("lc", 32), ("conv", 33)])
def test_one_step_equals_the_plain_reference(name, kind, seed):
    rule = rule_entry(name).spec()                       # the rule's defaults: what a spec naming it gets
    if rule_entry(name).family == "target_propagation":
        rule = rule.model_copy(update={"inverse_optimizer": SGD(lr=INVERSE_LR, momentum=0.0)})
        spec, plain, shape, classes = make_spec(seed, kind, rule)
        check_step(spec.model_copy(update={"optimizer": SGD(lr=LR, momentum=0.0)}), plain, shape, classes, seed)
        return
    spec, plain, shape, classes = make_spec(seed, kind, rule)
    program = compile_experiment(spec)
    x, y = batch(shape, classes, seed)
    got = run_graph(program, x, y)
    expected = GRADIENT_REFERENCES[name](program, plain, x, y, spec.loss)
    for param, grad in expected.items():
        assert rel_error(got[param], grad) < 1e-6, (name, kind, param)


def test_every_registered_rule_is_resumed_and_run_under_torchrun():
    from test_cli import RESUME_RULES
    from test_distributed import RULES

    def names(table):
        return {rule if isinstance(rule, str) else rule["name"] for rule in table.values()}

    assert set(NAMES) <= names(RESUME_RULES), sorted(set(NAMES) - names(RESUME_RULES))
    assert set(NAMES) <= names(RULES), sorted(set(NAMES) - names(RULES))
