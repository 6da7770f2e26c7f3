"""Properties of the quantizers (qnoise.quant): levels, idempotence, error bounds, bias, gradients."""

from __future__ import annotations

import copy
import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given
from torch import nn

from qnoise.quant import (
    LearnableClip,
    SigmoidSumQuantizer,
    binarize,
    data_levels,
    integer_range,
    linear_temperature,
    nearest_levels,
    quantize,
    quantize_membrane,
    quantize_threshold,
    quantize_weights,
    remove_weight_quantization,
    set_temperature,
    ternarize,
    weight_quantizers,
)
from qnoise.quant.sigmoid_sum import CLAMP, kmeans_1d, paper_temperature, pow2_levels, sorted_quantiles
from qnoise.quant.weights import float_weight

floats = st.floats(-50, 50, allow_nan=False, width=32)
tensors = st.lists(floats, min_size=1, max_size=64).map(lambda v: torch.tensor(v))
bits_signed = st.integers(2, 8)
roundings = st.sampled_from(["nearest", "truncate", "stochastic"])


@given(tensors, bits_signed, roundings, st.booleans())
def test_at_most_2_pow_b_levels_on_the_grid(x, bits, rounding, signed):
    y = quantize(x, bits, rounding, signed=signed)
    assert y.unique().numel() <= 2**bits
    step = x.abs().max().clamp_min(1e-12) / integer_range(bits, signed)[1]
    q = y / step
    assert torch.allclose(q, q.round(), atol=1e-3)
    qmin, qmax = integer_range(bits, signed)
    assert q.min() >= qmin - 1e-3 and q.max() <= qmax + 1e-3


@given(tensors, bits_signed, roundings)
def test_idempotent_with_a_fixed_scale(x, bits, rounding):
    scale = float(x.abs().max().clamp_min(1e-3)) / (2 ** (bits - 1) - 1)
    y = quantize(x, bits, "nearest", scale=scale)
    assert torch.equal(quantize(y, bits, rounding, scale=scale), y)


@given(tensors, bits_signed)
def test_nearest_error_at_most_half_a_step_inside_the_range(x, bits):
    y = quantize(x, bits, "nearest")
    step = float(x.abs().max().clamp_min(1e-12)) / (2 ** (bits - 1) - 1)
    assert float((y - x).abs().max()) <= step / 2 * (1 + 1e-5) + 1e-9


@given(tensors, bits_signed)
def test_truncation_never_rounds_up(x, bits):
    scale = float(x.abs().max().clamp_min(1e-3)) / (2 ** (bits - 1) - 1)
    y = quantize(x, bits, "truncate", scale=scale)
    low = integer_range(bits, True)[0] * scale
    inside = x >= low
    # the level k * step is rounded to float32 once more: it may land one unit in the last place above x
    assert bool((y[inside] <= x[inside] + 1e-6 * scale + 2.0 ** -23 * x[inside].abs()).all())
    assert bool((x[inside] - y[inside] < scale * (1 + 1e-5)).all())


def test_saturates_outside_the_range():
    y = quantize(torch.tensor([-10.0, 10.0]), 3, scale=0.5)
    assert y.tolist() == [-2.0, 1.5]  # 3-bit signed: levels -4..3 times 0.5


