"""qnoise.accuracy: per-class accuracy with sample counts and Wilson intervals, and an SNN's predictions
(the same argmax the probe's accuracy takes)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qnoise.accuracy import accuracy_interval, ceiling, class_accuracy, predictions, shared_errors
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


# ------------------------------------------------------------------------------------------------ qnoise.choice

def _points():
    import pandas as pd

    return pd.DataFrame({"weight_bits": [2, 4, 8, 32], "timesteps": [4, 4, 4, 4],
                         "accuracy": [0.80, 0.95, 0.96, 0.97], "memory_bits": [8192 * 2, 8192 * 4, 8192 * 8, 8192 * 32],
                         "energy_pj": [1e5, 2e5, 4e5, 1e6]})


def test_with_intervals_adds_counts_intervals_and_units():
    from qnoise.choice import with_intervals

    p = with_intervals(_points(), 128)
    assert list(p["samples"]) == [128] * 4
    assert (p.loc[1, "ci_low"], p.loc[1, "ci_high"]) == pytest.approx(accuracy_interval(0.95, 128))
    assert list(p["memory_kib"]) == [2, 4, 8, 32] and p.loc[0, "energy_nj"] == 100
    unknown = with_intervals(_points(), None)
    assert unknown["ci_low"].isna().all()


def test_best_within_budget():
    from qnoise.choice import best_within_budget

    p = _points()
    assert best_within_budget(p, memory_kib=8)["weight_bits"] == 8
    assert best_within_budget(p, memory_kib=8, energy_nj=250)["weight_bits"] == 4
    assert best_within_budget(p, memory_kib=1) is None
    assert best_within_budget(p)["weight_bits"] == 32


def test_cheapest_within_tolerance_needs_the_interval_to_support_it():
    from qnoise.choice import cheapest_within_tolerance, with_intervals

    p = _points()
    # by point estimates 4 bits is within 2 points of 97%; on 128 samples its interval reaches down to ~90%
    assert cheapest_within_tolerance(p, 0.02, "memory_bits")["weight_bits"] == 4
    narrow = with_intervals(p, 128)
    # 2 points is inside even the best's own interval (+-3 points on 128 samples): nothing can be claimed
    assert cheapest_within_tolerance(narrow, 0.02, "memory_bits") is None
    wide = cheapest_within_tolerance(narrow, 0.08, "memory_bits")
    assert wide["weight_bits"] == 4 and wide["ci_low"] >= 0.97 - 0.08
    with pytest.raises(ValueError, match="tolerance"):
        cheapest_within_tolerance(p, -1, "memory_bits")


def test_setting_of_and_save_configuration(tmp_path):
    import pandas as pd

    from qnoise.choice import save_configuration, setting_of
    from qnoise.io import load_checkpoint, read_checkpoint_config, save_checkpoint
    from qnoise.models import build_model

    row = pd.Series({"weight_bits": 4, "timesteps": 6, "state_bits": 32, "rounding": "nearest", "neuron": "IF",
                     "accuracy": 0.9})
    setting = setting_of(row)
    assert setting == {"weight_bits": 4, "timesteps": 6, "state_bits": 32, "rounding": "nearest", "neuron": "if"}
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, neuron={"v_init": "half"}, hidden=[24])
    src = load_checkpoint(save_checkpoint(model, tmp_path / "src", dataset={"name": "digits"}, timesteps=3))
    out = save_configuration(src, setting, tmp_path / "chosen", metrics={"budget_accuracy": 0.9})
    doc = read_checkpoint_config(out)
    assert doc["timesteps"] == 6 and doc["model"]["quantization"]["weights"]["bits"] == 4
    chosen = load_checkpoint(out)
    x = torch.rand(20, 1, 1, 8, 8)
    y = torch.randint(0, 10, (20,))
    assert np.array_equal(predictions(chosen, (x, y), 6)[0], predictions(src, (x, y), 6, weight_bits=4)[0])
    assert not any(type(m).__name__ == "ParametrizationList" for m in src.modules())  # the source is untouched


def test_shared_errors_counts_each_sample_across_runs():
    """Three runs on five samples, counted by hand: sample 1 is wrong in all three (twice as 2, once as 0),
    sample 3 in run b only; samples 0, 2 and 4 are right everywhere and get no row."""
    labels = [0, 1, 2, 3, 4]
    runs = {"a": [0, 2, 2, 3, 4], "b": [0, 0, 2, 1, 4], "c": [0, 2, 2, 3, 4]}
    out = shared_errors(runs, labels)
    assert out["sample"].tolist() == [1, 3]
    assert out["label"].tolist() == [1, 3]
    assert out["wrong_in"].tolist() == [3, 1]
    assert out["runs"].tolist() == [3, 3]
    assert out["most_predicted"].tolist() == [2, 1]
    assert out["missed_by"].tolist() == ["a, b, c", "b"]
    assert ceiling(out, len(labels)) == pytest.approx(1 - 1 / 5)


def test_shared_errors_without_errors_and_bad_input():
    out = shared_errors({"a": [0, 1]}, [0, 1])
    assert out.empty and ceiling(out, 2) == 1.0
    with pytest.raises(ValueError, match="run 'a': 1 predictions for 2 labels"):
        shared_errors({"a": [0]}, [0, 1])
    with pytest.raises(ValueError, match="at least one run"):
        shared_errors({}, [0, 1])


def test_every_accuracy_decides_float_ties_alike():
    """A binary-weight SNN whose readout ties classes up to float rounding (summed in another order, some
    samples change class): `predictions`, `evaluate` and the probe all take `predicted_class`, so with labels
    equal to its predictions each reports 100 %."""
    from torch.nn.utils import parametrize

    from qnoise.metrics import predicted_class
    from qnoise.models import build_model
    from qnoise.probe import Compare, Probe, configured
    from qnoise.train.loop import evaluate

    torch.manual_seed(2)
    model = build_model("mlp", (2, 6, 6), 5, neuron={"v_init": "half", "threshold": 0.3}, hidden=[64, 32]).eval()
    with torch.no_grad():
        model.readout.body[0].bias.zero_()
    g = torch.Generator().manual_seed(4)
    x = (torch.rand(6, 64, 2, 6, 6, generator=g) < 0.3).float()
    with torch.no_grad(), configured(model, weight_bits=1), parametrize.cached():
        out = model(x)
        y = predicted_class(out)
        assert (out.sum(0).argmax(-1) != y).any()  # the ties this test is about
        assert evaluate(model, [(x, y)])["accuracy"] == 1.0
        with Probe(model, Compare("none")) as probe:
            probe.step(x, y)
            table = probe.table()
    pred, labels = predictions(model, (x.transpose(0, 1), y), 6, batch_size=64, weight_bits=1)
    assert (pred == labels).all()
    acc = table[(table["layer"] == "<output>") & (table["metric"] == "accuracy") & (table["t"] == 6)]["value"]
    assert acc.tolist() == [1.0]
