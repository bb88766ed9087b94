"""Credit-assignment rules (discriminated by `name`).

Gradient-family rules differ only in the feedback path: what stands in for W^T
when an error crosses a layer (`source`), whether that stand-in learns
(`learning`) and where errors come from (`topology`). The named rules (bp, fa,
dfa, sign_symmetry, weight_mirror, kolen_pollack) are presets of these parts;
`feedback` states the parts directly, so combinations no paper ran can be tried.

Target-propagation rules (tp, dtp, sdtp, ao_sdtp) replace gradients that cross
layers with targets computed by learned inverses, and have their own
inverse optimiser and schedule.

These are the built-in rules' spec models; each is registered here (spec/rule_registry.py) and its pass
registers itself in compiler/rules/<rule>.py. A plug-in rule keeps both in one file.
"""

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, model_validator

from .base import SpecModel
from .init import InitSpec
from .optim import Adam, OptimizerSpec
from .rule_registry import hold_rule_field, register_rule_spec, rule_union


class BP(SpecModel):
    """Backpropagation: the error crosses layer l through W_l^T."""

    name: Literal["bp"] = "bp"


class _RandomFeedback(SpecModel):
    feedback_init: Optional[InitSpec] = Field(
        None, description="Initialisation of the feedback tensors B (same layout as W); default: the law each W was "
        "drawn by (the layer's init, network.init or the ResNet's head_init)."
    )


class FA(_RandomFeedback):
    """Feedback alignment (Lillicrap et al. 2016): a fixed random B_l replaces W_l^T."""

    name: Literal["fa"] = "fa"


class DFA(SpecModel):
    """Direct feedback alignment (Nokland 2016): the output error reaches every
    hidden layer through its own fixed random matrix B (classes x the layer's input features F)."""

    name: Literal["dfa"] = "dfa"
    feedback_init: Optional[InitSpec] = Field(
        None, description="Law of B over (classes, F) with fan_in = classes, fan_out = F. Default: Nokland's "
        "U(-1/sqrt(F), 1/sqrt(F)) (anokland/dfa-torch ErrorFeedback.lua; TinyDFA's law too). glorot_uniform gives "
        "BioTorch's dense DFA law. Under conv_feedback 'kernel' the law is over the conv layers' (classes, C_in, k, "
        "k) kernels with fan_in = C_in k^2, fan_out = classes k^2 (default there: glorot_uniform, BioTorch's).",
    )
    conv_feedback: Literal["dense", "kernel"] = Field(
        "dense", description="How the error reaches a conv layer's input. 'dense' (Nokland's dfa-torch, TinyDFA): "
        "one (classes, C H W) matrix, every input unit its own random weights. 'kernel' (BioTorch, "
        "layers/dfa/conv.py): a (classes, C_in, k, k) kernel; e is repeated over the layer's output positions and "
        "convolved back through it at the layer's stride and padding, so B shares weights across positions and "
        "the error at the input is nearly uniform over space. Dense and LC layers take the dense form either way.",
    )


class SignSymmetry(SpecModel):
    """Sign symmetry: B_l = sign(W_l) with magnitudes, computed inside the backward node from the current W.
    variant 'sign' / 'usf': sign(W) times the layer's uniform scale s (Liao et al.'s uSF, Xiao et al.'s
    sign-symmetry; the two names are the same rule); 'frsf': sign(W) times fixed random magnitudes M; 'brsf':
    magnitudes redrawn every batch. `magnitudes` sets s and the law of M per layer kind, as each source does."""

    name: Literal["sign_symmetry"] = "sign_symmetry"
    variant: Literal["sign", "usf", "brsf", "frsf"] = "sign"
    magnitudes: Literal["xiao", "biotorch", "unit"] = Field(
        "xiao", description="Scale s and magnitude law per layer. 'xiao' (Xiao et al. 2018's code, "
        "willwx/sign-symmetry): s = sqrt(2 / (k^2 C_out)) for conv and LC layers, 1 / sqrt(fan_in) for dense; "
        "M ~ |N(0, s^2)| (conv, LC) or U(0, s) (dense). 'biotorch' (jsalbert/biotorch): s = sqrt(2 / (fan_in + "
        "fan_out)), the Xavier std; M = |U(-a, a)| with a = sqrt(6 / (fan_in + fan_out)). 'unit': s = 1, "
        "M ~ |N(0, 1)| (Liao et al.'s unscaled sign: errors grow ~||sign(W)|| / ||W|| per layer; use it with "
        "batch_manhattan or batch norm).",
    )
    scale: Optional[float] = Field(None, gt=0, description="Replaces s (the magnitudes' law stays).")
    batch_manhattan: bool = Field(
        False, description="Batch Manhattan (Liao et al. 2016; Xiao et al.'s --bm): the update of each weight and "
        "bias the rule trains is the element-wise sign of its gradient, before the optimiser's weight decay and "
        "momentum.",
    )


