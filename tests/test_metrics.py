"""qnoise.metrics: each definition checked against an independent computation (numpy or explicit loops)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from qnoise.metrics import (
    EnergyModel,
    conv_fanout,
    cosine,
    cosine_from_sums,
    dense_macs,
    effective_ops,
    firing_rate,
    firing_rate_from_counts,
    memory_bits,
    mse,
    nmse,
    sqnr_db,
    sqnr_from_norms,
    weight_sqnr_db,
)


def test_sqnr_matches_its_formula():
    g = np.random.default_rng(0)
    x, y = g.normal(size=500), g.normal(size=500) * 0.1
    y = x + y
    expect = 20 * np.log10(np.sqrt((x**2).sum()) / np.sqrt(((x - y) ** 2).sum()))
    assert sqnr_db(torch.tensor(x), torch.tensor(y)) == pytest.approx(expect, rel=1e-12)
    assert sqnr_db(torch.ones(3), torch.ones(3)) == math.inf
    assert sqnr_db(torch.zeros(3), torch.ones(3)) == -math.inf
    assert sqnr_from_norms(2.0, 0.2) == pytest.approx(20.0)


def test_error_metrics_match_numpy():
    g = np.random.default_rng(1)
    x, y = g.normal(size=(4, 7)), g.normal(size=(4, 7))
    tx, ty = torch.tensor(x), torch.tensor(y)
    assert mse(tx, ty) == pytest.approx(((x - y) ** 2).mean())
    assert nmse(tx, ty) == pytest.approx(((x - y) ** 2).sum() / (x**2).sum())
    cos = (x * y).sum() / np.sqrt((x**2).sum() * (y**2).sum())
    assert cosine(tx, ty) == pytest.approx(cos)
    assert cosine_from_sums(float((x * y).sum()), float((x**2).sum()), float((y**2).sum())) == pytest.approx(cos)
    assert math.isnan(cosine_from_sums(0.0, 0.0, 1.0))


def test_firing_rate_is_a_hand_count():
    s = torch.tensor([[[1.0, 0, 0], [0, -1, 1]], [[0, 0, 0], [1, 0, 0]]])  # [T=2, B=2, 3], 4 events in 12
    assert firing_rate(s) == pytest.approx(4 / 12)
    assert firing_rate(0.5 * s) == pytest.approx(4 / 12)  # outputs carrying theta count by their sign
    assert firing_rate_from_counts(4, 6, 2) == pytest.approx(4 / 12)


def _hand_fanout(cin, cout, h, w, k, stride, pad) -> np.ndarray:
    """For every input position, count (output channel, output position) pairs whose window covers it."""
    ho = (h + 2 * pad - k) // stride + 1
    wo = (w + 2 * pad - k) // stride + 1
    fan = np.zeros((cin, h, w))
    for c, i, j in itertools.product(range(cin), range(h), range(w)):
        for oi, oj in itertools.product(range(ho), range(wo)):
            di, dj = i + pad - oi * stride, j + pad - oj * stride
            if 0 <= di < k and 0 <= dj < k:
                fan[c, i, j] += cout
    return fan


@pytest.mark.parametrize("k,stride,pad", [(3, 1, 1), (3, 2, 1), (2, 1, 0), (3, 2, 0)])
def test_conv_fanout_and_effective_ops_match_a_hand_count(k, stride, pad):
    conv = nn.Conv2d(2, 3, k, stride=stride, padding=pad)
    fan = conv_fanout(conv, (5, 6))
    expect = _hand_fanout(2, 3, 5, 6, k, stride, pad)
    assert np.array_equal(fan.numpy(), expect)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(4, 2, 5, 6, generator=g) < 0.3).float()  # [T*B, C, H, W] binary
    hand = sum(expect[c, i, j] for b, c, i, j in itertools.product(range(4), range(2), range(5), range(6))
               if x[b, c, i, j] != 0)
    assert effective_ops(x, fan) == pytest.approx(hand)


def _read_counts(cin, cout, groups, hw, k, stride, dilation, padding, mode) -> np.ndarray:
    """Fan-out by reading: pad a map of input indices as the conv pads its input (``padding`` a pair of pads per
    side, "same" split as torch splits it: the odd one on the far side; ``mode`` torch's padding mode, -1 for
    zeros), take every window the conv reads, and count each index read, times C_out / groups."""
    import torch.nn.functional as F

    h, w = hw
    if padding == "same":
        pads = []
        for kk in (k, k)[::-1]:  # F.pad takes the last dimension first
            total = dilation * (kk - 1)
            pads += [total // 2, total - total // 2]
    else:
        pads = [padding, padding, padding, padding]
    idx = torch.arange(h * w, dtype=torch.float64).view(1, 1, h, w)
    padded = F.pad(idx, pads, mode="constant", value=-1.0) if mode == "zeros" else F.pad(idx, pads, mode=mode)
    windows = F.unfold(padded, k, dilation=dilation, stride=stride)  # [1, k*k, positions]
    counts = np.zeros(h * w)
    for i in windows.flatten().long().tolist():
        if i >= 0:
            counts[i] += cout // groups
    return np.broadcast_to(counts.reshape(h, w), (cin, h, w))


@pytest.mark.parametrize("k,stride,dilation,padding,mode,groups", [
    (2, 1, 1, "same", "zeros", 1), (4, 1, 2, "same", "zeros", 1), (3, 1, 1, 1, "circular", 1),
    (3, 2, 1, 1, "reflect", 1), (3, 1, 1, 2, "replicate", 2), (5, 2, 1, 2, "zeros", 2)])
def test_conv_fanout_counts_what_the_padding_reads(k, stride, dilation, padding, mode, groups):
    """"same" with an even kernel pads one more on the far side (torch's split), and reflect, replicate or circular
    padding reads border values again: the fan-out assumed even zero padding (4 of 4 vs 2 read at a border)."""
    conv = nn.Conv2d(2, 4, k, stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=mode)
    expect = _read_counts(2, 4, groups, (6, 7), k, stride, dilation, padding, mode)
    assert np.array_equal(conv_fanout(conv, (6, 7)).numpy(), expect)


def test_dense_macs():
    conv = nn.Conv2d(4, 8, 3, padding=1, groups=2)
    out = conv(torch.zeros(1, 4, 6, 6))
    assert dense_macs(conv, tuple(out.shape)) == 6 * 6 * 8 * (4 // 2) * 9
    lin = nn.Linear(10, 3)
    assert dense_macs(lin, (5, 3)) == 5 * 3 * 10


def test_energy_model_follows_horowitz_2014():
    """The 45 nm table at its measured points (8- and 32-bit integers, float32), the power law between them
    (a multiplier's cost grows about with the square of its width), and float operands costing float."""
    e = EnergyModel()
    assert (e.add_pj(8), e.add_pj(31) < e.add_pj(32), e.mult_pj(8)) == (pytest.approx(0.03), True, pytest.approx(0.2))
    assert e._power_law(e.int_add_8, e.int_add_32, 32) == pytest.approx(0.1)
    assert e._power_law(e.int_mult_8, e.int_mult_32, 32) == pytest.approx(3.1)
    assert e.mult_pj(16) / e.mult_pj(8) == pytest.approx((3.1 / 0.2) ** 0.5)  # half way on a log scale
    assert e.add_pj(32) == 0.9 and e.mult_pj(32) == 3.7  # 32 bits is float32
    assert e.mac_pj(32, 32, 32) == pytest.approx(4.6)  # the classic 45 nm float MAC
    assert e.ac_pj(4, 8) == pytest.approx(0.03) and e.ac_pj(4, 32) == 0.9  # a float membrane: a float add
    assert e.mac_pj(4, 8, 8) == pytest.approx(0.2 + 0.03)
    assert e.bits_moved_pj(64) == 0.0
    assert EnergyModel(memory_access=True).bits_moved_pj(64) == pytest.approx(10.0)  # 8 KB SRAM, 64-bit read
    with pytest.raises(ValueError, match="float_add"):
        EnergyModel(float_add=-1.0)


def test_memory_bits_sums_counts_times_widths():
    assert memory_bits([(100, 4), (10, 32), (7, 32), (20, 8)]) == 400 + 320 + 7 * 32 + 160
    assert memory_bits([]) == 0


def test_weight_sqnr_pools_tensors():
    a, b = torch.randn(10), torch.randn(5)
    qa, qb = a.round(), b.round()
    assert weight_sqnr_db([a, b], [qa, qb]) == pytest.approx(sqnr_db(torch.cat([a, b]), torch.cat([qa, qb])))


def test_wilson_interval_matches_its_formula_and_known_values():
    """Known values (Wilson 1927; e.g. 81 of 263 -> [0.2553, 0.3662] at 95%), the edges stay in [0, 1]."""
    from qnoise.metrics import wilson_interval

    lo, hi = wilson_interval(81, 263)
    assert (lo, hi) == (pytest.approx(0.2553, abs=1e-4), pytest.approx(0.3662, abs=1e-4))
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(10, 10)[0] == pytest.approx(0.7225, abs=1e-4)
    a, b = wilson_interval(50, 100), wilson_interval(500, 1000)
    assert b[1] - b[0] < a[1] - a[0]  # more samples, a narrower interval
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
