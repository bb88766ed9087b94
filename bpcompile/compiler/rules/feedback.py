"""Rule 'feedback': a gradient-family rule stated by its parts (source, learning, topology).

It owns no rewrite of its own: each implemented combination of parts is one of the named rules' passes
(or direct Kolen-Pollack, which only this rule reaches), built with the 'feedback' spec's options."""

from dataclasses import dataclass

from ...errors import NotImplementedYet
from ...spec import Feedback
from .base import RulePass
from .bp import Backprop
from .dfa import DirectFeedbackAlignment
from .direct_kolen_pollack import DirectKolenPollack
from .fa import FeedbackAlignment
from .kolen_pollack import KolenPollack
from .registry import register_rule
from .sign_symmetry import SignSymmetry
from .weight_mirror import WeightMirror


@dataclass(frozen=True)
class FeedbackParts:
    source: str      # weight | random | sign | learned
    learning: str    # none | mirror | kolen_pollack
    topology: str    # layerwise | direct


PASSES = {
    FeedbackParts("weight", "none", "layerwise"): Backprop,
    FeedbackParts("random", "none", "layerwise"): FeedbackAlignment,
    FeedbackParts("random", "none", "direct"): DirectFeedbackAlignment,
    FeedbackParts("sign", "none", "layerwise"): SignSymmetry,
    FeedbackParts("learned", "mirror", "layerwise"): WeightMirror,
    FeedbackParts("learned", "kolen_pollack", "layerwise"): KolenPollack,
    FeedbackParts("learned", "kolen_pollack", "direct"): DirectKolenPollack,
}


@register_rule(Feedback)
class FeedbackByParts(RulePass):
    @classmethod
    def for_spec(cls, spec) -> RulePass:
        parts = FeedbackParts(spec.source, spec.learning, spec.topology)
        if parts not in PASSES:
            raise NotImplementedYet(
                f"rule 'feedback' with source={parts.source}, learning={parts.learning}, topology={parts.topology} "
                f"is not implemented yet; implemented parts (source, learning, topology): "
                + ", ".join(f"({p.source}, {p.learning}, {p.topology})" for p in PASSES) + "."
            )
        return PASSES[parts](spec)