class MirrorSettings(SpecModel):
    """Weight mirror phases (Akrout et al. 2019): each layer is driven by its own noise x, responds with y, and
    B += lr * (D - decay * B) with D the sum (or mean) of x y^T over the mirror batch. The defaults are Akrout et
    al.'s released code (makrout/Deep-Learning-without-Weight-Transport, fcnn/FCNN_WM.py)."""

    lr: float = Field(0.01, gt=0, description="eta_B, the mirror learning rate (the code's mirror_learning_rate).")
    noise: Literal["uniform", "gaussian"] = Field(
        "uniform", description="'uniform': x = noise_sigma * (U(0, 1) - 0.5) (the code's noise_amplitude * (rand - "
        "0.5)); 'gaussian': x ~ N(0, noise_sigma^2) (the paper's text).",
    )
    noise_sigma: float = Field(0.1, gt=0, description="Noise scale: the uniform noise's width or the Gaussian's std.")
    response: Literal["layer", "linear"] = Field(
        "layer", description="'layer': y = f(W x + b), f the activation right after the layer (none before batch "
        "norm or at the output), as the code's sigmoid(W x + b); 'linear': y = W x, whose E[x y^T] = var(x) W^T.",
    )
    reduction: Literal["sum", "mean"] = Field(
        "sum", description="D sums x y^T over the mirror batch ('sum', the code's matmul) or averages it ('mean': "
        "batch_size times smaller). Either way a conv layer's shared weight averages over the positions of each "
        "noise image (the code has dense layers only).",
    )
    decay: float = Field(0.0, ge=0, description="Growth control: weight decay of B in mirror updates (the code's "
                         "normalisation of B never writes back, so it has none).")
    batch_size: int = Field(128, gt=0, le=2**20, description="Noise samples per mirror batch (the code: the training batch).")
    pre_batches: Union[Annotated[int, Field(ge=0, le=10_000_000)], Literal["epoch"]] = Field(
        "epoch", description="Mirror batches before training starts: a count, or 'epoch', as many as the training "
        "batches of an epoch (the code's first mirror pass).",
    )
    batches_per_step: int = Field(1, ge=0, le=1000, description="Mirror batches after each training batch.")
    conv_noise_size: Optional[int] = Field(
        None, gt=0, le=2**14,
        description="Height and width of the noise images that drive conv layers (default: the layer's input size). "
                    "Every output position of a conv is a sample of its shared weight, so small noise maps give deep "
                    "layers as many samples as full-size ones at a fraction of the cost of the large early maps.",
    )

    @model_validator(mode="after")
    def _count_is_not_negative(self):
        if isinstance(self.pre_batches, int) and self.pre_batches < 0:
            raise ValueError(f"mirror.pre_batches must be >= 0 or 'epoch' (got {self.pre_batches})")
        return self


_FEEDBACK_SCHEDULE = Field(
    "forward", description="Learned feedback's learning rate (mirror.lr or feedback_optimizer.lr; direct "
    "Kolen-Pollack's optimiser): 'forward' follows the forward optimiser's schedule, 'constant' stays fixed.",
)


def _constant_feedback_schedule(optimizer, where: str) -> None:
    if optimizer is not None and optimizer.schedule.name != "constant":
        raise ValueError(
            f"{where}.schedule is {optimizer.schedule.name!r}: feedback learning rates follow the forward "
            "optimiser's schedule (rule.feedback_schedule='forward') or stay fixed ('constant'); give the feedback "
            "optimiser the constant schedule"
        )


