"""CUBA LIF (DESIGN.md, Neurons): Loihi's fixed point against a hand-computed integer trace; float mode; delays
and readouts (LI, I)."""

from __future__ import annotations

import torch

import qnoise
from qnoise.layer_kinds import Delay, Integrator, LeakyIntegrator
from qnoise.neuron_kinds import CUBA


def test_fixed_point_matches_a_hand_computed_integer_trace():
    # du = 1024 (current keeps 3072/4096 = 3/4), dv = 2048 (voltage keeps 1/2), vth = 10, reset to zero, '>'
    n = CUBA.loihi(10, du=1024, dv=2048)
    x = torch.tensor([4.0, 4.0, 0.0, 0.0, 7.0, -3.0, 0.0]).view(7, 1, 1)
    # by hand, decays round toward zero: i = trunc(i * 3/4) + x;  v = trunc(v / 2) + i;  spike if v > 10
    #  t  i                    v                      s
    #  0  0 + 4 = 4            0 + 4 = 4              0
    #  1  trunc(3) + 4 = 7     trunc(2) + 7 = 9       0
    #  2  trunc(5.25) = 5      trunc(4.5) + 5 = 9     0
    #  3  trunc(3.75) = 3      trunc(4.5) + 3 = 7     0
    #  4  trunc(2.25) + 7 = 9  trunc(3.5) + 9 = 12    1 -> v = 0
    #  5  trunc(6.75) - 3 = 3  0 + 3 = 3              0
    #  6  trunc(2.25) = 2      trunc(1.5) + 2 = 3     0
    tr = n.trace(x)
    assert tr.membrane.flatten().tolist() == [4, 9, 9, 7, 12, 3, 3]
    assert tr.spikes.flatten().tolist() == [0, 0, 0, 0, 1, 0, 0]
    assert n(x).flatten().tolist() == [0, 0, 0, 0, 1, 0, 0]


def test_fixed_point_threshold_is_strict_and_negative_values_truncate_toward_zero():
    n = CUBA.loihi(8, du=4096, dv=0)  # the current is gone each step; the voltage integrates
    assert n(torch.tensor([8.0, 0.0, 1.0]).view(3, 1, 1)).flatten().tolist() == [0, 0, 1]  # 8 > 8 is false
    m = CUBA.loihi(100, du=1024, dv=4096)
    tr = m.trace(torch.tensor([-5.0, 0.0]).view(2, 1, 1))
    assert tr.membrane.flatten().tolist() == [-5, -3]  # trunc(-3.75) = -3, not floor's -4


def test_fixed_point_saturates_and_rounds_its_input():
    n = CUBA.loihi(1000, du=4096, dv=4096, state_bits=8)
    tr = n.trace(torch.tensor([500.0, 2.4]).view(2, 1, 1))
    assert tr.membrane.flatten().tolist() == [127, 2]


def test_float_reference_of_a_fixed_point_layer():
    n = CUBA.loihi(10, du=1024, dv=2048)
    n.state_bits = None  # what the probe's float SNN does
    tr = n.trace(torch.tensor([4.0, 4.0]).view(2, 1, 1))
    assert tr.membrane.flatten().tolist() == [4.0, 4 * 0.5 + (4 * 0.75 + 4)]


def test_cuba_layer_in_the_probe_against_its_float_self():
    from qnoise.layers import MultiStep

    torch.manual_seed(0)
    lin = torch.nn.Linear(20, 6, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.randint(-8, 8, (6, 20)).float())
    model = torch.nn.Sequential(MultiStep(lin), CUBA.loihi(12, du=512, dv=1024), MultiStep(torch.nn.Linear(6, 3)))
    x = (torch.rand(16, 6, 20) < 0.4).float()
    df = qnoise.analyze(model, (x, torch.arange(16) % 3), reference="snn", progress=False)
    own = df[(df.metric == "err_own_mse") & (df["mode"] == "propagated")]
    assert (own.value >= 0).all() and len(own) > 0
    membrane = df[df.metric == "membrane_sqnr_db"]
    assert len(membrane) > 0 and membrane.value.notna().all()


def test_delay_and_readouts():
    x = torch.arange(1.0, 6.0).view(5, 1, 1)
    assert Delay(2)(x).flatten().tolist() == [0, 0, 1, 2, 3]
    per = Delay(torch.tensor([0, 1]))(torch.cat([x, x], 2))
    assert per[:, 0, 1].tolist() == [0, 1, 2, 3, 4] and per[:, 0, 0].tolist() == [1, 2, 3, 4, 5]
    assert Integrator(2.0)(x).flatten().tolist() == [2, 6, 12, 20, 30]
    li = LeakyIntegrator(tau=2.0)(torch.ones(3, 1, 1))  # v + (x - v) / 2
    assert li.flatten().tolist() == [0.5, 0.75, 0.875]


def test_memory_counts_the_current_and_the_decays():
    from qnoise.probe.costs import memory_parts
    from qnoise.probe.structure import model_structure
    from qnoise.layers import MultiStep

    model = torch.nn.Sequential(MultiStep(torch.nn.Linear(5, 3, bias=False)), CUBA.loihi(10, du=512, dv=1024))
    parts = memory_parts(model, model_structure(model, (5,)), 4)
    items = parts["1"]
    assert (3 * 2, 24) in items  # current and voltage of 3 neurons at 24 bits
    assert items.count((1, 12)) == 2  # du and dv at 12 bits
