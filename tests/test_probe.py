"""The probe (qnoise.probe): hooks, the exact error decomposition, isolated mode, spikes, synaptic operations,
and the analysis entry points. Each definition is checked against an explicit computation on full tensors."""

from __future__ import annotations

import itertools
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import qnoise
from qnoise import IF, MultiStep
from qnoise.metrics import EnergyModel
from qnoise.neurons import spiking_neurons
from qnoise.probe import COLUMNS, OUTPUT, Probe, analyze, ann_twin, cumulative_mean, decompose_ann, sensitivity
from qnoise.probe.terms import rate_rule
from qnoise.quant import nearest_levels, quantize_weights, weight_quantizers

E = EnergyModel()
E_AC_PJ = E.ac_pj(32, 32)  # float32 accumulate: 0.9 pJ
E_MAC_PJ = E.mac_pj(32, 32, 32)  # float32 multiply-accumulate: 3.7 + 0.9 pJ

REPO = Path(__file__).resolve().parents[1]
TERMS = ("weight", "prop", "quant", "seq")
PER_LAYER_T = ("sqnr_db", "mse", "nmse", "cosine", *(f"err_{k}_{s}" for k in TERMS for s in ("mse", "mean", "contrib")),
               "err_total_mse", "err_total_mean", "firing_rate", "synops", "energy_pj")
PER_LAYER = ("weight_sqnr_db", "weight_bits", "params", "macs", "memory_bits")
PER_RUN = ("accuracy", "ann_accuracy", "agreement", "synops", "energy_pj", "ann_energy_pj", "memory_bits")


def small_cnn(seed: int = 0, **neuron) -> nn.Sequential:
    """conv(2->4, 3x3) + BN + IF + avgpool 2 -> linear(64->16) + IF -> linear(16->5), rates in a useful range."""
    torch.manual_seed(seed)
    kw = {"v_init": "half", **neuron}
    m = nn.Sequential(
        MultiStep(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4)), IF(**kw), MultiStep(nn.AvgPool2d(2)),
        MultiStep(nn.Flatten(), nn.Linear(4 * 4 * 4, 16)), IF(**kw), MultiStep(nn.Linear(16, 5)))
    bn = m[0].body[1]
    with torch.no_grad():
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(0.0, 0.4)
        m[3].body[1].weight.mul_(3.0)
        m[3].body[1].bias.add_(0.2)
    return m.eval()


def events(n: int = 24, t: int = 6, seed: int = 1, p: float = 0.3):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, t, 2, 8, 8, generator=g) < p).float(), torch.randint(0, 5, (n,), generator=g)


def static(n: int = 24, t: int = 6, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 2, 8, 8, generator=g)
    return x.expand(n, t, 2, 8, 8).contiguous(), torch.randint(0, 5, (n,), generator=g)


def value(df, layer, metric, t, mode="propagated") -> float:
    row = df[(df.layer == layer) & (df.metric == metric) & (df.t == t) & (df["mode"] == mode)]
    assert len(row) == 1, (layer, metric, t, mode, len(row))
    return float(row.value.iloc[0])