@given(st.floats(-7.9, 6.9), st.sampled_from([0.25, 0.5, 1.0]))
def test_stochastic_rounding_is_unbiased(level, step):
    """Mean of n samples is within 5 standard errors of the input (p ~ 6e-7 of a false alarm)."""
    value = level * step  # inside the 4-bit range [-8, 7] steps
    n = 20000
    x = torch.full((n,), value, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    y = quantize(x, 4, "stochastic", scale=step, generator=gen)
    frac = value / step - math.floor(value / step)
    sd = step * math.sqrt(frac * (1 - frac) / n)
    assert abs(float(y.mean()) - value) <= 5 * sd + 1e-9
    assert set(torch.unique(y).tolist()) <= {math.floor(value / step) * step, (math.floor(value / step) + 1) * step}


def test_stochastic_rounding_is_reproducible_with_a_generator():
    x = torch.randn(1000)
    a = quantize(x, 4, "stochastic", generator=torch.Generator().manual_seed(3))
    b = quantize(x, 4, "stochastic", generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_per_channel_scale_uses_each_channels_max():
    w = torch.stack([torch.linspace(-1, 1, 9), torch.linspace(-100, 100, 9)])
    y = quantize(w, 3, axis=0)
    assert torch.allclose(y[0].abs().max(), torch.tensor(1.0))
    assert torch.allclose(y[1].abs().max(), torch.tensor(100.0))
    assert torch.equal(quantize(w[0], 3), y[0])


@given(tensors, st.integers(2, 8))
def test_asymmetric_covers_min_and_max(x, bits):
    y = quantize(x, bits, asymmetric=True)
    assert y.unique().numel() <= 2**bits
    lo, hi = float(x.min().clamp_max(0)), float(x.max().clamp_min(0))
    step = (hi - lo) / (2**bits - 1) if hi > lo else 1.0
    assert float((y - x).abs().max()) <= step * (0.5 + 1e-4) + 1e-6


def test_straight_through_gradient_inside_zero_outside():
    x = torch.tensor([-5.0, -0.8, 0.2, 0.7, 5.0], requires_grad=True)
    quantize(x, 4, scale=0.1).sum().backward()  # range [-0.8, 0.7]
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="rounding='up'"):
        quantize(torch.zeros(2), 4, "up")
    with pytest.raises(ValueError, match="bits=1"):
        quantize(torch.zeros(2), 1, signed=True)
    with pytest.raises(ValueError, match="scale"):
        quantize(torch.zeros(2), 4, scale=0.0)


@given(tensors)
def test_binary_two_levels_sign_preserved_and_l2_optimal_scale(x):
    y = binarize(x)
    a = float(x.abs().mean())
    assert torch.equal(y.abs(), torch.full_like(y, a))
    assert bool((torch.signbit(y) == (x < 0)).all())  # the sign bit: mean|x| of subnormals can be 0 (then -0.0)
    # mean|x| minimises ||x - a sign(x)||^2 over a: a nudge either way does not improve it
    s = torch.where(x >= 0, 1.0, -1.0)
    err = lambda c: float(((x - c * s) ** 2).sum())
    assert err(a) <= min(err(a * 1.01), err(a * 0.99)) + 1e-4


@given(tensors)
def test_ternary_three_levels_small_weights_zeroed(x):
    y = ternarize(x)
    assert y.unique().numel() <= 3
    delta = 0.7 * float(x.abs().mean())
    assert bool((y[x.abs() <= delta] == 0).all())
    kept = x.abs() > delta
    if kept.any():
        assert torch.allclose(y[kept].abs(), x[kept].abs().mean().expand(int(kept.sum())))


# ---- sum-of-sigmoids -----------------------------------------------------------------------------------

def _far_from_steps(q: SigmoidSumQuantizer, w: torch.Tensor) -> torch.Tensor:
    """Weights whose every sigmoid argument T (beta w - b_i) sits at the clamp (|.| >= 10)."""
    z = q.beta.detach() * w.unsqueeze(-1) - q.biases.detach().sort().values
    return (float(q.temperature) * z).abs().ge(CLAMP).all(-1)


@pytest.mark.parametrize("levels", ["binary", "ternary", 3, 4, pow2_levels(3)])
def test_sigmoid_sum_soft_equals_hard_at_high_temperature(levels):
    """Where every sigmoid is clamped (|T z| >= 10), soft and hard differ by at most alpha * sum(s) * sigmoid(-10):
    the clamp is the only gap, and it closes as the temperature rises."""
    w = torch.randn(4000)
    q = SigmoidSumQuantizer(levels, init_from=w, temperature=2000.0)
    far = _far_from_steps(q, w)
    assert far.float().mean() > 0.97
    with torch.no_grad():
        soft, hard = q.soft(w), q.hard(w)
        bound = float(q.alpha * q.steps.sum()) * torch.sigmoid(torch.tensor(-CLAMP)).item()
    assert float((soft[far] - hard[far]).abs().max()) <= bound * 1.01 + 1e-6  # float32 sums of up to 14 sigmoids
    assert bound < 5e-4
    with torch.no_grad():
        q.set_temperature(1.0)
        assert float((q.soft(w) - q.hard(w)).abs().max()) > 10 * bound  # low T: soft is far from hard


def test_sigmoid_sum_definition_by_hand():
    q = SigmoidSumQuantizer(torch.tensor([-1.0, 0.0, 1.0]), temperature=3.0)
    with torch.no_grad():
        q.alpha.fill_(0.5)
        q.beta.fill_(2.0)
        q.biases.copy_(torch.tensor([-0.5, 0.5]))
    x = torch.tensor([-0.7, 0.1, 0.4, 3.0])
    # s = [1, 1], o = 1; the sigmoid argument is clamped to +-10 (x = 3: 3 * (6 -/+ 0.5) > 10)
    arg = lambda b: (3 * (2 * x - b)).clamp(-10, 10)
    expect = 0.5 * (torch.sigmoid(arg(-0.5)) + torch.sigmoid(arg(0.5)) - 1)
    assert torch.allclose(q.soft(x), expect)
    assert q.hard(x).tolist() == [-0.5, 0.0, 0.5, 0.5]  # z = 2x -/+ 0.5
    assert q.hard(torch.tensor([0.25])).tolist() == [0.0]  # z = 0 exactly on the upper step: H(0) = 0


def test_sigmoid_sum_init_as_published():
    """beta = 5p/(4q), alpha = 1/beta; binary b = 0; ternary b = -/+0.05 on beta*x."""
    w = torch.tensor([-2.0, 0.5, 1.0])
    t = SigmoidSumQuantizer("ternary", init_from=w)
    assert t.beta.item() == pytest.approx(5 * 1 / (4 * 2))
    assert t.alpha.item() == pytest.approx(1 / t.beta.item())
    assert t.biases.tolist() == pytest.approx([-0.05, 0.05])
    b = SigmoidSumQuantizer("binary", init_from=w)
    assert b.biases.tolist() == [0.0]
    u = SigmoidSumQuantizer(3, init_from=w)
    assert u.beta.item() == pytest.approx(5 * 3 / (4 * 2))  # p = max|Y| = 3 for integer 3-bit levels
    t.eval()
    assert torch.equal(t(w), t.hard(w))
    t.train()
    assert torch.equal(t(w), t.soft(w))


@given(st.integers(256, 200_000), st.integers(0, 2**16))
def test_ternary_init_zeroes_a_small_share_of_gaussian_weights(n, seed):
    """On N(0, 1) weights the paper's ternary init sends about 5-20 % of them to 0, not most of them."""
    w = torch.randn(n, generator=torch.Generator().manual_seed(seed))
    q = SigmoidSumQuantizer("ternary", init_from=w).eval()
    with torch.no_grad():
        zero = float((q(w) == 0).float().mean())
    assert 0.04 <= zero <= 0.20


def test_kbit_init_is_kmeans_midpoints_with_the_middle_pair_at_005():
    """7 integer levels, weights in 7 tight clusters: b = midpoints of the k-means centres, except the two steps
    either side of 0, which start at -/+0.05."""
    centres = torch.tensor([-1.0, -0.6, -0.3, 0.0, 0.3, 0.6, 1.0])
    w = (centres[:, None] + 1e-3 * torch.randn(7, 500)).flatten()
    q = SigmoidSumQuantizer(pow2_levels(3), init_from=w)
    beta = float(q.beta.detach())
    assert beta == pytest.approx(5 * 4 / (4 * float(w.abs().max())))
    mids = (beta * (centres[1:] + centres[:-1]) / 2).tolist()
    mids[2], mids[3] = -0.05, 0.05
    assert q.biases.tolist() == pytest.approx(mids, abs=2e-3)
    assert kmeans_1d(w, 7).tolist() == pytest.approx(centres.tolist(), abs=1e-3)


def test_sigmoid_sum_gradients_reach_alpha_beta_biases_and_input():
    w = torch.randn(100, requires_grad=True)
    q = SigmoidSumQuantizer(3, init_from=w, temperature=5.0)
    (q(w) ** 2).sum().backward()
    for name in ("alpha", "beta", "biases"):
        grad = getattr(q, name).grad
        assert grad is not None and bool((grad.abs() > 0).all()), name
    assert w.grad.abs().sum() > 0
    fixed = SigmoidSumQuantizer(3, init_from=w, learn_biases=False)
    assert "biases" not in dict(fixed.named_parameters()) and "biases" in fixed.state_dict()


def test_eval_form_keeps_hard_values_and_passes_the_soft_gradient():
    """Eval mode (a converted SNN being fine-tuned): the values are the hard staircase exactly, ``x``, ``beta``
    and ``b_i`` get the soft form's gradient (straight-through) and ``alpha`` the hard form's own."""
    w = torch.randn(200, dtype=torch.float64)
    q = SigmoidSumQuantizer(3, init_from=w, temperature=5.0).double().eval()
    with torch.no_grad():
        hard = q(w)
    x = w.clone().requires_grad_(True)
    y = q(x)
    assert torch.equal(y.detach(), hard)
    g = torch.randn(200, dtype=torch.float64)
    (y * g).sum().backward()
    xs = w.clone().requires_grad_(True)
    soft = q.soft(xs)
    (soft * g).sum().backward(inputs=[xs])
    torch.testing.assert_close(x.grad, xs.grad)
    assert x.grad.abs().sum() > 0
    torch.testing.assert_close(q.alpha.grad, (g * hard / q.alpha).sum().detach())


def test_sigmoid_gradient_stops_outside_the_clamp():
    """d y / d x = 0 where every |T (beta x - b_i)| > 10 (the published clamp), nonzero near a step."""
    q = SigmoidSumQuantizer("binary", init_from=torch.tensor([1.0]), temperature=100.0)
    x = torch.tensor([0.5, 0.01], requires_grad=True)  # T beta x = 62.5 and 1.25
    q(x).sum().backward()
    assert x.grad[0] == 0 and x.grad[1] > 0


@pytest.mark.parametrize("levels,expect", [
    ("binary", [-1, 1]), ("ternary", [-1, 0, 1]), (3, [-3, -2, -1, 0, 1, 2, 3]),
    (pow2_levels(3), [-4, -2, -1, 0, 1, 2, 4]), (pow2_levels(2), [-1, 0, 1])])
def test_levels_are_integer_sets_and_hard_outputs_stay_in_alpha_y(levels, expect):
    q = SigmoidSumQuantizer(levels, init_from=torch.randn(1000))
    assert q.levels.tolist() == expect
    assert q.bits == math.ceil(math.log2(len(expect)))
    with torch.no_grad():
        q.biases.copy_(torch.randn(q.biases.shape))  # learned steps may cross: the forward sorts them
        y = q.hard(torch.randn(5000) * 3) / q.alpha
    assert set(y.round().tolist()) <= set(expect)
    assert torch.allclose(y, y.round(), atol=1e-5)


def test_temperature_schedule_is_the_papers():
    """T = k (epoch + 1), capped at 2000; the authors' default k = 10."""
    assert [paper_temperature(e) for e in range(3)] == [10.0, 20.0, 30.0]
    for k in (5, 10, 20, 40):
        assert paper_temperature(0, k) == k and paper_temperature(4, k) == 5 * k
        assert paper_temperature(10_000, k) == 2000.0
    assert linear_temperature(2, slope=5, start=5) == paper_temperature(2, 5)
    assert linear_temperature(100, slope=5, start=1, cap=20) == 20


def test_data_levels_are_symmetric_and_fit_the_data():
    w = torch.cat([torch.full((500,), 0.2), torch.full((500,), -0.2), torch.full((100,), 1.0)])
    lv = data_levels(w, 2)
    assert lv.tolist() == pytest.approx([-1.0, 0.0, 1.0])
    lv3 = data_levels(torch.randn(5000), 3)
    assert lv3.numel() == 7 and torch.allclose(lv3, -lv3.flip(0))


# ---- learnable clip ------------------------------------------------------------------------------------

@given(st.lists(st.floats(-3, 3, width=32), min_size=1, max_size=32), st.integers(1, 6),
       st.floats(0.25, 4.0))
def test_learnable_clip_matches_its_formula(values, bits, alpha):
    x = torch.tensor(values)
    y = LearnableClip(bits, alpha)(x)
    n = 2**bits - 1
    a = torch.tensor(alpha)
    expect = a * torch.floor(torch.clamp(x / a, 0, 1) * n + 0.5) / n
    assert torch.allclose(y, expect, atol=1e-6)
    assert y.unique().numel() <= 2**bits
    assert torch.allclose(y, nearest_levels(x, n, a), atol=1e-6)


def test_learnable_clip_gradients_pact_lsq():
    clip = LearnableClip(2, alpha=1.0)
    x = torch.tensor([-0.5, 0.2, 0.5, 2.0], requires_grad=True)
    clip(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]
    # d/dalpha: 0 below, round(u n)/n - u inside, 1 above the clip
    expect = 0 + (1 / 3 - 0.2) + (2 / 3 - 0.5) + 1  # n = 3: 0.2 -> 1/3, 0.5 -> 2/3 (half up)
    assert float(clip.alpha.grad) == pytest.approx(expect, abs=1e-6)


# ---- weights through parametrize -----------------------------------------------------------------------

def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 16), nn.ReLU(),
                         nn.Linear(16, 3))


