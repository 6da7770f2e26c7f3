"""Weights as hardware stores them (issue 11): a fixed step, an existing grid kept exactly, tie rounding."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from qnoise.probe.options import Setting
from qnoise.quant import grid_step, quantize, quantize_weights, remove_weight_quantization, round_half


def test_ties_round_as_chosen():
    u = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49999997, 1.2, -1.7])
    assert round_half(u, "half-even").tolist() == [-2, -2, -0, 0, 2, 2, 0, 1, -2]
    assert round_half(u, "half-away").tolist() == [-3, -2, -1, 1, 2, 3, 0, 1, -2]
    assert round_half(u, "half-up").tolist() == [-2, -1, 0, 1, 2, 3, 0, 1, -2]
    x = torch.tensor([0.25, 0.75, -0.25])  # halves of step 0.5
    assert quantize(x, 4, scale=0.5, ties="half-away").tolist() == [0.5, 1.0, -0.5]
    assert quantize(x, 4, scale=0.5, ties="half-even").tolist() == [0.0, 1.0, -0.0]
    with pytest.raises(ValueError, match="ties"):
        quantize(x, 4, ties="banker")


def _loihi_layer(seed=0) -> nn.Linear:
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(64, 10, bias=False)
    with torch.no_grad():
        lin.weight.copy_(2.0 * torch.randint(-128, 128, (10, 64), generator=g).float())  # 8 bits, step 2
        lin.weight[0, 0] = -256.0  # the grid's most negative level: max-abs scaling would move every weight
    return lin


def test_eight_bits_on_an_eight_bit_grid_changes_nothing():
    lin = _loihi_layer()
    before = lin.weight.detach().clone()
    assert grid_step(before, 8) == 2.0
    quantize_weights(nn.Sequential(lin), 8)
    assert torch.equal(lin.weight, before)
    remove_weight_quantization(lin)
    # the same layer through max-abs (the old default) would not keep them
    quantize_weights(nn.Sequential(lin), 8, step="maxabs")
    assert not torch.equal(lin.weight, before)


def test_float_grid_from_maxabs_is_kept_bit_for_bit():
    """One case that is (qnoise's own grids in general: within two ulps, the property test below)."""
    w = quantize(torch.randn(32, 16, generator=torch.Generator().manual_seed(0)), 6)  # values k * max|w| / 31
    lin = nn.Linear(16, 32)
    with torch.no_grad():
        lin.weight.copy_(w)
    quantize_weights(nn.Sequential(lin), 6)
    assert torch.equal(lin.weight, w)


def test_fixed_step_and_saturation():
    lin = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 3.2, -7.0, 300.0]]))
    quantize_weights(nn.Sequential(lin), 8, step=2.0, ties="half-away")
    assert lin.weight.tolist() == [[2.0, 4.0, -8.0, 254.0]]  # 1 -> tie away from 0; 300 saturates at 127 * 2


def test_random_weights_have_no_grid():
    assert grid_step(torch.randn(100), 8) is None


def test_a_weight_a_third_of_a_step_off_is_off_the_grid():
    """The tolerance was relative to k (a third of a step at k = 30000): 30000.3 sat on the grid of step 1, and
    97 % of random 4-weight layers found a 16-bit "grid" (now about 2 %; two weights always have one, k1/k0)."""
    assert grid_step(torch.tensor([1.0, 30000.3], dtype=torch.float64), 16) is None
    assert grid_step(torch.tensor([1.0, 30000.3]), 16) is None
    assert grid_step(torch.tensor([1.0, 30000.0]), 16) == 1.0
    g = torch.Generator().manual_seed(0)
    found = sum(grid_step(torch.randn(4, generator=g), 16) is not None for _ in range(200))
    assert found <= 10


def _on_grid(bits: int, n: int, seed: int) -> torch.Tensor:
    """``n`` whole numbers of the signed b-bit range, the first nonzero (float64)."""
    g = torch.Generator().manual_seed(seed)
    qmax = 2 ** (bits - 1)
    k = torch.randint(-qmax, qmax, (n,), generator=g, dtype=torch.float64)
    k[0] = k[0] if k[0] != 0 else 1.0
    return k


def _kept(w: torch.Tensor, bits: int) -> torch.Tensor:
    """``w [n]`` after b-bit quantization with the default step (the grid it sits on)."""
    lin = nn.Linear(w.numel(), 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(w.unsqueeze(0))
    quantize_weights(nn.Sequential(lin), bits)
    return lin.weight[0].detach()


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(2, 10), step=st.floats(1e-3, 10.0), seed=st.integers(0, 10_000), n=st.integers(1, 300))
def test_weights_on_a_grid_are_found(bits, step, seed, n):
    """Weights ``k * step`` (k in the b-bit range, any step) sit on the grid `grid_step` finds: each a whole number
    of its steps, in range; b-bit quantization moves none by more than two units in the last place (k * step is
    rounded to float32 once when the weights are made and again by the quantizer)."""
    qmax = 2 ** (bits - 1)
    w = (_on_grid(bits, n, seed) * step).float()
    found = grid_step(w, bits)
    assert found is not None
    q = w.double() / found
    assert torch.allclose(q, q.round(), atol=1e-4) and q.round().min() >= -qmax and q.round().max() <= qmax - 1
    torch.testing.assert_close(_kept(w, bits), w, rtol=3e-7, atol=0.0)  # two float32 ulps at most


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(2, 10), exponent=st.integers(-12, 6), seed=st.integers(0, 10_000), n=st.integers(1, 300))
def test_hardware_grids_are_kept_bit_for_bit_and_own_grids_within_two_ulps(bits, exponent, seed, n):
    """A power-of-two step (fixed-point hardware): quantizing again at b bits changes no bit. qnoise's own b-bit
    weights (a step max|w| / (2^(b-1) - 1), rounded to float32): none moves by more than two units in the last
    place (e.g. 10 bits, 64 weights of seed 0 move by one; two at most over 2,000 cases)."""
    w = (_on_grid(bits, n, seed) * 2.0 ** exponent).float()
    assert torch.equal(_kept(w, bits), w)
    own = quantize(torch.randn(n, generator=torch.Generator().manual_seed(seed)), bits)
    torch.testing.assert_close(_kept(own, bits), own, rtol=3e-7, atol=0.0)  # two float32 ulps at most


def test_setting_checks_weight_step():
    Setting(weight_bits=8, weight_step=2.0)
    with pytest.raises(ValueError, match="weight_step needs weight_bits"):
        Setting(weight_step=2.0)
    with pytest.raises(ValueError, match="positive"):
        Setting(weight_bits=8, weight_step=-1.0)
    with pytest.raises(ValueError, match="ties"):
        Setting(ties="nearest-even")


def test_analyze_with_a_weight_step_keeps_the_grid():
    from qnoise import analyze
    from qnoise.layers import MultiStep
    from qnoise.neuron_kinds import Leaky

    lin = _loihi_layer()
    model = nn.Sequential(MultiStep(lin), Leaky(500.0, fire=">", spike_value="one"))
    x = (torch.rand(32, 4, 64) < 0.3).float()  # [N, T, features]
    y = torch.randint(0, 10, (32,))
    df = analyze(model, (x, y), weight_bits=8, weight_step=2.0, reference="snn", progress=False)
    sqnr = df[(df.metric == "weight_sqnr_db")].value
    assert (sqnr == float("inf")).all()  # the grid is kept: no weight noise
    own = df[(df.metric == "err_own_mse")].value
    assert (own == 0).all()
