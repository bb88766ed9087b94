"""Rules of your own: the example plug-in (examples/rules/fa_redrawn.py) run from outside the repository,
its behaviour against FA and its own equations, and the errors of bad plug-ins and bad specs. (Its resume
and torchrun runs are in the registry-wide tables of test_cli.py and test_distributed.py.)"""

import json
from pathlib import Path

import pytest
import torch

from bpcompile.compiler import compile_experiment
from bpcompile.errors import BpcompileError
from bpcompile.optim import build_optimizer
from bpcompile.plugins import load_plugin_file
from bpcompile.runtime.step import RuleStep
from bpcompile.spec import FA, SGD, ExperimentSpec
from bpcompile.spec.rule_registry import register_rule_spec, unregister_rule_spec
from plain_nets import feedback_grads, rel_error
from random_nets import batch, make_spec
from test_cli import assert_user_error, bpc

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "rules"
PLUGIN, SPEC = EXAMPLE / "fa_redrawn.py", EXAMPLE / "fa_redrawn.json"
FARedrawn = load_plugin_file(PLUGIN).FARedrawn


def test_the_example_runs_and_inspects_from_outside_the_repository(tmp_path):
    dry = bpc("run", SPEC, "--plugin", PLUGIN, "--dry-run", "2", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "rule fa_redrawn" in dry.stderr and "step 2: loss" in dry.stderr
    shown = bpc("inspect", SPEC, "--plugin", PLUGIN, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "fc2_feedback: state fc2.feedback" in shown.stdout
    assert "fa_redrawn: reads fc2.feedback (B, re-drawn) instead of fc2.weight (W)" in shown.stdout
    assert bpc("validate", SPEC, "--plugin", PLUGIN, cwd=tmp_path).returncode == 0
    # without the plug-in the spec's rule is unknown: the error says how to load one
    assert_user_error(bpc("validate", SPEC, cwd=tmp_path), "field `rule`", "'fa_redrawn'", "--plugin")


def test_schema_and_field_errors_include_the_plug_in(tmp_path):
    schema = bpc("schema", "--plugin", PLUGIN, cwd=tmp_path)
    assert schema.returncode == 0, schema.stderr
    assert "FARedrawn" in json.loads(schema.stdout)["$defs"]
    assert "FARedrawn" not in json.loads(bpc("schema", cwd=tmp_path).stdout)["$defs"]
    bad = bpc("validate", SPEC, "--plugin", PLUGIN, "--set", "rule.every=0", cwd=tmp_path)
    assert_user_error(bad, "field `rule.every`", "greater than or equal to 1")


def test_feedback_is_fas_until_the_redraw_and_every_step_is_fa_with_the_current_b():
    spec, plain, shape, classes = make_spec(41, "dense", FARedrawn(every=2))
    spec = spec.model_copy(update={"optimizer": SGD(lr=0.1, momentum=0.0)})
    program = compile_experiment(spec)
    fa_state = compile_experiment(spec.model_copy(update={"rule": FA()})).state
    assert program.state and all(torch.equal(program.state[n], fa_state[n]) for n in fa_state)
    step = RuleStep(program, build_optimizer(spec.optimizer, program.network.parameters()))
    params = dict(program.network.named_parameters())
    history = []
    for i in range(5):
        x, y = batch(shape, classes, 41 + i)
        before_b = {name.removesuffix(".feedback"): b.clone() for name, b in program.state.items()}
        before_w = {name: p.detach().clone() for name, p in params.items()}
        step(x, y)
        expected = feedback_grads(plain, before_w, before_b, x, y, spec.loss)
        for name, grad in expected.items():
            assert rel_error(params[name].grad, grad) < 1e-5, (i, name)
        history.append({name: b.clone() for name, b in program.state.items()})
    redrawn = [any(not torch.equal(history[i][n], (history[i - 1] if i else fa_state)[n]) for n in fa_state)
               for i in range(5)]
    assert redrawn == [False, True, False, True, False]      # after steps 2 and 4
    for name, b in history[1].items():                       # a fresh draw by W's law (glorot uniform here)
        info = program.network.layer(name.removesuffix(".feedback"))
        bound = (6.0 / (info.fan_in + info.fan_out)) ** 0.5
        assert float(b.abs().max()) <= bound and float(b.abs().max()) > 0.5 * bound


@pytest.mark.parametrize("text,needles", [
    ("def broken(:\n", ["bad_plugin.py failed to load (line 1)", "SyntaxError"]),
    ("x = 1\nraise RuntimeError('no GPU here')\n", ["bad_plugin.py failed to load (line 2)", "no GPU here"]),
    ("from bpcompile.rules import register_rule, RulePass, SpecModel\n"
     "class Nameless(SpecModel):\n    every: int = 1\n"
     "@register_rule(Nameless)\nclass P(RulePass):\n    pass\n", ["needs a field `name: Literal"]),
    ("from typing import Literal\nfrom bpcompile.rules import register_rule, RulePass, SpecModel\n"
     "class Again(SpecModel):\n    name: Literal['fa'] = 'fa'\n"
     "@register_rule(Again)\nclass P(RulePass):\n    pass\n", ["rule name 'fa' is already registered"]),
])
def test_a_bad_plug_in_is_one_paragraph_naming_the_file(tmp_path, text, needles):
    plugin = tmp_path / "bad_plugin.py"
    plugin.write_text(text)
    assert_user_error(bpc("validate", SPEC, "--plugin", plugin, cwd=tmp_path), *needles)


def test_a_missing_plug_in_file_is_named():
    assert_user_error(bpc("run", SPEC, "--plugin", "missing.py"), "--plugin missing.py: no such file")


def test_registering_rebuilds_the_spec_models_and_refuses_duplicates():
    from typing import Literal

    from bpcompile.spec.base import SpecModel

    class Probe(SpecModel):
        name: Literal["conformance_probe"] = "conformance_probe"

    register_rule_spec(Probe, "gradient")
    try:
        register_rule_spec(Probe, "gradient")                  # the same model again: a no-op
        raw = json.loads(SPEC.read_text()) | {"rule": {"name": "conformance_probe"}}
        assert isinstance(ExperimentSpec.model_validate(raw).rule, Probe)
        with pytest.raises(ValueError, match="already registered"):
            register_rule_spec(type("Other", (Probe,), {}), "gradient")
        with pytest.raises(BpcompileError, match="no registered pass"):   # a spec model alone cannot compile
            compile_experiment(ExperimentSpec.model_validate(raw))
    finally:
        unregister_rule_spec("conformance_probe")
    with pytest.raises(Exception, match="conformance_probe"):
        ExperimentSpec.model_validate(raw)


def test_installed_plug_ins_load_from_the_entry_point_group(monkeypatch):
    from importlib.metadata import EntryPoint

    import bpcompile.plugins as plugins

    group = plugins.ENTRY_POINT_GROUP
    good = EntryPoint(name="built_in_fa", value="bpcompile.compiler.rules.fa", group=group)
    monkeypatch.setattr(plugins, "_ENTRY_POINTS_LOADED", False)
    monkeypatch.setattr(plugins, "entry_points", lambda group: [good] if group == plugins.ENTRY_POINT_GROUP else [])
    assert plugins.load_entry_point_plugins() == ["built_in_fa"]
    bad = EntryPoint(name="lost", value="no_such_rule_package.rule", group=group)
    monkeypatch.setattr(plugins, "_ENTRY_POINTS_LOADED", False)
    monkeypatch.setattr(plugins, "entry_points", lambda group: [bad])
    with pytest.raises(BpcompileError, match="installed plug-in 'lost' .* failed to load: ModuleNotFoundError"):
        plugins.load_entry_point_plugins()


BROKEN_REWRITE = """from typing import Literal
from bpcompile.rules import RulePass, SpecModel, register_rule


class Stray(SpecModel):
    name: Literal["stray_input"] = "stray_input"


@register_rule(Stray)
class StrayPass(RulePass):
    def rewrite(self, ctx, layers):
        first = next(n for n in ctx.graph.graph.nodes if n.op == "placeholder")
        with ctx.graph.graph.inserting_before(first):
            ctx.graph.graph.placeholder("stray")     # a graph input the signature does not list
"""


def test_validate_compile_runs_the_pipeline_and_its_checks(tmp_path):
    plugin = tmp_path / "stray.py"
    plugin.write_text(BROKEN_REWRITE)
    spec = tmp_path / "stray.json"
    spec.write_text(json.dumps(json.loads(SPEC.read_text()) | {"rule": {"name": "stray_input"}}))
    # the default validate plans the network and checks the rules' layers; it runs no rewrite
    assert bpc("validate", spec, "--plugin", plugin).returncode == 0
    assert_user_error(bpc("validate", spec, "--plugin", plugin, "--compile"),
                      "after the rule passes, graph 'train'", "placeholders but", "input slots")
    assert bpc("validate", SPEC, "--plugin", PLUGIN, "--compile").returncode == 0
