"""Properties of the spiking neurons (qnoise.neurons): the rate-coding identity, signed IF, reset,
trainable thresholds, state quantization, and the surrogate gradients."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import assume, given

from qnoise.neurons import IF, LIF, ClampActivation, neuron_multistep, spiking_neurons
from qnoise.quant import nearest_levels
from qnoise.surrogate import spike, surrogate_grad

steps = st.integers(1, 40)
thetas = st.floats(0.25, 4.0, width=32)  # the threshold buffer is float32


def constant(x: float, t: int, n: int = 1) -> torch.Tensor:
    return torch.full((t, 1, n), x, dtype=torch.float64)


def far_from_tie(x: float, t: int, theta: float, offset: float) -> bool:
    """True when ``t x / theta + offset`` is not within float noise of an integer (a rounding tie)."""
    u = t * x / theta + offset
    return abs(u - round(u)) > 1e-6


@given(st.floats(-2.0, 6.0), steps, thetas)
def test_half_init_subtract_reset_mean_rate_is_rounding(x, t, theta):
    """mean(out[1..T]) = (theta/T) clip(round(T x / theta), 0, T) — the identity conversion relies on."""
    assume(far_from_tie(x, t, theta, 0.5))
    out = IF(threshold=theta, v_init="half")(constant(x, t))
    expect = (theta / t) * min(max(math.floor(t * x / theta + 0.5), 0), t)
    assert float(out.mean()) == pytest.approx(expect, abs=1e-9)
    assert float(out.mean()) == pytest.approx(float(nearest_levels(torch.tensor(x, dtype=torch.float64), t, theta)))


@given(st.floats(-2.0, 6.0), steps, thetas)
def test_zero_init_subtract_reset_mean_rate_is_floor(x, t, theta):
    assume(far_from_tie(x, t, theta, 0.0))
    out = IF(threshold=theta, v_init="zero")(constant(x, t))
    expect = (theta / t) * min(max(math.floor(t * x / theta), 0), t)
    assert float(out.mean()) == pytest.approx(expect, abs=1e-9)


@given(st.lists(st.floats(-3, 3), min_size=1, max_size=30), thetas,
       st.sampled_from(["zero", "half"]), st.sampled_from(["subtract", "zero"]), st.booleans())
def test_outputs_carry_the_threshold(xs, theta, v_init, reset, signed):
    x = torch.tensor(xs, dtype=torch.float64).view(-1, 1, 1)
    out = IF(threshold=theta, v_init=v_init, reset=reset, signed=signed)(x)
    assert out.shape == x.shape
    allowed = {0.0, theta, -theta} if signed else {0.0, theta}
    assert set(out.flatten().tolist()) <= allowed


@given(st.lists(st.floats(-3, 3), min_size=1, max_size=30), thetas)
def test_subtract_reset_conserves_charge(xs, theta):
    """v[T] = v[0] + sum x - sum out: reset by subtraction loses nothing (what makes rate coding exact)."""
    x = torch.tensor(xs, dtype=torch.float64).view(-1, 1, 1)
    trace = IF(threshold=theta, v_init="half").trace(x)
    v_final = trace.membrane[-1] - trace.out[-1]  # membrane is recorded before the last reset
    assert float(v_final) == pytest.approx(theta / 2 + sum(xs) - float(trace.out.sum()), abs=1e-9)


def test_signed_if_undoes_a_spike_unsigned_does_not():
    x = torch.tensor([1.0, 0.0, -1.0]).view(3, 1, 1)
    signed = IF(threshold=1.0, signed=True)(x).flatten().tolist()
    unsigned = IF(threshold=1.0)(x).flatten().tolist()
    assert signed == [1.0, 0.0, -1.0] and sum(signed) == 0
    assert unsigned == [1.0, 0.0, 0.0]


@given(st.lists(st.floats(-1, 1), min_size=1, max_size=30), thetas)
def test_signed_if_count_is_the_rounded_sum(us, theta):
    """With per-step |x| <= theta and v0 = theta/2, the signed neuron's net spike count is exactly
    max(round(sum x / theta), 0): negative spikes remove the sequential error an unsigned neuron keeps.
    (After each step v stays in [0, theta) once a spike has fired, so charge conservation fixes the count.)"""
    xs = [u * theta for u in us]
    partial_sums = torch.tensor(xs, dtype=torch.float64).cumsum(0).tolist()
    assume(all(far_from_tie(s, 1, theta, 0.5) for s in partial_sums))  # membrane never within eps of 0
    x = torch.tensor(xs, dtype=torch.float64).view(-1, 1, 1)
    trace = IF(threshold=theta, v_init="half", signed=True).trace(x)
    net = trace.spikes.flatten().cumsum(0)
    assert float(net.min()) >= 0
    assert float(net[-1]) == max(math.floor(sum(xs) / theta + 0.5), 0)


def test_reset_to_zero_discards_the_excess():
    x = torch.tensor([1.5, 0.0, 0.6]).view(3, 1, 1)
    assert IF(reset="zero")(x).flatten().tolist() == [1.0, 0.0, 0.0]
    assert IF(reset="subtract")(x).flatten().tolist() == [1.0, 0.0, 1.0]


def test_lif_leaks():
    x = torch.tensor([0.6, 0.0, 0.6]).view(3, 1, 1)
    assert IF()(x).flatten().tolist() == [0.0, 0.0, 1.0]
    assert LIF(beta=0.5)(x).flatten().tolist() == [0.0, 0.0, 0.0]  # 0.6 -> 0.3 -> 0.75
    trace = LIF(beta=0.5).trace(x)
    assert trace.membrane.flatten().tolist() == pytest.approx([0.6, 0.3, 0.75])


def test_state_is_reset_at_every_call():
    n = IF()
    x = torch.full((2, 1, 1), 0.6)
    first, second = n(x), n(x)
    assert torch.equal(first, second)


def test_per_channel_thresholds_broadcast_over_channels():
    n = IF(per_channel=True, channels=3)
    n.set_threshold(torch.tensor([0.5, 1.0, 2.0]))
    x = torch.ones(4, 2, 3, 5, 5)
    rate = n(x).mean(0)
    # input 1 per step: theta 0.5 fires every step (rate 0.5, capped at one spike/step), 1.0 every step, 2.0 every 2nd
    assert torch.allclose(rate[:, 0], torch.tensor(0.5))
    assert torch.allclose(rate[:, 1], torch.tensor(1.0))
    assert torch.allclose(rate[:, 2], torch.tensor(1.0))
    with pytest.raises(ValueError, match="per-channel thresholds"):
        n(torch.ones(4, 2, 4, 5, 5))


def test_trainable_threshold_gets_gradient_through_firing_reset_and_output():
    torch.manual_seed(0)
    n = IF(threshold=0.8, learn_threshold=True, surrogate="sigmoid")
    x = (torch.rand(6, 8, 10) * 1.5).requires_grad_()
    (n(x) ** 2).sum().backward()
    assert n.raw_threshold.grad is not None and n.raw_threshold.grad.abs() > 0
    assert x.grad.abs().sum() > 0


def test_threshold_gradient_matches_finite_differences_of_the_output_scale():
    """With a fixed spike pattern (no surrogate path), d sum(out) / d theta = number of spikes."""
    n = IF(threshold=1.0, learn_threshold=True)
    x = torch.tensor([1.2, 0.1, 0.9, 1.5]).view(4, 1, 1)
    out = n(x)
    assert n.raw_threshold.grad is None
    # spikes are computed without grad (x does not require grad and surrogate only acts through v - theta),
    # so the gradient is count(spikes) from out = theta * s plus the surrogate terms; compare with autograd
    # on an explicit unrolled formula
    out.sum().backward()
    theta = torch.tensor(1.0, requires_grad=True)
    v, total = torch.tensor(0.0), torch.tensor(0.0)
    for xt in x.flatten():
        v = v + xt
        s = spike(v - theta, "atan")
        v = v - s * theta
        total = total + theta * s
    total.backward()
    assert float(n.raw_threshold.grad) == pytest.approx(float(theta.grad))


def test_threshold_stays_positive():
    n = IF(threshold=0.5, learn_threshold=True)
    with torch.no_grad():
        n.raw_threshold.fill_(-1.0)
    assert n.threshold.item() == pytest.approx(1e-3, rel=1e-7)
    n(torch.rand(3, 2, 4)).sum().backward()
    assert n.raw_threshold.grad is not None  # straight-through: it can recover
    with pytest.raises(ValueError, match="threshold must be > 0"):
        n.set_threshold(0.0)


@pytest.mark.parametrize("kind", ["atan", "sigmoid", "rectangle"])
def test_surrogate_backward_is_its_derivative(kind):
    x = torch.linspace(-2, 2, 41, requires_grad=True)
    y = spike(x, kind)
    assert torch.equal(y.detach(), (x >= 0).float())
    y.sum().backward()
    assert torch.allclose(x.grad, surrogate_grad(x.detach(), kind, {"atan": 2.0, "sigmoid": 4.0, "rectangle": 1.0}[kind]))


@pytest.mark.parametrize("kind,alpha", [("atan", 2.0), ("sigmoid", 4.0)])
def test_surrogate_integrates_to_one(kind, alpha):
    """Each smooth surrogate is the derivative of a step from 0 to 1: its integral over R is 1."""
    x = torch.linspace(-200, 200, 400001, dtype=torch.float64)
    area = torch.trapezoid(surrogate_grad(x, kind, alpha), x)
    assert float(area) == pytest.approx(1.0, abs=5e-3)


@given(st.floats(0.0, 1.0), st.integers(1, 16), st.integers(3, 8))
def test_state_quantized_neuron_keeps_threshold_on_grid_and_matches_float_at_high_bits(x, t, bits):
    xs = constant(x, t).float()
    q = IF(v_init="half", state_bits=bits).trace(xs)
    step = 1.0 / 2 ** (bits - 2)
    m = q.membrane / step
    assert torch.allclose(m, m.round(), atol=1e-4)
    if bits >= 8:
        f = IF(v_init="half")(xs)
        assert float((q.out.mean() - f.mean()).abs()) <= 1.0 / t + 1e-6


def test_clamp_activation_is_the_ann_twin():
    n = IF(threshold=0.7)
    z = torch.tensor([-1.0, 0.3, 0.7, 2.0])
    assert ClampActivation(n)(z).tolist() == pytest.approx([0.0, 0.3, 0.7, 0.7])


@given(st.lists(st.floats(-4, 4, width=32) | st.sampled_from([0.7, -0.0, math.inf, -math.inf]), min_size=1,
                max_size=24), st.floats(0.0625, 3.0, width=32))
def test_clamp_activation_paths_agree_bit_for_bit(values, theta):
    """The twin's clamp takes three paths (autograd's, scalar bounds on the CPU, tensor bounds); each gives
    ``min(max(z, 0), theta)`` computed here elementwise in Python, ties at theta included."""
    z = torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1)
    th = float(torch.tensor(theta, dtype=torch.float32))
    want = torch.tensor([min(max(v, 0.0), th) for v in z.flatten().tolist()]).view_as(z)
    scalar = IF(threshold=th)
    channel = IF(threshold=th, per_channel=True, channels=1)
    with torch.no_grad():
        outs = [ClampActivation(scalar)(z), ClampActivation(channel)(z)]
    outs.append(ClampActivation(scalar)(z.clone().requires_grad_()).detach())
    for out in outs:
        assert torch.equal(out, want)


def test_bad_input_and_options_say_what_is_expected():
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\]"):
        IF()(torch.ones(4, 3))
    with pytest.raises(ValueError, match="v_init='mid'"):
        IF(v_init="mid")
    with pytest.raises(ValueError, match="channels"):
        IF(per_channel=True)
    with pytest.raises(ValueError, match="beta"):
        LIF(beta=1.5)


def test_spiking_neurons_lists_neurons_in_order():
    model = torch.nn.Sequential(IF(), torch.nn.Identity(), LIF())
    assert [name for name, _ in spiking_neurons(model)] == ["0", "2"]


def test_functional_and_module_agree():
    x = torch.rand(5, 3, 4) * 2 - 0.5
    n = IF(threshold=0.9, v_init="half", signed=True)
    assert torch.equal(n(x), neuron_multistep(x, torch.tensor(0.9), v_init="half", signed=True))


@given(st.integers(1, 12), st.sampled_from(["zero", "half"]), st.sampled_from(["subtract", "zero"]),
       st.sampled_from([1.0, 0.8]), st.integers(0, 2**16))
def test_inference_fast_path_equals_the_autograd_path(t, v_init, reset, beta, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(t, 3, 4, 5, generator=gen) * 1.5 - 0.25
    theta = torch.tensor(0.7)
    with torch.no_grad():
        fast = neuron_multistep(x, theta, beta, v_init, reset)
    slow = neuron_multistep(x.clone().requires_grad_(), theta, beta, v_init, reset)
    assert torch.equal(fast, slow.detach())


def test_quantize_neurons_puts_all_thresholds_on_one_grid_and_sets_state_bits():
    from qnoise.neurons import quantize_neurons

    model = torch.nn.Sequential(IF(threshold=0.37), IF(threshold=1.0), IF(per_channel=True, channels=2))
    model[2].set_threshold(torch.tensor([0.2, 0.81]))
    step = quantize_neurons(model, threshold_bits=3, state_bits=6, rounding="truncate")
    assert step == pytest.approx(1.0 / 7)
    thetas = torch.cat([m.threshold.detach().flatten() for m in model])
    assert torch.allclose(thetas / step, (thetas / step).round(), atol=1e-5)
    assert thetas.tolist() == pytest.approx([2 / 7, 1.0, 1 / 7, 5 / 7])  # truncation: floor onto the grid
    assert all(m.state_bits == 6 and m.state_rounding == "truncate" for m in model)
    with pytest.raises(ValueError, match="no qnoise neuron"):
        quantize_neurons(torch.nn.Linear(2, 2), threshold_bits=4)


@given(st.integers(1, 10), st.sampled_from(["zero", "half"]), st.sampled_from(["subtract", "zero"]),
       st.sampled_from(["atan", "sigmoid", "rectangle"]), st.booleans(), st.booleans(), st.integers(0, 2**16),
       st.sampled_from([torch.float32, torch.float64]), st.booleans())
def test_fused_training_path_equals_the_unrolled_autograd_path(t, v_init, reset, surrogate, leaky, per_channel,
                                                                seed, dtype, kernel):
    """The one-node neuron (hand-written backward; numba kernel on the CPU, or the torch version other devices
    use) gives the unrolled loop's outputs bit for bit and its gradients for x, theta (per layer or per
    channel) and a learned LIF beta."""
    from unittest import mock

    from qnoise import neuron_fused

    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(t, 3, 2, 5, generator=gen, dtype=torch.float64) * 1.6 - 0.3).to(dtype)
    kwargs = {"v_init": v_init, "reset": reset, "surrogate": surrogate, "learn_threshold": True,
              "per_channel": per_channel, "channels": 2 if per_channel else None, "threshold": 0.7}
    n = LIF(beta=0.85, learn_beta=True, **kwargs) if leaky else IF(**kwargs)
    weight = (torch.rand(x.shape, generator=gen, dtype=torch.float64) - 0.5).to(dtype)
    grads = []
    for record in (False, True):
        xi = x.clone().requires_grad_()
        n.zero_grad()
        with mock.patch.object(neuron_fused, "_use_kernel", lambda _x: kernel):
            out = neuron_multistep(xi, n.broadcast_threshold(xi), n.beta, v_init, reset, surrogate=surrogate,
                                   record=record)
        out = out.out if record else out
        (out * weight).sum().backward()
        params = [xi.grad, n.raw_threshold.grad] + ([n.raw_beta.grad] if leaky else [])
        grads.append((out.detach(), [p.clone() for p in params]))
    (fused, g_fused), (unrolled, g_unrolled) = grads
    assert torch.equal(fused, unrolled)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}
    for a, b in zip(g_fused, g_unrolled, strict=True):
        assert torch.allclose(a.double(), b.double(), **tol), (a, b)


def test_thresholds_quantized_in_training_can_be_set_and_scaled():
    """Where apply_quantization quantizes thresholds, set_threshold wrote into a tensor the parametrization had just
    computed: nothing changed, silently (the dashboard's threshold scale did nothing on such a model, and
    quantize_neurons returned a step without moving a threshold). Now the float threshold behind the quantizer is
    set, scale_thresholds scales it with the shared step, and quantize_neurons refuses by name."""
    from torch import nn

    from qnoise.models import apply_quantization
    from qnoise.neurons import quantize_neurons, scale_thresholds

    neurons = [IF(threshold=0.37), IF(threshold=0.78)]
    model = nn.Sequential(*neurons)
    apply_quantization(model, {"thresholds": {"bits": 8}})
    before = [float(n.threshold) for n in neurons]
    neurons[0].set_threshold(0.5)
    step = float(neurons[0].parametrizations.raw_threshold[0].step)
    assert float(neurons[0].threshold) == pytest.approx(0.5, abs=step / 2) and float(neurons[0].threshold) != before[0]
    neurons[0].set_threshold(before[0])
    scale_thresholds(model, 0.5)
    assert [float(n.threshold) for n in neurons] == pytest.approx([b * 0.5 for b in before], rel=1e-6)
    with pytest.raises(ValueError, match=r"thresholds of 0, 1 are already quantized in training"):
        quantize_neurons(model, threshold_bits=2)
    plain = IF(threshold=0.8)
    scale_thresholds(plain, 0.25)
    assert float(plain.threshold) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="threshold scale must be a finite number > 0"):
        scale_thresholds(plain, 0.0)
