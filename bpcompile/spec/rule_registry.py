"""Which rule spec models exist, and the spec fields that accept them.

A rule's spec model is a SpecModel whose `name` is a Literal with a default (the discriminator of
`rule` and `rule_overrides[].rule`). The built-in models live in spec/rules.py, so the spec language
loads without the compiler; a plug-in's model is registered when its pass is
(`bpcompile.rules.register_rule`). Registering a model after ExperimentSpec exists rebuilds the
models that hold a rule, so validation, error paths and `bpcompile schema` see it like a built-in.

Families: 'gradient' rules rewrite the traced backward pass and may train single layers
(rule_overrides); 'target_propagation' rules build their own program and train the whole network."""

from typing import Annotated, Literal, Union, get_args, get_origin

from pydantic import Field

FAMILIES = ("gradient", "target_propagation")

_MODELS: dict[str, tuple[type, str]] = {}      # rule name -> (spec model, family), in registration order
_HOLDERS: list[tuple[type, str, str | None]] = []   # (model, field, family or None for all) rebuilt on change


def rule_name_of(model: type) -> str:
    """The `name` a rule spec model is discriminated by; a clear error for a model that has none."""
    field = getattr(model, "model_fields", {}).get("name")
    args = get_args(field.annotation) if field is not None and get_origin(field.annotation) is Literal else ()
    if len(args) != 1 or not isinstance(args[0], str) or field.default != args[0]:
        raise TypeError(
            f"rule spec model {getattr(model, '__name__', model)!r} needs a field `name: Literal[\"my_rule\"] = "
            f"\"my_rule\"` (one string, its own default): it is the discriminator specs select the rule by."
        )
    return args[0]


def register_rule_spec(model: type, family: str) -> str:
    """Add a rule spec model; returns its name. Registering the same model twice is a no-op."""
    from .base import SpecModel

    if not (isinstance(model, type) and issubclass(model, SpecModel)):
        raise TypeError(f"a rule spec model must subclass bpcompile.spec.base.SpecModel (got {model!r})")
    if family not in FAMILIES:
        raise ValueError(f"rule family must be one of {FAMILIES} (got {family!r})")
    name = rule_name_of(model)
    if name in _MODELS:
        if _MODELS[name] == (model, family):
            return name
        raise ValueError(f"rule name {name!r} is already registered by {_MODELS[name][0].__module__}."
                         f"{_MODELS[name][0].__qualname__}; pick another name")
    _MODELS[name] = (model, family)
    _rebuild_holders()
    return name


def unregister_rule_spec(name: str) -> None:
    """Drop a registered rule spec model (tests, or a notebook re-running the cell that defines a rule)."""
    if _MODELS.pop(name, None) is not None:
        _rebuild_holders()


def rule_models(family: str | None = None) -> tuple[type, ...]:
    return tuple(model for model, fam in _MODELS.values() if family is None or fam == family)


def rule_family(name: str) -> str:
    return _MODELS[name][1]


def rule_names(family: str | None = None) -> tuple[str, ...]:
    return tuple(name for name, (_, fam) in _MODELS.items() if family is None or fam == family)


def rule_union(family: str | None = None):
    """The discriminated union of the registered rule models (of one family)."""
    return Annotated[Union[rule_models(family)], Field(discriminator="name")]


def hold_rule_field(model: type, field: str, family: str | None = None) -> None:
    """Keep `model.field` (a rule union) in step with the registry from now on."""
    _HOLDERS.append((model, field, family))


def _rebuild_holders() -> None:
    """Widen every rule field to the registered models; holders are rebuilt in the order they were declared
    (inner models first, so the outer ones embed the new inner schemas)."""
    for model, field, family in _HOLDERS:
        info = model.model_fields[field]
        info.annotation = Union[rule_models(family)]
        info.discriminator = "name"
        model.model_rebuild(force=True)
    if _HOLDERS:
        from . import io       # its cache of the schema's union tags is stale now
        io.clear_schema_caches()