@pytest.mark.parametrize("method,bits", [("uniform", 4), ("uniform", 2), ("sigmoid", 1), ("sigmoid", 3),
                                         ("binary", 1), ("ternary", 2)])
def test_quantize_weights_then_remove_restores_bit_for_bit(method, bits):
    net = _net()
    before = copy.deepcopy(net.state_dict())
    x = torch.randn(5, 2, 8, 8)
    y_float = net(x)
    done = quantize_weights(net, bits, method)
    assert len(done) == 3
    assert not torch.equal(net(x), y_float)
    net.eval()  # the sum-of-sigmoids quantizer takes its hard levels in eval mode
    for q in done:
        levels = q.module.weight.detach().unique().numel()
        assert levels <= 2**q.bits
        assert torch.equal(float_weight(q.module), before[f"{q.name}.weight"])
    assert remove_weight_quantization(net) == 3
    after = net.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(net(x), y_float)


def test_quantize_weights_keeps_first_and_last_and_skips():
    net = _net()
    done = quantize_weights(net, 4, keep_first_last=True)
    assert [q.name for q in done] == ["3"]
    remove_weight_quantization(net)
    assert [q.name for q in quantize_weights(net, 4, skip=["0"])] == ["3", "5"]
    with pytest.raises(ValueError, match="nope"):
        quantize_weights(net, 4, skip=["nope"])


