"""Rule passes over the training graph, and the per-layer rule assignment.

Gradient-family rules are resolved to their parts (source, learning,
topology); each implemented combination maps to one pass module. Anything not
built yet fails here with a clear error, never a silent fallback to BP."""

from dataclasses import dataclass

from ...errors import BpcompileError, NotImplementedYet
from ...spec import TARGET_PROPAGATION_RULES
from .bp import Backprop
from .dfa import DirectFeedbackAlignment, DirectKolenPollack
from .fa import FeedbackAlignment
from .kolen_pollack import KolenPollack
from .sign_symmetry import SignSymmetry
from .target_propagation import check_target_propagation
from .weight_mirror import WeightMirror


@dataclass(frozen=True)
class FeedbackParts:
    source: str      # weight | random | sign | learned
    learning: str    # none | mirror | kolen_pollack
    topology: str    # layerwise | direct


NAMED_PARTS = {
    "bp": FeedbackParts("weight", "none", "layerwise"),
    "fa": FeedbackParts("random", "none", "layerwise"),
    "dfa": FeedbackParts("random", "none", "direct"),
    "sign_symmetry": FeedbackParts("sign", "none", "layerwise"),
    "weight_mirror": FeedbackParts("learned", "mirror", "layerwise"),
    "kolen_pollack": FeedbackParts("learned", "kolen_pollack", "layerwise"),
}

# implemented parts -> pass class
PASSES = {
    FeedbackParts("weight", "none", "layerwise"): Backprop,
    FeedbackParts("random", "none", "layerwise"): FeedbackAlignment,
    FeedbackParts("random", "none", "direct"): DirectFeedbackAlignment,
    FeedbackParts("sign", "none", "layerwise"): SignSymmetry,
    FeedbackParts("learned", "mirror", "layerwise"): WeightMirror,
    FeedbackParts("learned", "kolen_pollack", "layerwise"): KolenPollack,
    FeedbackParts("learned", "kolen_pollack", "direct"): DirectKolenPollack,
}


def parts_of(rule) -> FeedbackParts:
    if rule.name == "feedback":
        return FeedbackParts(rule.source, rule.learning, rule.topology)
    return NAMED_PARTS[rule.name]


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


def check_implemented(spec, network) -> dict[str, object]:
    """Fail early, naming the rule and layer, for anything not built yet."""
    if spec.rule.name in TARGET_PROPAGATION_RULES:
        check_target_propagation(spec, network)
        return {info.name: spec.rule for info in network.layer_table}
    assigned = layer_rules(spec, network)
    for layer, rule in assigned.items():
        parts = parts_of(rule)
        if parts not in PASSES:
            raise NotImplementedYet(
                f"rule {rule.name!r} (source={parts.source}, learning={parts.learning}, topology={parts.topology}) for "
                f"layer {layer!r} is not implemented yet; implemented parts (source, learning, topology): "
                + ", ".join(f"({p.source}, {p.learning}, {p.topology})" for p in PASSES) + "."
            )
    return assigned


def apply_rules(ctx, assigned: dict[str, object]) -> None:
    """Group layers by pass and let each pass rewrite its layers."""
    groups: dict[tuple, list] = {}
    for info in ctx.network.layer_table:
        rule = assigned[info.name]
        key = (PASSES[parts_of(rule)], rule.model_dump_json())
        groups.setdefault(key, (rule, []))[1].append(info)
    for (pass_cls, _), (rule, layers) in groups.items():
        pass_cls(rule).rewrite(ctx, layers)
    ctx.graph.graph.eliminate_dead_code()
    ctx.graph.recompile()