class WeightMirror(_RandomFeedback):
    """Weight mirror (Akrout et al. 2019): learn with FA through B, and teach B
    to mirror W in mirror phases."""

    name: Literal["weight_mirror"] = "weight_mirror"
    mirror: MirrorSettings = Field(default_factory=MirrorSettings)
    feedback_optimizer: Optional[OptimizerSpec] = Field(
        None, description="Optimiser for B's mirror updates; default: plain Delta B steps at mirror.lr."
    )
    feedback_schedule: Literal["forward", "constant"] = _FEEDBACK_SCHEDULE

    @model_validator(mode="after")
    def _schedule_is_the_forward_one(self):
        _constant_feedback_schedule(self.feedback_optimizer, "rule.feedback_optimizer")
        return self


class KolenPollack(_RandomFeedback):
    """Kolen-Pollack (Akrout et al. 2019): W and B receive transposed copies of
    the same update and the same weight decay, so W - B^T decays."""

    name: Literal["kolen_pollack"] = "kolen_pollack"
    weight_decay: float = Field(1e-4, ge=0, description="lambda, applied to W and B alike (in place of the optimiser's "
                                "L2 term, which still decays biases and batch norm as under every rule).")
    decay: Literal["per_step", "lr_scaled"] = Field(
        "per_step", description="'per_step': W and B shrink by (1 - lambda) every step (Akrout et al.'s Delta W = "
        "-eta grad - lambda W; their released FCNN_KP.py multiplies by a factor that defaults to 1, no decay). "
        "'lr_scaled': by (1 - lr_t lambda), lr_t the forward optimiser's scheduled learning rate, so the decay "
        "falls with the schedule as BP's L2 decay does (lambda = weight_decay / (1 - momentum) matches SGD's L2 "
        "through momentum in the long run).",
    )


class Feedback(SpecModel):
    """A gradient-family rule stated by its parts.
    source: what carries errors back ('weight' = W^T, 'random' = fixed B,
    'sign' = sign(W), 'learned' = a B that learns); learning: how a learned B
    learns; topology: 'layerwise' (layer to layer) or 'direct' (from the output)."""

    name: Literal["feedback"] = "feedback"
    feedback_init: Optional[InitSpec] = Field(
        None, description="Initialisation of B; default: W's own law (layerwise: B has W's layout) or Nokland's "
        "U(-1/sqrt(F), 1/sqrt(F)) (direct: B is classes x the layer's input features F, as for rule 'dfa').",
    )
    source: Literal["weight", "random", "sign", "learned"] = "random"
    learning: Literal["none", "mirror", "kolen_pollack"] = "none"
    topology: Literal["layerwise", "direct"] = "layerwise"
    mirror: MirrorSettings = Field(default_factory=MirrorSettings)
    weight_decay: float = Field(1e-4, ge=0, description="lambda for learning='kolen_pollack'.")
    decay: Literal["per_step", "lr_scaled"] = Field("per_step", description="As rule 'kolen_pollack''s decay.")
    feedback_schedule: Literal["forward", "constant"] = _FEEDBACK_SCHEDULE

    @model_validator(mode="after")
    def _parts_fit(self):
        if (self.source == "learned") != (self.learning != "none"):
            raise ValueError(
                "source='learned' needs learning='mirror' or 'kolen_pollack', and a learning rule needs source='learned' "
                f"(got source={self.source!r}, learning={self.learning!r})"
            )
        if self.topology == "direct" and self.source in ("weight", "sign"):
            raise ValueError(
                f"topology='direct' maps the output error straight to each layer, which has no weight to read: "
                f"source={self.source!r} cannot be used with it (use 'random' or 'learned')"
            )
        if self.topology == "direct" and self.learning == "mirror":
            raise ValueError("learning='mirror' mirrors a layer's own weight and needs topology='layerwise'")
        return self


class Alternation(SpecModel):
    """How the alternating schedule takes turns. The epoch's batches are cut into blocks; each block first trains
    only the inverses (inverse_passes passes over it), then only the forward weights on the same batches
    (forward_passes passes). The default, one block per epoch and one pass of each, is Lee et al.'s DTP code
    (donghyunlee/dtp, conti_dtp.py: every epoch an inverse pass, then a forward pass over the same batches), the
    schedule Bartunov et al. call alternating."""

    block_batches: Optional[int] = Field(
        None, gt=0, le=2**31, description="Batches per block (None: the whole epoch). Short blocks keep the inverses in step "
        "with forward weights that move during a long forward turn (docs/DEVIATIONS.md, SDTP alternating).",
    )
    inverse_passes: int = Field(1, ge=1, le=1000, description="Inverse-only passes over each block per turn.")
    forward_passes: int = Field(1, ge=1, le=1000, description="Forward-only passes over each block per turn.")