def test_sigmoid_weights_harden_in_eval_and_take_temperature():
    net = _net()
    quantize_weights(net, 1, "sigmoid")
    assert set_temperature(net, 50.0) == 3
    net.eval()
    w = net[0].weight
    assert w.unique().numel() == 2
    q = weight_quantizers(net)["0"]
    assert float(q.temperature) == 50.0


def test_uniform_weight_qat_gradient_reaches_float_weight():
    net = _net()
    quantize_weights(net, 3)
    net(torch.randn(2, 2, 8, 8)).sum().backward()
    assert net[0].parametrizations.weight.original.grad.abs().sum() > 0


# ---- neuron state -------------------------------------------------------------------------------------

@given(st.lists(st.floats(-1.875, 1.875, width=32), min_size=1, max_size=32), st.integers(2, 8),
       st.floats(0.25, 2.0))
def test_membrane_grid_contains_the_threshold(values, bits, theta):
    th = torch.tensor(theta)
    v = torch.tensor(values) * th
    q = quantize_membrane(v, th, bits)
    step = th / 2 ** (bits - 2)
    assert torch.allclose(q / step, (q / step).round(), atol=1e-4)
    inside = (v >= -2 * th) & (v <= 2 * th - step)  # the code spans [-2 theta, 2 theta - step]
    err = (q - v)[inside].abs()
    assert err.numel() == 0 or float(err.max()) <= float(step) / 2 * (1 + 1e-4)
    assert float(q.max()) <= float(2 * th - step) * (1 + 1e-6)
    assert torch.equal(quantize_membrane(th.reshape(1), th, bits), th.reshape(1))


