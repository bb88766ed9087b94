"""Initialisation schemes against PyTorch's own initialisers (the independent reference)."""

import math

import pytest
import torch

from bpcompile.compiler import compile_experiment
from bpcompile.nn.init import init_tensor
from bpcompile.spec import FA, GlorotUniform, NetworkSpec, TorchDefault
from random_nets import make_spec


@pytest.mark.parametrize("shape", [(7, 13), (5, 3, 4, 4), (16, 6, 5, 5)])
def test_torch_default_draws_what_pytorchs_layer_default_draws(shape):
    """nn.Linear / nn.Conv2d reset_parameters: kaiming_uniform_(W, a=sqrt(5)), the same generator stream."""
    fan_in = math.prod(shape[1:])
    ours = init_tensor(torch.empty(shape), TorchDefault(), fan_in, shape[0], torch.Generator().manual_seed(3))
    theirs = torch.nn.init.kaiming_uniform_(torch.empty(shape), a=math.sqrt(5), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)


def test_torch_default_gain_scales_the_bound():
    g = torch.Generator().manual_seed(0)
    w = init_tensor(torch.empty(4000, 50), TorchDefault(gain=2.0), 50, 4000, g)
    assert w.abs().max() <= 2.0 / math.sqrt(50)
    assert w.abs().max() > 0.99 * 2.0 / math.sqrt(50)


@pytest.mark.parametrize("kind", ["dense", "lc", "conv"])
def test_network_init_torch_default_reaches_every_layer_and_fas_feedback(kind):
    """Every parametric layer and FA's B (drawn by W's law) lie in U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with the
    conv convention's fan_in; Glorot draws the same net differently."""
    for seed in range(2):
        spec, _, _, _ = make_spec(seed, kind, FA())
        spec = spec.model_copy(update={"network": NetworkSpec(layers=spec.network.layers, init=TorchDefault())})
        program = compile_experiment(spec, torch.device("cpu"))
        params = dict(program.network.named_parameters())
        for info in program.network.layer_table:
            bound = 1.0 / math.sqrt(info.fan_in)
            for tensor in (params[info.weight].detach(), program.state.get(f"{info.name}.feedback")):
                if tensor is None:
                    continue
                assert tensor.abs().max() <= bound * (1 + 1e-6), info.name
                # a uniform law fills its interval: the largest of n draws is near the bound
                assert tensor.abs().max() >= bound * max(0.0, 1 - 30.0 / tensor.numel()) - 1e-6, info.name
        if seed:
            continue
        glorot = compile_experiment(spec.model_copy(update={"network": NetworkSpec(
            layers=spec.network.layers, init=GlorotUniform())}), torch.device("cpu"))
        first = program.network.layer_table[0].weight
        assert not torch.equal(params[first], dict(glorot.network.named_parameters())[first])
