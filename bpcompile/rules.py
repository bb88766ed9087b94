"""The public rule API: everything a rule of your own needs, in one import (docs/writing-a-rule.md).

    from bpcompile.rules import RulePass, register_rule, SpecModel, ...

A rule is a pydantic spec model (a SpecModel whose `name: Literal["my_rule"] = "my_rule"` selects it in
specs) plus a RulePass subclass decorated with `@register_rule(MySpec)`. The pass's `rewrite(ctx, layers)`
gets the traced training program (ctx: RewriteContext) and the parametric layers it trains; it may add
state (ctx.add_state), retarget or insert nodes (ctx.retarget_weight, ctx.graph), add graph outputs and
graphs, register RuleHooks (what happens around each step) and declare the output kinds it wants kept and
logged (RulePass.kept_outputs). Random draws come from ctx.generator(rule, purpose) or seeded_generator:
one registry of seed streams (compiler/streams.py)."""

from .compiler.program import META_LAYER, META_ROLE, Rewrite, Signature, Slot
from .compiler.rules import registered_rules, rule_entry
from .compiler.rules.base import RewriteContext, RuleHooks, RulePass, ScheduledOptimizer, forward_lr, schedule_factor
from .compiler.rules.registry import RuleEntry, register_rule
from .compiler.streams import seeded_generator, stream_number
from .compiler.trace import nodes_of, placeholders
from .errors import BpcompileError, NotImplementedYet
from .nn.init import init_tensor
from .nn.ops.maps import linear_map, outer, transpose_map
from .plugins import load_plugins
from .spec.base import SpecModel
from .spec.init import InitSpec

__all__ = [
    "BpcompileError", "InitSpec", "META_LAYER", "META_ROLE", "NotImplementedYet", "Rewrite", "RewriteContext", "RuleEntry",
    "RuleHooks", "RulePass", "ScheduledOptimizer", "Signature", "Slot", "SpecModel", "forward_lr", "init_tensor", "linear_map",
    "load_plugins", "nodes_of", "outer", "placeholders", "register_rule", "registered_rules", "rule_entry",
    "schedule_factor", "seeded_generator", "stream_number", "transpose_map",
]