def test_threshold_quantization_shares_one_grid_and_stays_positive():
    theta = torch.tensor([0.01, 0.5, 1.0, 1.3])
    q = quantize_threshold(theta, 3)
    step = 1.3 / 7
    assert torch.allclose(q / step, (q / step).round(), atol=1e-5)
    assert float(q.min()) > 0


@pytest.mark.parametrize("rounding", ["nearest", "truncate", "stochastic"])
def test_threshold_quantization_is_straight_through_on_the_lowest_level_too(rounding):
    """max(q, step) split the gradient on the lowest level (0.5) and gave 0 below half a step, so a learned
    threshold there never moved; the lift is now a constant: gradient 1 everywhere, values unchanged."""
    from qnoise.models import apply_quantization
    from qnoise.neurons import IF

    theta = torch.tensor([0.05, 0.2, 1 / 3, 0.5, 1.0], requires_grad=True)  # 2 bits: step 1/3
    q = quantize_threshold(theta, 2, rounding)
    q.sum().backward()
    assert theta.grad.tolist() == [1.0] * 5
    assert torch.equal(q.detach()[:2], torch.full((2,), 1 / 3))  # lifted to the lowest level, and on it
    neuron = IF(threshold=0.2, learn_threshold=True)
    model = nn.Sequential(neuron)
    apply_quantization(model, {"thresholds": {"bits": 2}})
    neuron.threshold.sum().backward()
    assert float(neuron.parametrizations.raw_threshold.original.grad) == 1.0


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=60), st.lists(st.floats(0, 1), min_size=1, max_size=9))
def test_sorted_quantiles_are_torch_quantile_bit_for_bit(values, qs):
    v = torch.tensor(values, dtype=torch.float64).sort().values
    q = torch.tensor(qs, dtype=torch.float64)
    assert torch.equal(sorted_quantiles(v, q), torch.quantile(v, q))


