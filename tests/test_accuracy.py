"""qnoise.accuracy: per-class accuracy with sample counts and Wilson intervals, and an SNN's predictions
(the same argmax the probe's accuracy takes)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qnoise.accuracy import accuracy_interval, class_accuracy, predictions
from qnoise.metrics import wilson_interval


def test_class_accuracy_counts_by_hand():
    labels = [0, 0, 0, 1, 1, 2]
    pred = [0, 0, 1, 1, 0, 2]
    t = class_accuracy(pred, labels, classes=4).set_index("class")
    assert list(t.index) == ["0", "1", "2", "3", "all"]
    assert list(t["samples"]) == [3, 2, 1, 0, 6]
    assert list(t["correct"]) == [2, 1, 1, 0, 4]
    assert t.loc["0", "accuracy"] == pytest.approx(2 / 3)
    assert math.isnan(t.loc["3", "accuracy"]) and math.isnan(t.loc["3", "low"])  # no sample: no number
    assert (t.loc["all", "low"], t.loc["all", "high"]) == pytest.approx(wilson_interval(4, 6))
    assert t.loc["2", "high"] == 1.0 and t.loc["2", "low"] < 0.25  # one sample of one: a wide interval


def test_class_accuracy_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="differ in length"):
        class_accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="from 0"):
        class_accuracy([0, -1], [0, 1])


def test_accuracy_interval_of_a_table_accuracy():
    lo, hi = accuracy_interval(0.984375, 128)  # 126 of 128
    assert (lo, hi) == pytest.approx(wilson_interval(126, 128))
    assert lo < 0.984375 < hi
    assert all(math.isnan(v) for v in accuracy_interval(0.5, 0))
    assert all(math.isnan(v) for v in accuracy_interval(float("nan"), 10))


def test_predictions_agree_with_the_probe_accuracy():
    import qnoise
    from qnoise.models import build_model

    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, neuron={"v_init": "half"}, hidden=[24]).eval()
    x = torch.rand(40, 1, 1, 8, 8)
    y = torch.randint(0, 10, (40,))
    for bits in (None, 2):
        pred, lab = predictions(model, (x, y), timesteps=5, weight_bits=bits)
        assert np.array_equal(lab, y.numpy())
        df = qnoise.analyze(model, (x, y), timesteps=5, weight_bits=bits, isolate=False, progress=False,
                            device="cpu")
        acc = df[(df.layer == "<output>") & (df.metric == "accuracy") & (df.t == 5)]["value"].item()
        assert (pred == lab).mean() == pytest.approx(acc)
    assert not any(p.__class__.__name__ == "ParametrizationList" for p in model.modules())  # restored