def record(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each neuron's (input, output) for a forward on ``x [T, B, ...]``, through plain hooks."""
    seen = {}
    hooks = [n.register_forward_hook(lambda m, a, o, name=name: seen.__setitem__(name, (a[0], o)))
             for name, n in spiking_neurons(model)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def twin_record(model: nn.Module, x: torch.Tensor, weights="float") -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The ANN twin's (pre-activation, activation) per neuron layer on the mean input frame."""
    twin = ann_twin(model, weights)
    seen = {}
    hooks = [m.register_forward_hook(lambda mod, a, o, name=name: seen.__setitem__(name, (a[0], o)))
             for name, m in twin.named_modules() if isinstance(m, qnoise.ClampActivation)]
    with torch.no_grad():
        twin(x.mean(0, keepdim=True))
    for h in hooks:
        h.remove()
    return seen


# ------------------------------------------------------------------------------------------------ hooks

def test_no_hook_survives_the_context_and_outputs_are_unchanged():
    model = small_cnn()
    X, y = events()
    x = X.transpose(0, 1)
    count = lambda: sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())  # noqa: E731
    before = count()
    with torch.no_grad():
        plain = model(x)
        with Probe(model) as probe:
            assert count() > before
            probed = probe.step(x, y)
            again = model(x)
    assert count() == before
    assert torch.equal(plain, probed) and torch.equal(plain, again)
    with pytest.raises(RuntimeError, match="boom"):
        with Probe(model) as probe:
            probe.step(x, y)
            raise RuntimeError("boom")
    assert count() == before
    with pytest.raises(ValueError):  # an error inside the hooks (a batch with another T) also cleans up
        with Probe(model) as probe:
            probe.step(x, y)
            probe.step(x[:3], y)
    assert count() == before


def test_memory_does_not_grow_with_samples():
    model = small_cnn()
    X, y = events(n=40)
    with torch.no_grad(), Probe(model) as probe:
        probe.step(X[:8].transpose(0, 1), y[:8])
        shapes = {k: v.shape for k, v in probe.rec.errors.items()}
        for i in range(8, 40, 8):
            probe.step(X[i:i + 8].transpose(0, 1), y[i:i + 8])
        assert {k: v.shape for k, v in probe.rec.errors.items()} == shapes
        assert all(s == (6, 15) for s in shapes.values())
        assert probe.rec.samples == 40


# ------------------------------------------------------------------------------------------------ definitions

def test_decomposition_adds_up_elementwise():
    g = torch.Generator().manual_seed(0)
    rate, a_z, a_hat, ann, q = (torch.rand(6, 50, generator=g) for _ in range(5))
    parts = decompose_ann(rate, a_z, a_hat, ann, q)
    total = parts["weight"] + parts["prop"] + parts["quant"] + parts["seq"]
    assert torch.allclose(total, parts["total"], atol=1e-6)
    assert torch.equal(parts["total"], rate - ann)


def test_z_by_cumsum_equals_explicit_synaptic_op_on_rates():
    """z_l(t) = cumsum(x_l)/t equals f_l(r_{l-1}(t)) computed explicitly (f_l = avgpool, flatten, linear)."""
    model = small_cnn()
    X, _ = events()
    x = X.transpose(0, 1)
    rec = record(model, x)
    _, out1 = rec["1"]
    x2, _ = rec["4"]
    r1 = cumulative_mean(out1)  # [T, B, 4, 8, 8]
    f2 = nn.Sequential(model[2].body, model[3].body)  # avgpool, flatten, linear
    with torch.no_grad():
        explicit = torch.stack([f2(r1[t]) for t in range(r1.shape[0])])
    assert torch.allclose(cumulative_mean(x2), explicit, atol=1e-5)


def z_hat_of(model: nn.Module, twin: dict, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The twin's input through the SNN's own (quantized) synaptic ops, written out for `small_cnn`:
    layer 1 sees the mean frame, layer 4 the twin's activation of layer 1 (pool, flatten, linear)."""
    with torch.no_grad():
        return {"1": model[0].body(x.mean(0)).unsqueeze(0),
                "4": model[3].body(model[2].body(twin["1"][1][0])).unsqueeze(0)}


@pytest.mark.parametrize("data", ["events", "static"])
@pytest.mark.parametrize("reference", ["ann", "ann-quantized"])
@pytest.mark.parametrize("compile", [False, True], ids=["torch functions", "fused kernel"])
def test_probe_sums_equal_full_tensor_definitions(data, reference, compile):
    """Every per-layer metric from the running sums equals the definition on whole tensors (DESIGN.md's four
    terms with z_hat written out by hand), whichever implementation computes the sums."""
    model = small_cnn()
    X, y = events() if data == "events" else static()
    df = analyze(model, (X, y), weight_bits=3, reference=reference, batch_size=10, compile=compile)
    quantize_weights(model, 3)
    x = X.transpose(0, 1)
    rec = record(model, x)
    twin = twin_record(model, x, "float" if reference == "ann" else "quantized")
    z_hat = z_hat_of(model, twin, x)
    T = x.shape[0]
    for name in ("1", "4"):
        xin, out = (v.double() for v in rec[name])
        Z, A = (v.double() for v in twin[name])
        theta = float(model.get_submodule(name).threshold)
        zh = z_hat[name].double()
        if reference == "ann-quantized":
            assert torch.allclose(zh, Z, atol=1e-5)
        r, z = cumulative_mean(out), cumulative_mean(xin)
        q = torch.stack([nearest_levels(z[t - 1], t, theta) for t in range(1, T + 1)])  # v_init half: rounding
        parts = decompose_ann(r, z.clamp(0, theta), zh.clamp(0, theta), A, q)
        for t in range(1, T + 1):
            p = {k: v.expand_as(r)[t - 1] for k, v in parts.items()}
            Ar, rr = A[0], r[t - 1]
            for comp in (*TERMS, "total"):
                assert value(df, name, f"err_{comp}_mean", t) == pytest.approx(float(p[comp].mean()), abs=1e-6)
                assert value(df, name, f"err_{comp}_mse", t) == pytest.approx(float(p[comp].pow(2).mean()),
                                                                              rel=1e-4, abs=1e-9)
            for comp in TERMS:
                contrib = float((p[comp] * p["total"]).mean())
                assert value(df, name, f"err_{comp}_contrib", t) == pytest.approx(contrib, rel=1e-4, abs=1e-9)
            assert value(df, name, "mse", t) == pytest.approx(float(p["total"].pow(2).mean()), rel=1e-4, abs=1e-9)
            assert value(df, name, "nmse", t) == pytest.approx(float(p["total"].pow(2).sum() / Ar.pow(2).sum()),
                                                               rel=1e-4)
            sq = 20 * math.log10(float(Ar.norm()) / float(p["total"].norm()))
            assert value(df, name, "sqnr_db", t) == pytest.approx(sq, rel=1e-4)
            cos = float((rr * Ar).sum() / (rr.norm() * Ar.norm()))
            assert value(df, name, "cosine", t) == pytest.approx(cos, abs=1e-5)
            fr = float((out[:t] != 0).double().mean())
            assert value(df, name, "firing_rate", t) == pytest.approx(fr, rel=1e-9)


@pytest.mark.parametrize("neuron", [{}, {"signed": True}, {"v_init": "zero"}, {"reset": "zero"}])
def test_mean_decomposition_adds_up_in_both_modes(neuron):
    model = small_cnn(**neuron)
    df = analyze(model, events(), weight_bits=4, batch_size=8)
    for mode in ("propagated", "isolated"):
        part = df[df["mode"] == mode].pivot_table(index=["layer", "t"], columns="metric", values="value")
        part = part.dropna(subset=["err_total_mean"])
        total = sum(part[f"err_{k}_mean"] for k in TERMS)
        assert np.allclose(total, part["err_total_mean"], atol=1e-6, rtol=0)
        contrib = sum(part[f"err_{k}_contrib"] for k in TERMS)
        assert np.allclose(contrib, part["err_total_mse"], rtol=1e-6, atol=1e-12)
        assert len(part) == 2 * 6


def test_single_if_layer_with_constant_input_has_only_quantization_error():
    """A constant input: zero sequential error; quantization error = mean (Q_t(z) - clamp(z, 0, theta))^2."""
    torch.manual_seed(3)
    lin = nn.Linear(12, 30)
    with torch.no_grad():
        lin.weight.mul_(2.0)
    model = nn.Sequential(MultiStep(lin), IF(threshold=0.7, v_init="half"), MultiStep(nn.Linear(30, 4))).eval()
    X, y = static(n=32, t=1)
    X = X.reshape(32, 1, -1)[:, :, :12].expand(32, 16, 12).contiguous()
    df = analyze(model, (X, y % 4), batch_size=32)  # four outputs: labels 0..3
    with torch.no_grad():
        z = lin(X[:, 0]).double()
    a = z.clamp(0, 0.7)
    for t in range(1, 17):
        q = nearest_levels(z, t, 0.7)
        assert value(df, "1", "err_seq_mse", t) == pytest.approx(0.0, abs=1e-12)
        assert value(df, "1", "err_prop_mse", t) == pytest.approx(0.0, abs=1e-10)
        assert value(df, "1", "err_quant_mse", t) == pytest.approx(float(((q - a) ** 2).mean()), rel=1e-5)
        assert value(df, "1", "err_quant_mean", t) == pytest.approx(float((q - a).mean()), abs=1e-7)
        # the isolated layer sees the same constant input
        assert value(df, "1", "err_quant_mse", t, "isolated") == pytest.approx(float(((q - a) ** 2).mean()),
                                                                                rel=1e-5)


@pytest.mark.parametrize("compile", [True, False])
def test_equal_counts_give_a_sequential_error_of_exactly_zero(compile):
    """A constant input and v[0] = theta/2: the IF's count is the closed form's at every step, so the sequential
    error is 0, not float noise. The fused CPU kernel took it as ``theta n / t - theta k / t``, which fast-math
    reassociation and fused multiply-adds left at 1e-8 (mean) for 3,000 neurons; it now takes it from the
    counts (``theta / t (n - k)``), as the torch sums do."""
    torch.manual_seed(3)
    lin = nn.Linear(12, 3000)
    with torch.no_grad():
        lin.weight.mul_(2.0)
    model = nn.Sequential(MultiStep(lin), IF(threshold=0.7, v_init="half"), MultiStep(nn.Linear(3000, 4))).eval()
    X = torch.rand(64, 1, 12).expand(64, 16, 12).contiguous()
    df = analyze(model, (X, torch.arange(64) % 4), batch_size=64, compile=compile)
    seq = df[(df["layer"] == "1") & df["metric"].isin(["err_seq_mse", "err_seq_mean", "err_seq_contrib"])]
    assert len(seq) == 2 * 3 * 16 and (seq["value"] == 0).all()


def _identity_if(**neuron) -> nn.Sequential:
    lin = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    return nn.Sequential(MultiStep(lin), IF(**neuron), MultiStep(nn.Linear(1, 2))).eval()


def test_signed_if_reduces_sequential_error():
    """Input +1, -1, 0, 0 (theta 1): the unsigned neuron's early spike cannot be undone (rate 1/4 for a
    mean input of 0); the signed neuron cancels it with a negative spike."""
    X = torch.tensor([1.0, -1.0, 0.0, 0.0]).view(1, 4, 1).repeat(8, 1, 1)
    y = torch.zeros(8, dtype=torch.long)
    model = _identity_if(threshold=1.0)
    unsigned = analyze(model, (X, y), neuron="if")
    signed = analyze(model, (X, y), neuron="signed")
    assert value(unsigned, "1", "err_seq_mse", 4) == pytest.approx(0.25**2)
    assert value(signed, "1", "err_seq_mse", 4) == pytest.approx(0.0)
    assert value(signed, "1", "err_seq_mse", 4) < value(unsigned, "1", "err_seq_mse", 4)
    assert not model[1].signed  # restored
    assert value(signed, "1", "firing_rate", 4) == pytest.approx(2 / 4)  # +1 and -1 are both events


# ------------------------------------------------------------------------------------------------ isolated mode

@pytest.mark.parametrize("neuron,rule", [
    ({"v_init": "half"}, "round"),
    ({"v_init": "zero"}, "floor"),
    ({"v_init": "half", "reset": "zero"}, "dynamics"),
    ({"v_init": "half", "signed": True}, "round"),
    ({"v_init": "zero", "per_channel": True, "channels": 4}, "floor"),
    ({"v_init": "half", "state_bits": 6}, "dynamics"),
])
@pytest.mark.parametrize("bits", [None, 2])
def test_isolated_mode_equals_the_neuron_run_on_z_hat(neuron, rule, bits):
    """Isolated mode (the closed form in the kernel, or the neuron's own forward) gives the stats of the real
    neuron run on z_hat, the twin's input through the layer's own quantized weights (torch.ao's shadow)."""
    neuron = dict(neuron)
    per_channel = {k: neuron.pop(k) for k in ("per_channel", "channels") if k in neuron}
    model = small_cnn(**neuron)
    if per_channel:
        model[1] = IF(**neuron, **per_channel)
        with torch.no_grad():
            model[1].raw_threshold.copy_(torch.tensor([0.6, 0.9, 1.2, 1.5]))
    assert rate_rule(model[1]) == rule
    X, y = events(n=16)
    df = analyze(model, (X, y), batch_size=16, weight_bits=bits)
    if bits:
        quantize_weights(model, bits)
    x = X.transpose(0, 1)
    twin = twin_record(model, x)
    z_hat = z_hat_of(model, twin, x)["1"]
    _, A = twin["1"]
    neuron1 = model[1]
    T = x.shape[0]
    with torch.no_grad():
        out = neuron1(z_hat.expand(T, *z_hat.shape[1:]).contiguous()).double()
    theta = neuron1.broadcast_threshold(z_hat).double()
    r = cumulative_mean(out)
    a_hat = torch.minimum(z_hat.double().clamp_min(0), theta)
    parts = decompose_ann(r, a_hat, a_hat, A.double(), r)  # constant input: Q_t(z_hat) is the neuron's own rate
    for t in range(1, T + 1):
        for comp in ("weight", "quant", "total"):
            p = parts[comp].expand_as(r)[t - 1]
            assert value(df, "1", f"err_{comp}_mean", t, "isolated") == pytest.approx(float(p.mean()), abs=1e-6)
            assert value(df, "1", f"err_{comp}_mse", t, "isolated") == pytest.approx(float(p.pow(2).mean()),
                                                                                     rel=1e-4, abs=1e-10)
        assert value(df, "1", "err_prop_mse", t, "isolated") == 0.0
        assert value(df, "1", "err_seq_mse", t, "isolated") == pytest.approx(0.0, abs=1e-12)
        assert value(df, "1", "firing_rate", t, "isolated") == pytest.approx(float((out[:t] != 0).double().mean()),
                                                                             rel=1e-5)


def test_cumulative_twin_has_no_first_layer_propagated_error():
    model = small_cnn()
    df = analyze(model, events(), twin_input="cumulative")
    for t in range(1, 7):
        assert value(df, "1", "err_prop_mse", t) == pytest.approx(0.0, abs=1e-10)
    assert len(df[(df.metric == "ann_accuracy") & (df.t > 0)]) == 6
    mean = analyze(model, events())
    assert value(mean, "1", "err_prop_mse", 1) > 1e-4  # the mean twin has seen frames the SNN has not


def test_quantized_reference_isolates_spiking_from_weight_noise():
    """Against the float twin a layer's own 2-bit weights are weight error (not propagated); against the twin
    with the SNN's own weights there is no weight error at all."""
    model = small_cnn()
    data = static()
    fl = analyze(model, data, weight_bits=2, reference="ann")
    qu = analyze(model, data, weight_bits=2, reference="ann-quantized")
    assert value(fl, "1", "err_weight_mse", 6) > 1e-4
    assert value(fl, "1", "err_prop_mse", 6) == pytest.approx(0.0, abs=1e-12)  # static input: nothing inherited
    for layer in ("1", "4"):
        for t in range(1, 7):
            assert value(qu, layer, "err_weight_mse", t) == 0.0
    assert value(qu, "1", "err_prop_mse", 6) == pytest.approx(0.0, abs=1e-12)
    assert set(fl.reference) == {"ann"} and set(qu.reference) == {"ann-quantized"}


# ------------------------------------------------------------------------------------------------ costs

def _hand_ops(spikes: torch.Tensor, cin: int, cout: int, h: int, w: int, k: int, pad: int) -> float:
    """Accumulates of a stride-1 conv: for each nonzero input, the (out channel, out position) pairs it meets."""
    total = 0.0
    for idx in (spikes != 0).nonzero().tolist():
        c, i, j = idx[-3:]
        for oi, oj in itertools.product(range(h), range(w)):
            if 0 <= i + pad - oi < k and 0 <= j + pad - oj < k:
                total += cout
    return total


def test_synops_equal_a_hand_count_on_a_tiny_conv():
    torch.manual_seed(0)
    model = nn.Sequential(MultiStep(nn.Conv2d(1, 2, 3, padding=1)), IF(threshold=0.3),
                          MultiStep(nn.Conv2d(2, 3, 3, padding=1)), IF(threshold=0.3),
                          MultiStep(nn.Flatten(), nn.Linear(3 * 5 * 5, 4))).eval()
    X = (torch.rand(3, 4, 1, 5, 5) < 0.4).float()  # binary events: accumulates
    y = torch.zeros(3, dtype=torch.long)
    df = analyze(model, (X, y))
    rec = record(model, X.transpose(0, 1))
    s1 = rec["1"][1]
    s3 = rec["3"][1]
    for t in range(1, 5):
        conv1 = _hand_ops(X.transpose(0, 1)[:t], 1, 2, 5, 5, 3, 1) / 3
        conv2 = _hand_ops(s1[:t], 2, 3, 5, 5, 3, 1) / 3
        fc = float((s3[:t] != 0).sum()) * 4 / 3
        assert value(df, "1", "synops", t) == pytest.approx(conv1)
        assert value(df, "1", "synops_ac", t) == pytest.approx(conv1)
        assert value(df, "3", "synops", t) == pytest.approx(conv2)
        assert value(df, "<output>", "synops", t) == pytest.approx(conv1 + conv2 + fc)
        assert value(df, "<output>", "energy_pj", t) == pytest.approx((conv1 + conv2 + fc) * E_AC_PJ)
    assert value(df, "1", "macs", 0) == 25 * 2 * 9
    assert value(df, "3", "macs", 0) == 25 * 3 * 2 * 9
    assert value(df, "<output>", "ann_energy_pj", 0) == pytest.approx((450 + 1350 + 75 * 4) * E_MAC_PJ)
    # analog data costs MACs, at the nonzero inputs only
    analog = analyze(model, (X * torch.rand_like(X) * 2, y))
    assert value(analog, "1", "synops_mac", 4) == pytest.approx(_hand_ops(X.transpose(0, 1), 1, 2, 5, 5, 3, 1) / 3)
    assert value(analog, "1", "synops_ac", 4) == 0.0


def test_average_pooling_folds_into_the_next_layer():
    """Each spike reaches the weights of the conv after the pool at its pooled position."""
    torch.manual_seed(0)
    model = nn.Sequential(MultiStep(nn.Conv2d(1, 2, 3, padding=1)), IF(threshold=0.3), MultiStep(nn.AvgPool2d(2)),
                          MultiStep(nn.Conv2d(2, 3, 3, padding=1)), IF(threshold=0.3),
                          MultiStep(nn.Flatten(), nn.Linear(3 * 2 * 2, 4))).eval()
    X = (torch.rand(2, 3, 1, 5, 5) < 0.5).float()
    df = analyze(model, (X, torch.zeros(2, dtype=torch.long)))
    s1 = record(model, X.transpose(0, 1))["1"][1]
    pooled_fan = np.zeros((2, 2))  # conv 3x3 pad 1 on a 2x2 map: each position meets 4 outputs x 3 channels
    for i, j in itertools.product(range(2), range(2)):
        pooled_fan[i, j] = 3 * sum(1 for oi, oj in itertools.product(range(2), range(2))
                                   if abs(i - oi) <= 1 and abs(j - oj) <= 1)
    hand = 0.0
    for idx in (s1 != 0).nonzero().tolist():
        i, j = idx[-2:]
        if i < 4 and j < 4:  # the 5th row/column is dropped by the 2x2 pool
            hand += pooled_fan[i // 2, j // 2]
    assert value(df, "4", "synops", 3) == pytest.approx(hand / 2)


def test_memory_bits_count_weights_at_their_width():
    model = small_cnn()
    df = analyze(model, static(n=4), weight_bits=4)
    weights = (2 * 4 * 9) * 4 + (64 * 16) * 4 + (16 * 5) * 4
    scales = 3  # one per quantized weight tensor
    other = (4 + 16 + 5) + 2 * 4 + 2  # biases, folded BN (scale, shift per channel), one threshold per layer
    states = (4 * 8 * 8 + 16) * 32
    assert value(df, "<output>", "memory_bits", 0) == weights + (scales + other) * 32 + states
    per_layer = sum(value(df, layer, "memory_bits", 0) for layer in ("1", "4", "5"))
    assert per_layer == value(df, "<output>", "memory_bits", 0)
    binary = analyze(model, static(n=4), weight_bits=1, state_bits=8)
    assert value(binary, "<output>", "memory_bits", 0) == weights // 4 + (scales + other) * 32 + states // 4
    assert value(binary, "1", "weight_bits", 0) == 1
    assert value(binary, "1", "synops_ac", 6) > 0 and value(binary, "1", "synops_mac", 6) == 0  # sign weights


# ------------------------------------------------------------------------------------------------ analysis

def test_table_schema_and_vocabulary():
    df = analyze(small_cnn(), events(), weight_bits=4, state_bits=8, keep_tensors=3)
    assert list(df.columns) == COLUMNS
    assert COLUMNS == ["model", "dataset", "weight_bits", "state_bits", "timesteps", "rounding", "neuron", "reference",
                       "mode", "layer", "t", "metric", "value"]  # DESIGN.md, Results
    layer_rows = df[df.layer == "1"]
    assert set(PER_LAYER_T) | {"membrane_sqnr_db"} <= set(layer_rows.metric)
    assert set(PER_LAYER) <= set(layer_rows.metric)
    assert set(PER_RUN) <= set(df[df.layer == OUTPUT].metric)
    assert set(df["mode"]) == {"propagated", "isolated"}
    assert df.weight_bits.unique().tolist() == [4] and df.state_bits.unique().tolist() == [8]
    assert df.timesteps.unique().tolist() == [6]
    assert not df.duplicated(["layer", "t", "metric", "mode"]).any()
    assert set(df.reference) == {"ann"}
    side = df.attrs["qnoise"]
    assert side["reference"] == "ann" and side["neurons"]["1"]["q_t"] == "dynamics" and "float_add" in side["energy"]
    tensors = df.attrs["tensors"]
    assert tensors["1"]["spikes"].shape == (6, 3, 4, 8, 8)
    assert tensors["1"]["membrane"].shape == (6, 3, 4, 8, 8)
    assert np.isfinite(value(df, "1", "membrane_sqnr_db", 6))


def test_analyze_restores_the_model():
    model = small_cnn()
    quantize_weights(model, 6)
    model[1].state_bits = None
    X, y = events()
    x = X.transpose(0, 1)
    with torch.no_grad():
        before = model(x)
    q_before = {k: id(v) for k, v in weight_quantizers(model).items()}
    model.train()
    analyze(model, (X, y), weight_bits=2, state_bits=6, neuron="signed")
    assert model.training
    model.eval()
    assert {k: id(v) for k, v in weight_quantizers(model).items()} == q_before
    assert all(n.state_bits is None and not n.signed for _, n in spiking_neurons(model))
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_accuracy_and_agreement_follow_their_definitions():
    model = small_cnn()
    X, y = events()
    df = analyze(model, (X, y), batch_size=7)
    x = X.transpose(0, 1)
    with torch.no_grad():
        out = model(x)
        ann = ann_twin(model)(x.mean(0, keepdim=True))[0].argmax(-1)
    for t in range(1, 7):
        pred = out[:t].mean(0).argmax(-1)
        assert value(df, OUTPUT, "accuracy", t) == pytest.approx(float((pred == y).float().mean()))
        assert value(df, OUTPUT, "agreement", t) == pytest.approx(float((pred == ann).float().mean()))
    assert value(df, OUTPUT, "ann_accuracy", 0) == pytest.approx(float((ann == y).float().mean()))


def test_data_forms_agree():
    model = small_cnn()
    X, y = events(n=20)
    from torch.utils.data import DataLoader, TensorDataset

    from qnoise.data import collate_time_first

    ref = analyze(model, (X, y), batch_size=8)
    ds = TensorDataset(X, y)
    for data in (ds, DataLoader(ds, batch_size=8), DataLoader(ds, batch_size=5, collate_fn=collate_time_first)):
        df = analyze(model, data, batch_size=8)
        assert np.allclose(df.value.to_numpy(), ref.value.to_numpy(), rtol=1e-6, atol=1e-9, equal_nan=True)
    with pytest.raises(ValueError, match="timesteps"):
        analyze(model, (X, y), timesteps=4)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.bool, torch.int16, torch.float64, torch.float16])
def test_frames_of_another_type_are_converted_to_the_models(dtype):
    """uint8 or bool events and numpy's float64 are what users' frames come as: converted to the model's type,
    spike frames give the float32 frames' table bit for bit (every 0/1 value is exact in each type); before,
    torch refused them inside the first layer ("expected scalar type Byte but found Float")."""
    from qnoise.accuracy import predictions

    model = small_cnn()
    X, y = events(n=12)
    ref = analyze(model, (X, y), batch_size=8, weight_bits=4)
    df = analyze(model, (X.to(dtype), y), batch_size=8, weight_bits=4)
    assert df["value"].fillna(-1).equals(ref["value"].fillna(-1))
    assert np.array_equal(predictions(model, (X.to(dtype), y))[0], predictions(model, (X, y))[0])


def _error_at(df, layer, T) -> float:
    return value(df, layer, "err_total_mse", T)


def test_error_shrinks_with_timesteps_and_weight_bits_on_a_small_model():
    model = small_cnn()
    X, y = static(n=32, t=1)
    errs_t = [_error_at(analyze(model, (X, y), timesteps=T), "4", T) for T in (2, 8, 32)]
    assert errs_t[0] > errs_t[1] > errs_t[2]
    errs_b = [_error_at(analyze(model, (X, y), timesteps=16, weight_bits=b), "4", 16) for b in (2, 4, 8)]
    assert errs_b[0] > errs_b[1] > errs_b[2]


def _sample_model():
    from qnoise.commands._common import sample_checkpoints

    found = [p for p in sample_checkpoints() if (p / "model.safetensors").exists()]
    if not found:
        pytest.skip("sample_data/ holds no checkpoint yet (made by `qnoise sample-data`, issue 3)")
    from qnoise.io import load_checkpoint

    return load_checkpoint(found[0]), found[0]


def test_error_shrinks_with_timesteps_and_weight_bits_on_the_sample_model():
    model, path = _sample_model()
    ds = (model.qnoise_checkpoint.get("dataset") or {}).get("name", "digits")
    last = [layer for layer, _ in spiking_neurons(model)][-1]
    errs_t = [_error_at(analyze(model, ds, timesteps=T, limit=32, isolate=False), last, T) for T in (2, 8, 32)]
    assert errs_t[0] > errs_t[1] > errs_t[2], errs_t
    errs_b = [_error_at(analyze(model, ds, timesteps=16, weight_bits=b, limit=32, isolate=False), last, 16)
              for b in (2, 4, 8)]
    assert errs_b[0] > errs_b[1] > errs_b[2], errs_b


def test_sensitivity_rows_and_baselines():
    model = small_cnn()
    X, y = static(n=32)
    sens = sensitivity(model, (X, y), weight_bits=2)
    assert {"quantity", "variant"} <= set(sens.columns)
    w = sens[sens.quantity == "weights"]
    assert set(w[w.layer != "<all>"].layer) == {"1", "4", "5"}
    assert set(w.variant) == {"all", "none", "only", "all_but"}
    fl = analyze(model, (X, y), weight_bits=32)
    q2 = analyze(model, (X, y), weight_bits=2)
    none = float(w[w.variant == "none"].value.iloc[0])
    allq = float(w[w.variant == "all"].value.iloc[0])
    assert none == pytest.approx(value(fl, OUTPUT, "accuracy", 6))
    assert allq == pytest.approx(value(q2, OUTPUT, "accuracy", 6))
    ts = sens[sens.quantity == "timesteps"]
    assert float(ts[ts.variant == "none"].value.iloc[0]) == pytest.approx(value(fl, OUTPUT, "ann_accuracy", 0))
    assert set(ts[ts.layer != "<all>"].layer) == {"1", "4"}


def test_fused_kernel_matches_the_step_functions_end_to_end():
    """The whole table with the fused kernel (numba on the CPU; it must not fall back) equals the table
    from the per-step reference functions."""
    model = small_cnn(signed=True)
    data = events(n=16)
    eager = analyze(model, data, compile=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        fused = analyze(model, data, compile=True)
    assert np.allclose(fused.value.to_numpy(), eager.value.to_numpy(), rtol=1e-5, atol=1e-8, equal_nan=True)


def test_a_given_reference_ann_is_matched_by_order():
    """A quantized ANN as reference (its LearnableClip activations matched to the neurons in order): the
    terms use that ANN's own activation a = LearnableClip, and equal the definition written out."""
    import copy

    from qnoise.quant import LearnableClip

    model = small_cnn()
    ann = copy.deepcopy(model)
    for i in (1, 4):
        ann[i] = LearnableClip(bits=2, alpha=float(model[i].threshold), learn_alpha=False)
    X, y = static(n=16)
    df = analyze(model, (X, y), reference=ann)
    assert set(df.reference) == {"ann-given"}
    same = analyze(model, (X, y), reference=ann_twin(model))
    fl = analyze(model, (X, y))
    assert np.allclose(same.value.to_numpy(), fl.value.to_numpy(), equal_nan=True)
    x = X.transpose(0, 1)
    seen = {}
    hooks = [m.register_forward_hook(lambda mod, a, o, i=i: seen.__setitem__(i, (a[0], o))) for i, m in
             ((1, ann[1]), (4, ann[4]))]
    with torch.no_grad():
        ann(x.mean(0, keepdim=True))
    for h in hooks:
        h.remove()
    rec = record(model, x)
    for i, name in ((1, "1"), (4, "4")):
        Z, A = (v.double() for v in seen[i])
        xin, out = (v.double() for v in rec[name])
        theta = float(model[i].threshold)
        r, z = cumulative_mean(out), cumulative_mean(xin)
        q = torch.stack([nearest_levels(z[t - 1], t, theta) for t in range(1, 7)])
        a = ann[i].double()
        with torch.no_grad():
            parts = decompose_ann(r, a(z), a(Z), A, q)  # same weights: z_hat = Z
        for t in (1, 6):
            for comp in (*TERMS, "total"):
                assert value(df, name, f"err_{comp}_mean", t) == pytest.approx(
                    float(parts[comp].expand_as(r)[t - 1].mean()), abs=1e-6)
        assert value(df, name, "err_weight_mse", 6) == 0.0


@pytest.mark.parametrize("reference", ["ann", "snn"])
def test_shared_reference_cache_changes_nothing(reference):
    """Sweeps share the reference's activations between configurations."""
    model = small_cnn()
    data = events(n=20)
    cache: dict = {}
    for bits, state in ((2, None), (4, 6), (32, None)):
        shared = analyze(model, data, weight_bits=bits, state_bits=state, batch_size=8, reference_cache=cache,
                         reference=reference)
        alone = analyze(model, data, weight_bits=bits, state_bits=state, batch_size=8, reference=reference)
        pd.testing.assert_frame_equal(shared, alone)
    assert len(cache) == 3


def test_structures_of_several_zero_patterns_stay_cached_and_none_goes_stale():
    """A sweep's cells take turns between weight widths: each zero pattern's structure is computed once; a new
    pattern (a weight set to zero) is computed anew, with the fan-out it implies."""
    from unittest import mock

    from qnoise.probe import configured
    from qnoise.probe import structure as S

    model = small_cnn()
    real = S._model_structure
    with mock.patch.object(S, "_model_structure", side_effect=real) as built:
        for _ in range(3):
            for bits in (2, 32):
                with configured(model, weight_bits=bits):
                    S.model_structure(model, (2, 8, 8))
        assert built.call_count == 2
        before = S.model_structure(model, (2, 8, 8)).fanout
        with torch.no_grad():
            model[0].body[0].weight[0].zero_()  # the first conv's first output channel: no more weights there
        after = S.model_structure(model, (2, 8, 8)).fanout
        assert built.call_count == 3
        source = next(iter(after))
        assert after[source][0].sum() < before[source][0].sum()


@pytest.mark.parametrize("options", [{"per_channel": True}, {"keep_first_last": True}])
def test_sensitivity_uses_the_models_own_weight_quantizer(options):
    """"all" (every layer quantized) is the model `analyze` runs at the same bits: per-channel scales and the
    layers the spec keeps in float included (they moved "all" from 0.5 and 0.656 to 0.531 before)."""
    from qnoise.metrics import predicted_class
    from qnoise.models import build_model
    from qnoise.probe.copying import clone_model

    torch.manual_seed(0)
    model = build_model("mlp", (12,), 4, hidden=[16, 8], quantization={"weights": {"bits": 8, **options}})
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(2.5)
    model.eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(96, 1, 12, generator=g).expand(96, 6, 12).contiguous()
    with torch.no_grad():
        y = predicted_class(clone_model(model, "float")(x.transpose(0, 1)))
    rows = sensitivity(model, (x, y), weight_bits=2, quantities=("weights",), device="cpu")
    everything = rows[(rows["variant"] == "all")]["value"].item()
    df = analyze(model, (x, y), weight_bits=2, reference="none", isolate=False, progress=False, device="cpu")
    acc = df[(df["layer"] == OUTPUT) & (df["metric"] == "accuracy") & (df["mode"] == "propagated")]
    assert everything == acc[acc["t"] == acc["t"].max()]["value"].item()


def test_a_table_of_first_steps_is_refused_where_it_would_not_be_the_shorter_run():
    from qnoise.probe.analysis import analysis

    model = small_cnn()
    X, y = static(n=8)
    with analysis(model, (X, y), timesteps=6, keep_tensors=2) as table:
        with pytest.raises(ValueError, match="kept full tensors"):
            table(3)
    with analysis(model, (X, y), timesteps=6) as table:
        for bad in (0, 7, 2.0, True):
            with pytest.raises(ValueError, match=r"steps must be an int in 1..6"):
                table(bad)
        assert table(6).equals(table())


@pytest.mark.parametrize("neuron", [{}, {"v_init": "half", "signed": True}, {"beta": 0.8}])
def test_a_model_that_is_its_own_float_snn_is_not_run_twice(neuron, monkeypatch):
    """Float weights, thresholds and membrane: the float SNN is the model (`SameSnn`), whose spikes are read as
    it runs. The table equals the one computed by running the float SNN beside it (forced here), all error
    terms are 0 and the two agree at every t; the float SNN is never run (in step-major or layer-major order)."""
    from qnoise import LIF, stepping
    from qnoise.probe import kernel as kernel_module
    from qnoise.probe import references

    kind = LIF if "beta" in neuron else IF
    torch.manual_seed(0)
    model = nn.Sequential(MultiStep(nn.Conv2d(2, 4, 3, padding=1)), kind(**neuron, threshold=0.4),
                          MultiStep(nn.AvgPool2d(2)), MultiStep(nn.Flatten(), nn.Linear(4 * 16, 5))).eval()
    X, y = events(n=12)
    X = X[:, :, :, :8, :8].contiguous()
    runs = []
    original = references._record
    monkeypatch.setattr(references, "_record", lambda m, *a, **k: runs.append(m) or original(m, *a, **k))
    streamed = []
    stream_step = kernel_module.SnnStream.step
    monkeypatch.setattr(kernel_module.SnnStream, "step", lambda self, *a: streamed.append(1) or stream_step(self, *a))
    for order, compile in (("step", True), ("step", False), ("layer", "auto")):
        with stepping.mode(order):
            itself = analyze(model, (X, y), reference="snn", batch_size=5, compile=compile)
            assert runs == [] and bool(streamed) == (compile is True)  # the CPU kernel's stream, or the torch sums'
            streamed.clear()
            with monkeypatch.context() as m:
                init = references.SnnReference.__init__

                def beside(self, model):
                    init(self, model)
                    self.own_is_ref = False  # run the float SNN and the model's neurons on its spikes
                m.setattr(references.SnnReference, "__init__", beside)
                computed = analyze(model, (X, y), reference="snn", batch_size=5, compile=compile)
            assert len(runs) == 3  # one float SNN run per batch
            streamed.clear()
            runs.clear()
        assert itself["value"].fillna(-1).equals(computed["value"].fillna(-1)), order
        errors = itself[itself["metric"].str.startswith("err_")]
        assert len(errors) and (errors["value"] == 0).all()
        assert (itself[itself["metric"] == "agreement"]["value"] == 1).all()


def test_data_the_model_cannot_be_measured_on_is_refused_by_name():
    """NaN or infinite frames filled the table with NaN (400 values); labels outside the model's classes gave an
    accuracy of 0 without a word; empty data said the probe had recorded nothing."""
    from qnoise.accuracy import predictions
    from qnoise.models import build_model
    from qnoise.train.loop import evaluate

    model = small_cnn()
    X, y = events(n=10)
    for bad in (float("nan"), float("inf")):
        Xb = X.clone()
        Xb[7, 0, 0, 0, 0] = bad
        with pytest.raises(ValueError, match=r"the data's samples 0\.\.9 hold non-finite values"):
            analyze(model, (Xb, y))
        assert len(analyze(model, (Xb, y), limit=7))  # only the samples analysed are checked
    classes = model(X[:1].transpose(0, 1)).shape[-1]
    network = build_model("mlp", tuple(X.shape[2:]), classes).eval()
    for labels in (y + classes, y - 1):
        first = int(labels[(labels < 0) | (labels >= classes)][0])
        with pytest.raises(ValueError, match=rf"labels must be class indices 0\.\.{classes - 1} \(the model has "
                                             rf"{classes} outputs\); got {first}"):
            analyze(model, (X, labels))
        with pytest.raises(ValueError, match="labels must be class indices"):
            predictions(model, (X, labels))
        with pytest.raises(ValueError, match="labels must be class indices"):  # the evaluate command's path
            evaluate(network, [(X.transpose(0, 1), labels)])
    with pytest.raises(ValueError, match="the data holds no samples"):
        analyze(model, (X[:0], y[:0]))