def test_sigmoid_quantizer_starts_on_layers_of_more_than_2_24_weights():
    """torch.quantile refuses more than 2^24 values: a ternary or k-bit quantizer could not start on VGG-16's
    first fully connected layer (25088 x 4096)."""
    w = torch.randn(2**24 + 1, generator=torch.Generator().manual_seed(0))
    for levels in ("ternary", 3):
        q = SigmoidSumQuantizer(levels, init_from=w)
        assert torch.isfinite(q.biases).all() and q.biases.numel() == q.levels.numel() - 1


def test_sigmoid_quantizer_refuses_levels_its_offset_cannot_centre():
    """o = sum(s_i)/2 puts the output on alpha * Y only for symmetric levels: {0, 1, 2, 3} gave alpha * {-1.5, -0.5,
    0.5, 1.5}."""
    with pytest.raises(ValueError, match=r"levels must be symmetric \(lowest = -highest\), got \[0.0, 1.0, 2.0, 3.0\]"):
        SigmoidSumQuantizer(torch.tensor([0.0, 1.0, 2.0, 3.0]))
    q = SigmoidSumQuantizer(torch.tensor([-3.0, -1.0, 0.0, 1.0, 3.0]), init_from=torch.linspace(-1, 1, 101)).eval()
    with torch.no_grad():
        assert set((q(torch.linspace(-1, 1, 101)) / q.alpha).round(decimals=5).tolist()) <= {-3.0, -1.0, 0.0, 1.0, 3.0}
