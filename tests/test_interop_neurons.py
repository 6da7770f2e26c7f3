"""Imported neurons agree with snnTorch and SpikingJelly spike for spike, on random inputs and on grid inputs that
put membranes exactly on the threshold (ties), for IF, LIF, CUBA and every reset variant."""

from __future__ import annotations

import pytest
import torch
from interop_helpers import need

from qnoise.neuron_kinds import CUBA, Leaky

snn = need("snntorch")
sj_neuron = need("spikingjelly.activation_based.neuron")

T, B, N = 16, 32, 40


def _inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    rand = torch.rand(T, B, N, generator=g) * 0.9
    grid = torch.randint(-2, 5, (T, B, N), generator=g).float() * 0.25  # sums of quarters hit theta = 1 exactly
    return {"random": rand, "grid": grid}


def _snntorch_run(m, x):
    mem = m.init_leaky() if isinstance(m, snn.Leaky) and not isinstance(m, snn.Synaptic) else None
    outs = []
    if isinstance(m, snn.Synaptic):
        syn, mem = m.init_synaptic()
        for t in range(x.shape[0]):
            s, syn, mem = m(x[t], syn, mem)
            outs.append(s)
    else:
        for t in range(x.shape[0]):
            s, mem = m(x[t], mem)
            outs.append(s)
    return torch.stack(outs)


def _ties(q, x) -> int:
    tr = q.trace(x)
    return int((tr.membrane == q.threshold).sum())


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("beta", [1.0, 0.5, 0.8])
def test_snntorch_leaky_spike_for_spike(reset, beta):
    q = Leaky(1.0, "beta", beta=beta, reset=reset, reset_time="next" if reset == "subtract" else "now", fire=">",
              spike_value="one")
    for kind, x in _inputs(1).items():
        ref = _snntorch_run(snn.Leaky(beta=beta, threshold=1.0, reset_mechanism=reset), x)
        assert int((q(x) != ref).sum()) == 0, kind
        assert ref.sum() > 0
    if beta in (1.0, 0.5):  # dyadic leaks keep grid inputs on the grid: ties happen and are resolved alike
        assert _ties(q, _inputs(1)["grid"]) > 0


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_snntorch_synaptic_spike_for_spike(reset):
    q = CUBA(1.0, 0.5, 0.75, reset=reset, reset_time="next", fire=">", spike_value="one")
    for kind, x in _inputs(2).items():
        ref = _snntorch_run(snn.Synaptic(alpha=0.5, beta=0.75, threshold=1.0, reset_mechanism=reset), x)
        assert int((q(x) != ref).sum()) == 0, kind
        assert ref.sum() > 0


@pytest.mark.parametrize("v_reset", [None, 0.0])
@pytest.mark.parametrize("tau,decay_input", [(2.0, True), (2.0, False), (3.0, True), (4.0, False)])
def test_spikingjelly_lif_spike_for_spike(v_reset, tau, decay_input):
    q = Leaky(1.0, "tau" if decay_input else "tau_no_input", tau=tau,
              reset="subtract" if v_reset is None else "zero", fire=">=", spike_value="one")
    for kind, x in _inputs(3).items():
        x = x * 2
        m = sj_neuron.LIFNode(tau=tau, decay_input=decay_input, v_reset=v_reset, step_mode="m")
        ref = m(x)
        assert int((q(x) != ref).sum()) == 0, kind
        assert ref.sum() > 0
    if tau == 2.0:
        assert _ties(q, _inputs(3)["grid"] * 2) > 0


@pytest.mark.parametrize("v_reset", [None, 0.0])
def test_spikingjelly_if_spike_for_spike(v_reset):
    q = Leaky(1.0, "beta", reset="subtract" if v_reset is None else "zero", fire=">=", spike_value="one")
    for kind, x in _inputs(4).items():
        ref = sj_neuron.IFNode(v_reset=v_reset, step_mode="m")(x)
        assert int((q(x) != ref).sum()) == 0, kind
    assert _ties(q, _inputs(4)["grid"]) > 0


@pytest.mark.parametrize("v_reset", [None, 0.0])
def test_spikingjelly_cuba_spike_for_spike(v_reset):
    cls = getattr(sj_neuron, "CUBALIFNode", None)
    if cls is None:
        pytest.skip("this SpikingJelly has no CUBALIFNode")
    q = CUBA(0.5, 0.5, 0.75, reset="subtract" if v_reset is None else "zero", fire=">=", spike_value="one")
    for kind, x in _inputs(5).items():
        m = cls(c_decay=0.5, v_decay=0.75, v_threshold=0.5, v_reset=v_reset)
        m.step_mode = "m"
        ref = m(x)
        assert int((q(x) != ref).sum()) == 0, kind
        assert ref.sum() > 0


def test_per_neuron_parameters_are_kept():
    theta = torch.linspace(0.5, 1.5, N)
    beta = torch.linspace(0.2, 1.0, N)
    q = Leaky(theta, "beta", beta=beta, reset_time="next", fire=">", spike_value="one")
    x = _inputs(6)["random"]
    ref = _snntorch_run(snn.Leaky(beta=beta, threshold=theta, reset_mechanism="subtract"), x)
    assert int((q(x) != ref).sum()) == 0
    assert q.threshold.shape == (N,)


def test_fire_rule_and_spike_value_at_a_tie():
    x = torch.full((3, 1, 1), 0.5)  # v = 0.5, 1.0 (tie), ...
    ge = Leaky(2.0, fire=">=", spike_value="theta")
    assert ge(x * 2).flatten().tolist() == [0.0, 2.0, 0.0]  # v: 1, 2 (fires, value theta=2), 0+1
    gt = Leaky(1.0, fire=">", spike_value="one")
    assert gt(x).flatten().tolist() == [0.0, 0.0, 1.0]  # v = 1.0 does not fire with '>'