class _TargetPropagation(SpecModel):
    schedule: Literal["parallel", "alternating"] = Field(
        "parallel", description="'parallel': forward and inverse losses every step; 'alternating': turns of "
        "inverse-only and forward-only training (rule.alternation). Either way an epoch trains the forward weights "
        "on every batch once per forward pass."
    )
    alternation: Alternation = Field(default_factory=Alternation, description="Turns of the alternating schedule.")
    noise_sigma: float = Field(0.1, gt=0, description="Std of the noise added to h_{l-1} in the inverse loss.")
    loss_reduction: Literal["sum", "mean"] = Field(
        "sum", description="Squared norms of the local and inverse losses: 'sum' over units (the papers' ||.||^2 "
        "and Lee et al.'s mse) or 'mean' over units; both average over the batch. Under Adam only eps sees the "
        "difference: with 'mean' the gradients are units times smaller, so a large eps makes the steps "
        "proportional to the gradient instead of normalised.",
    )
    inverse_optimizer: OptimizerSpec = Field(default_factory=Adam)
    inverse_init: Optional[InitSpec] = Field(None, description="Initialisation of the inverses V_l; default: network.init.")

    @model_validator(mode="after")
    def _alternation_needs_alternating(self):
        if self.schedule == "parallel" and self.alternation != Alternation():
            raise ValueError("rule.alternation only applies to schedule='alternating' (the schedule is 'parallel')")
        return self


class _GradientFirstTarget(_TargetPropagation):
    alpha: float = Field(0.1, gt=0, description="Step size of the first (gradient) target.")
    first_target_gradient: Literal["per_example", "batch_mean"] = Field(
        "per_example", description="The gradient in target_{L-1} = h_{L-1} - alpha dL/dh_{L-1}: of each example's "
        "own loss ('per_example', Bartunov et al.'s equation) or of the batch-mean loss ('batch_mean', Lee et al.'s "
        "code: batch-size times smaller).",
    )


class TP(_GradientFirstTarget):
    """Target propagation: target_{l-1} = g_l(target_l)."""

    name: Literal["tp"] = "tp"


class DTP(_GradientFirstTarget):
    """Difference target propagation (Lee et al. 2015) with the noise-preserving inverse loss."""

    name: Literal["dtp"] = "dtp"


class SDTP(_TargetPropagation):
    """Simplified DTP (Bartunov et al. Algorithm 1): the first target is the
    correct label distribution; denoising inverse loss; no gradient anywhere."""

    name: Literal["sdtp"] = "sdtp"


class AOSDTP(_TargetPropagation):
    """Auxiliary-output SDTP (Bartunov et al. Algorithm 2): the output layer is
    widened by aux_units random, never-trained units z of h_{L-1}; the loss uses
    the class units only, and the top inverse reads [softmax(o), z]."""

    name: Literal["ao_sdtp"] = "ao_sdtp"
    aux_units: int = Field(
        512, gt=0, le=2**24, description="Auxiliary output units (Bartunov et al. state 512 for CIFAR-10; MNIST is not stated). "
        "With at least as many units as h_{L-1} and a linear z, g_L can rebuild h_{L-1} from z alone and the label "
        "carries little of the target.",
    )
    aux_activation: Literal["linear", "tanh"] = Field(
        "linear", description="z = W_aux h_{L-1} ('linear': random features, as the output layer has no "
        "non-linearity) or tanh(W_aux h_{L-1}).",
    )


for _model in (BP, FA, DFA, SignSymmetry, WeightMirror, KolenPollack, Feedback):
    register_rule_spec(_model, "gradient")
for _model in (TP, DTP, SDTP, AOSDTP):
    register_rule_spec(_model, "target_propagation")

# the unions of the built-in rules; ExperimentSpec.rule and RuleOverride.rule follow the registry (plug-ins too)
RuleSpec = rule_union()
GradientRuleSpec = rule_union("gradient")


class RuleOverride(SpecModel):
    """Train the named layers with another gradient-family rule (e.g. the last layer with BP)."""

    layers: list[str] = Field(min_length=1)
    rule: GradientRuleSpec


hold_rule_field(RuleOverride, "rule", "gradient")
