"""Rule passes over the training graph, and the per-layer rule assignment.

Importing this package registers the built-in rules (one module each); plug-ins register theirs with
the same decorator (bpcompile.rules, bpcompile/plugins.py). The core finds a rule's pass by its spec's
name in the registry (rules/registry.py) and never names a rule itself."""

from ...errors import BpcompileError, NotImplementedYet
from . import ao_sdtp, bp, dfa, dtp, fa, feedback, kolen_pollack, sdtp, sign_symmetry, tp, weight_mirror  # noqa: F401
from .registry import pass_for, register_rule, registered_rules, rule_entry

__all__ = ["apply_rules", "check_implemented", "layer_rules", "pass_for", "program_pass", "register_rule",
           "registered_rules", "rule_entry"]


def layer_rules(spec, network) -> dict[str, object]:
    """The rule spec that trains each parametric layer, after `rule_overrides`."""
    names = [info.name for info in network.layer_table]
    assigned = {name: spec.rule for name in names}
    others = {name: type(module).__name__ for name, module in network.named_modules() if name}
    for i, override in enumerate(spec.rule_overrides):
        for layer in override.layers:
            if layer not in assigned and layer in others:
                raise BpcompileError(
                    f"rule_overrides[{i}].layers names layer {layer!r} for rule {override.rule.name!r}, but {layer!r} is "
                    f"a {others[layer]} layer: rules train parametric layers only (dense, locally_connected, "
                    f"conv2d); the network's are: {', '.join(names)}."
                )
            if layer not in assigned:
                raise BpcompileError(
                    f"rule_overrides[{i}].layers names layer {layer!r} (rule {override.rule.name!r}), which the network "
                    f"does not have; its parametric layers are: {', '.join(names)}."
                )
            assigned[layer] = override.rule
    return assigned


def program_pass(spec):
    """The pass that builds the whole program (a non-gradient family rule), or None for gradient rules."""
    entry = rule_entry(spec.rule.name)
    return None if entry.family == "gradient" else pass_for(spec.rule)


def _grouped(spec, network, assigned) -> list[tuple[object, list]]:
    """(pass, the layers it trains), one per distinct rule spec, in layer order."""
    groups: dict[tuple, tuple] = {}
    for info in network.layer_table:
        rule = assigned[info.name]
        try:
            rule_pass = pass_for(rule)
        except NotImplementedYet as error:
            raise NotImplementedYet(f"{error} (layer {info.name!r})") from None
        key = (type(rule_pass), rule.model_dump_json())
        groups.setdefault(key, (rule_pass, []))[1].append(info)
    return list(groups.values())


def check_implemented(spec, network) -> dict[str, object]:
    """Fail early, naming the rule and layer, for anything a rule cannot train; returns the rule per layer."""
    whole = program_pass(spec)
    if whole is not None:
        whole.check(spec, network, network.layer_table)
        return {info.name: spec.rule for info in network.layer_table}
    assigned = layer_rules(spec, network)
    for rule_pass, layers in _grouped(spec, network, assigned):
        rule_pass.check(spec, network, layers)
    return assigned


def apply_rules(ctx, assigned: dict[str, object]) -> None:
    """Group layers by pass and let each pass rewrite its layers."""
    for rule_pass, layers in _grouped(ctx.spec, ctx.network, assigned):
        rule_pass.rewrite(ctx, layers)
    ctx.graph.graph.eliminate_dead_code()
    ctx.graph.recompile()


def state_elements(spec, network) -> int:
    """Elements of every rule's state tensors (for the size budget); layers named by no override are the
    main rule's (bad override names are reported later, by layer_rules)."""
    whole = program_pass(spec)
    if whole is not None:
        return whole.state_elements(network, network.layer_table)
    layers = {info.name: info for info in network.layer_table}
    assigned = {name: spec.rule for name in layers}
    for override in spec.rule_overrides:
        assigned.update({name: override.rule for name in override.layers if name in layers})
    total = 0
    for info in network.layer_table:
        try:
            total += pass_for(assigned[info.name]).state_elements(network, [info])
        except NotImplementedYet:
            pass        # reported, naming the layer, by check_implemented
    return total
