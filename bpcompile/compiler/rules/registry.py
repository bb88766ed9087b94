"""The rules the compiler knows: each pass class registers itself with its spec model.

    @register_rule(MyRuleSpec)                 # family='gradient' (the default) or 'target_propagation'
    class MyRule(RulePass):
        def rewrite(self, ctx, layers): ...

Registering adds the spec model to the spec language (spec/rule_registry.py: `rule` and
`rule_overrides[].rule` accept it, `bpcompile schema` shows it) and the pass to the compiler. The core
looks rules up here by the spec's `name`; it never names a rule itself."""

from dataclasses import dataclass

from ...errors import BpcompileError
from ...spec.rule_registry import register_rule_spec, rule_names


@dataclass(frozen=True)
class RuleEntry:
    name: str           # the spec's discriminator
    spec: type          # the pydantic spec model
    rule_pass: type     # the RulePass subclass
    family: str         # 'gradient' | 'target_propagation'
    source: str         # the module that registered it (a plug-in's file shows here)


_ENTRIES: dict[str, RuleEntry] = {}


def register_rule(spec_model: type, family: str = "gradient"):
    """Class decorator: register `spec_model` and the decorated RulePass subclass as one rule."""
    from .base import RulePass

    def decorate(pass_class: type) -> type:
        if not (isinstance(pass_class, type) and issubclass(pass_class, RulePass)):
            raise TypeError(f"@register_rule decorates a RulePass subclass (got {pass_class!r})")
        name = register_rule_spec(spec_model, family)
        entry = RuleEntry(name, spec_model, pass_class, family, pass_class.__module__)
        if name in _ENTRIES and _ENTRIES[name].rule_pass is not pass_class:
            old = _ENTRIES[name].rule_pass
            raise ValueError(f"rule {name!r} already has the pass {old.__module__}.{old.__qualname__}")
        pass_class.name, pass_class.family = name, family
        _ENTRIES[name] = entry
        return pass_class

    return decorate


def registered_rules(family: str | None = None) -> tuple[RuleEntry, ...]:
    return tuple(e for e in _ENTRIES.values() if family is None or e.family == family)


def rule_entry(name: str) -> RuleEntry:
    """The entry of a rule name; a clear error for a spec model registered without a pass."""
    if name not in _ENTRIES:
        raise BpcompileError(
            f"rule {name!r} has a spec model but no registered pass (known rules: {', '.join(rule_names())}); "
            f"a plug-in registers both with @register_rule on its pass class."
        )
    return _ENTRIES[name]


def pass_for(rule_spec):
    """The pass instance that trains layers with `rule_spec` (a parts rule may resolve to another pass)."""
    return rule_entry(rule_spec.name).rule_pass.for_spec(rule_spec)
