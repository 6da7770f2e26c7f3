"""Training: BN fold, conversion identity, fine-tuning, learning on digits, resume, determinism, schedules."""

from __future__ import annotations

import json
import re

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from torch import nn

from qnoise.io import load_checkpoint
from qnoise.models import apply_quantization, build_model
from qnoise.neurons import spiking_neurons
from qnoise.quant import LearnableClip
from qnoise.train import TrainConfig, evaluate, train
from qnoise.train import run as run_module
from qnoise.train.convert import convert_to_snn, fold_bn, timesteps_for
from qnoise.train.convert_run import convert_checkpoint
from qnoise.train.finetune import layer_groups
from qnoise.train.schedule import act_bits_at, cosine_lr, progressive_stages

FAST = {"model": "mlp", "model_options": {"hidden": [64]}, "epochs": 2, "progress": False, "device": "cpu",
        "test_split": None}


def _random_bn(bn: nn.modules.batchnorm._BatchNorm) -> None:
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.2, 2)
        bn.weight.uniform_(-2, 2)
        bn.bias.uniform_(-1, 1)
    bn.eval()


@pytest.mark.parametrize("layer,bn,x", [
    (nn.Conv2d(3, 5, 3, padding=1, bias=False), nn.BatchNorm2d(5), torch.randn(4, 3, 6, 6)),
    (nn.Conv2d(3, 5, 3, bias=True), nn.BatchNorm2d(5), torch.randn(4, 3, 6, 6)),
    (nn.Linear(7, 4), nn.BatchNorm1d(4), torch.randn(8, 7)),
])
def test_bn_fold_is_exact(layer, bn, x):
    layer, bn, x = layer.double(), bn.double(), x.double()
    _random_bn(bn)
    w, b = fold_bn(layer.weight, layer.bias, bn)
    with torch.no_grad():
        expected = bn(layer(x))
        got = nn.functional.conv2d(x, w, b, padding=layer.padding) if isinstance(layer, nn.Conv2d) \
            else nn.functional.linear(x, w, b)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def _tiny_ann(bits: int, alpha: float, seed: int, batchnorm: bool) -> nn.Module:
    torch.manual_seed(seed)
    ann = build_model("mlp", (3,), 2, kind="ann", act_bits=bits, act_alpha=alpha, hidden=[4], batchnorm=batchnorm)
    if batchnorm:
        _random_bn(ann.fc1.body[2])
    return ann.eval()


@given(bits=st.integers(1, 4), alpha=st.floats(0.2, 3.0), seed=st.integers(0, 10_000), batchnorm=st.booleans(),
       x=st.lists(st.floats(-2.0, 2.0), min_size=3, max_size=3))
def test_conversion_identity_single_layer(bits, alpha, seed, batchnorm, x):
    """One LearnableClip layer: the converted SNN at T = 2^b - 1 on a static input equals the quantized ANN
    (same level at every unit, same output), the sequential error of a single layer being zero."""
    ann = _tiny_ann(bits, alpha, seed, batchnorm)
    x = torch.tensor(x).view(1, 1, 3)
    n = 2**bits - 1
    with torch.no_grad():
        z = ann.fc1(x)[0, 0]
        u = z / alpha * n + 0.5
        assume(bool(((u - u.round()).abs() > 1e-4).all()))  # no float tie at a rounding boundary
        snn = convert_to_snn(ann)
        assert timesteps_for(snn) == n
        a = ann.act1(ann.fc1(x))[0, 0]
        spikes = snn.act1(snn.fc1(x.expand(n, 1, 3)))
        count = (spikes / float(snn.act1.threshold)).sum(0)[0]
        assert torch.equal(count.round(), (a / alpha * n).round())
        torch.testing.assert_close(snn(x.expand(n, 1, 3)).mean(0), ann(x)[0], rtol=0, atol=1e-5)


def test_conversion_keeps_architecture_and_thresholds():
    ann = build_model("resnet", (1, 8, 8), 10, kind="ann", act_bits=2, channels=[4, 8])
    clips = [m for m in ann.modules() if isinstance(m, LearnableClip)]
    for i, m in enumerate(clips):
        with torch.no_grad():
            m.alpha.fill_(0.5 + 0.1 * i)
    snn = convert_to_snn(ann, signed=True)
    neurons = [m for _, m in spiking_neurons(snn)]
    assert [float(m.threshold) for m in neurons] == pytest.approx([0.5 + 0.1 * i for i in range(len(clips))])
    assert all(m.v_init == "half" and m.reset == "subtract" and m.signed for m in neurons)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in snn.modules())
    assert snn.qnoise_config["kind"] == "snn" and snn.qnoise_config["act_bits"] == 2
    assert snn(torch.rand(3, 2, 1, 8, 8)).shape == (3, 2, 10)


def test_conversion_needs_a_quantized_ann():
    with pytest.raises(ValueError, match="LearnableClip"):
        convert_to_snn(build_model("mlp", (1, 8, 8), 10, kind="ann"))
    with pytest.raises(ValueError, match="one bit width"):
        convert_to_snn(build_model("mlp", (1, 8, 8), 10, kind="ann", activation="clip"))


def test_layer_groups_follow_the_spiking_layers():
    snn = build_model("resnet", (1, 8, 8), 10, channels=[4, 8], batchnorm=False)
    groups = layer_groups(snn)
    assert len(groups) == len(spiking_neurons(snn)) == 5
    assert [len(g) for g in groups] == [2, 2, 2, 2, 4]  # block2.act2 is fed by conv2 and the 1x1 shortcut


@pytest.fixture(scope="module")
def digits_ann(tmp_path_factory):
    out = tmp_path_factory.mktemp("ann")
    cfg = TrainConfig(**{**FAST, "mode": "ann", "act_bits": 2, "progressive": True, "timesteps": 1, "epochs": 4})
    return train(cfg, out), out


def test_ann_training_learns_and_converts(digits_ann, tmp_path):
    ann, path = digits_ann
    doc = ann.qnoise_checkpoint
    assert doc["metrics"]["val_accuracy"] > 0.6  # chance is 0.1
    assert [r["act_bits"] for r in doc["history"]] == [None, 4, 3, 2]
    snn = convert_checkpoint(path, tmp_path / "snn", signed=True, finetune_epochs=1, device="cpu", progress=False)
    m = snn.qnoise_checkpoint["metrics"]
    assert snn.qnoise_checkpoint["timesteps"] == 3
    assert snn.qnoise_checkpoint["dataset"]["input_mode"] == "static"
    assert m["val_accuracy"] >= m["ann_val_accuracy"] - 0.05
    history = snn.qnoise_checkpoint["history"]
    assert len(history) == 1 and "skipped" in history[0]  # one spiking layer: Fast-SNN tunes layers 2 .. L-1
    back = load_checkpoint(tmp_path / "snn")
    from qnoise.train.evaluation import evaluate_model

    assert evaluate_model(back, split="val")["accuracy"] == pytest.approx(m["val_accuracy"])


def test_direct_snn_training_learns_with_qat(tmp_path):
    cfg = TrainConfig(**{**FAST, "weight_bits": 4, "threshold_bits": 8, "state_bits": 8, "timesteps": 2})
    model = train(cfg, tmp_path)
    doc = model.qnoise_checkpoint
    assert doc["metrics"]["val_accuracy"] > 0.6  # chance is 0.1
    q = doc["model"]["quantization"]
    assert q["weights"]["bits"] == 4 and q["thresholds"]["bits"] == 8 and q["membrane"]["bits"] == 8
    thresholds = [m.parametrizations.raw_threshold.original for _, m in spiking_neurons(model)]
    assert any(abs(float(t.detach()) - 1.0) > 1e-4 for t in thresholds)  # thresholds were learned


def test_sigmoid_temperature_rises_per_epoch(tmp_path):
    cfg = TrainConfig(**{**FAST, "weight_bits": 1, "weight_method": "sigmoid", "keep_first_last": True,
                         "temperature_k": 5.0, "epochs": 2, "model_options": {"hidden": [32, 32]}})
    doc = train(cfg, tmp_path).qnoise_checkpoint
    assert [r["temperature"] for r in doc["history"]] == [5.0, 10.0]  # T = k (epoch + 1)
    assert doc["model"]["quantization"]["weights"]["method"] == "sigmoid"


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_same_seed_same_weights(tmp_path):
    a = _weights(train(TrainConfig(**FAST), tmp_path / "a"))
    b = _weights(train(TrainConfig(**FAST), tmp_path / "b"))
    c = _weights(train(TrainConfig(**{**FAST, "seed": 1}), tmp_path / "c"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_resume_continues_from_the_saved_epoch(tmp_path, monkeypatch):
    cfg = TrainConfig(**{**FAST, "epochs": 3})
    straight = _weights(train(cfg, tmp_path / "straight"))
    real_epoch, calls = run_module.train_epoch, []

    def interrupted(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(run_module, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "resumed")
    assert not (tmp_path / "resumed" / "config.json").exists()
    saved = json.loads((tmp_path / "resumed" / "last" / "config.json").read_text())
    assert [r["epoch"] for r in saved["history"]] == [1, 2]
    monkeypatch.setattr(run_module, "train_epoch", real_epoch)
    resumed_epochs = []
    monkeypatch.setattr(run_module, "train_epoch", lambda *a, **k: resumed_epochs.append(1) or real_epoch(*a, **k))
    resumed = train(cfg, tmp_path / "resumed")
    assert len(resumed_epochs) == 1  # only epoch 3 was run again
    assert [r["epoch"] for r in resumed.qnoise_checkpoint["history"]] == [1, 2, 3]
    got = _weights(resumed)
    assert all(torch.equal(straight[k], got[k]) for k in straight)


@pytest.mark.parametrize("where", ["checkpoint", "rename"])
def test_a_crash_while_an_epoch_is_saved_leaves_a_run_that_resumes(tmp_path, monkeypatch, where):
    """Killed while epoch 2's files are written (after its optimizer file, before its model) or between the
    renames that put them in place: the rerun resumes from epoch 1 and ends where a straight run ends."""
    from pathlib import Path

    from qnoise.train import resume

    cfg = TrainConfig(**{**FAST, "epochs": 2})
    straight = _weights(train(cfg, tmp_path / "straight"))
    saves = []
    if where == "checkpoint":
        real = resume.save_checkpoint

        def crash(*args, **kwargs):
            saves.append(1)
            if len(saves) == 2:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(resume, "save_checkpoint", crash)
    else:
        real = Path.rename

        def crash(self, target):
            if Path(target).name == resume.LAST:
                saves.append(1)
                if len(saves) == 2:  # epoch 2: epoch 1 moved aside, epoch 2 not yet in place
                    raise KeyboardInterrupt
            return real(self, target)

        monkeypatch.setattr(Path, "rename", crash)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "run")
    monkeypatch.undo()
    resumed = train(cfg, tmp_path / "run")
    assert [r["epoch"] for r in resumed.qnoise_checkpoint["history"]] == [1, 2]
    got = _weights(resumed)
    assert all(torch.equal(straight[k], got[k]) for k in straight)


@pytest.mark.parametrize("damage", ["missing", "reshaped", "nan"])
def test_resuming_checks_the_saved_model_as_a_checkpoint_is_checked(tmp_path, monkeypatch, damage):
    """Resuming loaded last/model.safetensors without load_checkpoint's checks: a tensor missing or of another
    shape (with no SHA-256 recorded) ended in torch's load_state_dict traceback, a NaN was trained on. Now each
    is refused naming the file and the key."""
    from safetensors.torch import load_file, save_file

    cfg = TrainConfig(**{**FAST, "epochs": 2})
    real_epoch = run_module.train_epoch
    monkeypatch.setattr(run_module, "train_epoch", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt)
                        if (tmp_path / "run" / "last").exists() else real_epoch(*a, **k))
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "run")
    monkeypatch.setattr(run_module, "train_epoch", real_epoch)
    last = tmp_path / "run" / "last"
    tensors = load_file(last / "model.safetensors")
    key = next(k for k in sorted(tensors) if k.endswith("weight"))
    if damage == "missing":
        del tensors[key]
    elif damage == "reshaped":
        tensors[key] = tensors[key].flatten()[:-1].clone()
    else:
        tensors[key] = tensors[key].clone()
        tensors[key].view(-1)[0] = float("nan")
    save_file(tensors, last / "model.safetensors")
    doc = json.loads((last / "config.json").read_text())
    doc["tensors"].pop("sha256", None)
    (last / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=rf"(?s){re.escape(str(last))}.*{re.escape(key)}"):
        train(cfg, tmp_path / "run")


def test_a_clip_level_trained_below_its_floor_comes_back(tmp_path):
    """A learned alpha that a large step took below the forward's floor (1e-4) got no gradient there and stayed:
    the run ended at 10 % with alpha -0.275 and saved a checkpoint load_checkpoint refuses. After each step the
    clip levels (and thresholds) go back to their floors."""
    from qnoise.quant import LearnableClip

    cfg = TrainConfig(mode="ann", model="mlp", model_options={"hidden": [32, 32]}, act_bits=2, act_alpha=0.01,
                      lr=0.05, timesteps=1, epochs=3, progress=False, test_split=None)
    model = train(cfg, tmp_path / "run")
    assert all(float(c.alpha) >= 1e-4 for c in model.modules() if isinstance(c, LearnableClip))
    assert model.qnoise_checkpoint["metrics"]["val_accuracy"] > 0.5
    load_checkpoint(tmp_path / "run")  # refused before: a clip level <= 0


def test_more_epochs_resume_only_where_the_schedule_is_the_same(tmp_path):
    """The cosine learning rate depends on the number of epochs: one finished epoch resumes into a longer run
    (epoch 1 runs at the full rate in both), two do not (epoch 2's rate differs), instead of silently making a
    run no straight run is."""
    train(TrainConfig(**{**FAST, "epochs": 1}), tmp_path / "one")
    longer = _weights(train(TrainConfig(**{**FAST, "epochs": 2}), tmp_path / "one"))
    straight = _weights(train(TrainConfig(**{**FAST, "epochs": 2}), tmp_path / "straight"))
    assert all(torch.equal(straight[k], longer[k]) for k in straight)
    with pytest.raises(ValueError, match=r"differs from epochs=3's at epoch 2 \(learning rate 0.0005 there"):
        train(TrainConfig(**{**FAST, "epochs": 3}), tmp_path / "straight")


def test_resume_refuses_other_options(tmp_path):
    train(TrainConfig(**{**FAST, "epochs": 1}), tmp_path)
    with pytest.raises(ValueError, match=r"other options \(lr: 0.001 there, 0.01 now\)"):
        train(TrainConfig(**{**FAST, "epochs": 1, "lr": 0.01}), tmp_path)


def test_finished_run_is_not_retrained(tmp_path, monkeypatch):
    cfg = TrainConfig(**{**FAST, "epochs": 1})
    first = _weights(train(cfg, tmp_path))
    monkeypatch.setattr(run_module, "train_epoch", lambda *a, **k: pytest.fail("retrained"))
    again = _weights(train(cfg, tmp_path))
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_post_training_quantization_of_a_trained_model(digits_ann):
    from qnoise.quant import weight_quantizers
    from qnoise.train.splits import batches, load_split

    snn = convert_to_snn(digits_ann[0])
    val = batches(load_split("digits", "val", 1))
    base = evaluate(snn, val, static=True, timesteps=3)["accuracy"]
    apply_quantization(snn, {"weights": {"bits": 8, "rounding": "nearest"}, "thresholds": {"bits": 8},
                             "membrane": {"bits": 10}})
    assert len(weight_quantizers(snn)) == 2
    w = snn.fc1.body[1].weight
    assert torch.unique(w).numel() <= 255
    assert evaluate(snn, val, static=True, timesteps=3)["accuracy"] >= base - 0.03


@pytest.mark.parametrize("bits,stages", [(2, [None, 4, 3, 2]), (3, [None, 4, 3]), (4, [None, 4]), (8, [None, 8])])
def test_progressive_stages(bits, stages):
    assert progressive_stages(bits) == stages
    got = [act_bits_at(e, 8 * len(stages), bits, True) for e in range(8 * len(stages))]
    assert got == [s for s in stages for _ in range(8)]
    assert act_bits_at(0, 10, bits, False) == bits


def test_cosine_lr():
    assert cosine_lr(0, 10, 0.1) == pytest.approx(0.1)
    assert cosine_lr(5, 10, 0.1) == pytest.approx(0.05)


@pytest.mark.parametrize("kwargs,match", [
    ({"mode": "sgd"}, "mode="),
    ({"act_bits": 2}, "belong to mode='ann'"),
    ({"mode": "ann", "state_bits": 8}, "need spiking neurons"),
    ({"mode": "ann", "progressive": True}, "needs act_bits"),
    ({"weight_method": "sigmoid"}, "needs weight_bits"),
    ({"epochs": 1.5}, "epochs must be"),
])
def test_bad_training_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_cli_train_convert_evaluate(tmp_path, capsys):
    from qnoise.cli import main

    ann, snn = str(tmp_path / "ann"), str(tmp_path / "snn")
    assert main(["train", "--dataset", "digits", "--model", "mlp", "--model-options", '{"hidden": [32]}', "--mode",
                 "ann", "--act-bits", "2", "--timesteps", "1", "--epochs", "2", "--out", ann, "--no-progress",
                 "--device", "cpu"]) == 0
    assert main(["convert", "--checkpoint", ann, "--out", snn, "--signed", "--no-progress", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", snn, "--json", "--device", "cpu"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["samples"] == 359 and r["timesteps"] == 3 and r["split"] == "test" and r["accuracy"] > 0.5
    assert main(["evaluate", "--checkpoint", snn, "--json", "--weight-bits", "3", "--threshold-bits", "4",
                 "--state-bits", "6", "--state-rounding", "truncate", "--device", "cpu"]) == 0
    q = json.loads(capsys.readouterr().out)["post_training_quantization"]
    assert q["weights"]["bits"] == 3 and q["thresholds"]["bits"] == 4 and q["membrane"]["rounding"] == "truncate"
    assert load_checkpoint(snn).qnoise_config["quantization"]["weights"] is None  # the checkpoint is unchanged
    assert main(["convert", "--checkpoint", str(tmp_path / "missing"), "--out", snn]) == 2
    err = capsys.readouterr().err
    assert "qnoise convert: error:" in err and "missing" in err


def test_sample_data_layout_and_determinism(tmp_path, monkeypatch):
    import hashlib

    from qnoise.train import sample_data

    monkeypatch.setattr(sample_data, "EPOCHS", 1)
    monkeypatch.setattr(sample_data, "BITS", (2,))

    def digest(root):
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    index = sample_data.make_sample_data(tmp_path / "a")
    sample_data.make_sample_data(tmp_path / "b")
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    names = [e["name"] for e in index["models"]]
    assert names == ["digits-ann-2bit", "digits-snn-2bit", "digits-snn-2bit-signed", "digits-snn-direct-binary"]
    for name in names:
        load_checkpoint(tmp_path / "a" / name)
    from qnoise.io import load_tensors

    batch = load_tensors(tmp_path / "a" / sample_data.BATCH)
    assert batch["inputs"].shape == (256, 1, 8, 8) and batch["labels"].shape == (256,)
    assert sum(p.stat().st_size for p in (tmp_path / "a").rglob("*") if p.is_file()) < 10_000_000


# ---- weight bits 1, the sigmoid-sum quantizer's training, event augmentation -----------------------------

@pytest.mark.parametrize("method,expect", [("uniform", "binary"), ("binary", "binary"), ("sigmoid", "sigmoid")])
def test_weight_bits_1_is_binary_whatever_the_method(tmp_path, method, expect):
    cfg = TrainConfig(**{**FAST, "weight_bits": 1, "weight_method": method, "epochs": 1})
    assert cfg.quantization()["weights"]["method"] == expect
    model = train(cfg, tmp_path)
    q = model.qnoise_checkpoint["model"]["quantization"]["weights"]
    assert q["bits"] == 1 and q["method"] == expect
    with torch.no_grad():
        assert model.fc1.body[1].weight.unique().numel() == 2  # every quantized layer holds two values
    with pytest.raises(ValueError, match="binary"):
        TrainConfig(weight_bits=1, weight_method="ternary")


def test_cli_train_weight_bits_1(tmp_path, capsys):
    from qnoise.cli import main

    out = str(tmp_path / "bin")
    assert main(["train", "--dataset", "digits", "--model", "mlp", "--model-options", '{"hidden": [16]}',
                 "--weight-bits", "1", "--timesteps", "2", "--epochs", "1", "--out", out, "--no-progress",
                 "--device", "cpu", "--test-split", "none"]) == 0
    printed = capsys.readouterr().out
    assert "epoch 1/1" in printed  # one line per epoch without a progress bar
    assert load_checkpoint(out).qnoise_config["quantization"]["weights"]["method"] == "binary"


def test_quantizer_parameters_learn_at_their_own_rate_without_decay():
    cfg = TrainConfig(**{**FAST, "weight_bits": 2, "weight_method": "sigmoid", "weight_decay": 1e-4})
    model = run_module.build_for(cfg, (1, 8, 8), 10)
    opt = run_module.make_optimizer(model, cfg)
    by_scale = {g["lr_scale"]: g for g in opt.param_groups if g["lr_scale"] != 1.0}
    quant = by_scale[0.1]
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)].rsplit(".", 1)[-1] for p in quant["params"]} == {"alpha", "beta", "biases"}
    assert quant["weight_decay"] == 0.0
    decayed = [g for g in opt.param_groups if g["weight_decay"] > 0]
    assert all(p.dim() > 1 for g in decayed for p in g["params"])  # weights only, never thresholds or BN
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_old_training_records_read_with_the_papers_schedule():
    old = TrainConfig().to_dict()
    for key in ("temperature_k", "temperature_cap", "quantizer_lr_scale", "weight_levels", "augment_options"):
        old.pop(key)
    old.update(temperature_slope=1.0, temperature_start=1.0, temperature_cap=1000.0)
    cfg = TrainConfig.from_dict(old)
    assert (cfg.temperature_k, cfg.temperature_cap, cfg.quantizer_lr_scale) == (1.0, 1000.0, 1.0)
    with pytest.raises(ValueError, match="k \\* \\(epoch \\+ 1\\)"):
        TrainConfig.from_dict({**old, "temperature_slope": 3.0})


def test_event_augmentation_rebins_augmented_events():
    from conftest import require_shared_data

    from qnoise.data import dataset_tensors, load_dataset
    from qnoise.data.augment import AugmentedEvents, EventAugment, translate

    root = require_shared_data()
    ds = load_dataset("nmnist", "train", root=root, timesteps=4, limit=40)
    x, _ = dataset_tensors(ds)
    events = AugmentedEvents(ds)
    assert torch.equal(events.frames(None), x)  # no augmentation: the loader's own frames
    assert torch.equal(events.frames(EventAugment(shift=0, jitter=0, drop=0, time_jitter=0), 5), x)
    aug = EventAugment(shift=2, jitter=1.0, drop=0.2, time_jitter=1000.0)  # every transform on
    a, b, c = events.frames(aug, 1), events.frames(aug, 1), events.frames(aug, 2)
    assert torch.equal(a, b) and not torch.equal(a, c)  # a function of the seed
    assert 0.75 < float(a.sum() / x.sum()) < 1.0  # up to 20 % of the events dropped, a few leave the sensor
    ev = events.events[0]
    moved = translate(ev, (34, 34, 2), 3, -2)
    inside = (ev["x"] + 3 < 34) & (ev["y"] - 2 >= 0)
    assert len(moved) == int(inside.sum()) and (moved["x"] == ev["x"][inside] + 3).all()


def test_training_with_event_augmentation(tmp_path):
    from conftest import require_shared_data

    root = require_shared_data()
    cfg = TrainConfig(dataset="nmnist", data_root=str(root), model="mlp", model_options={"hidden": [32]},
                      timesteps=2, epochs=2, progress=False, device="cpu", test_split=None,
                      data_options={"limit": 64}, augment="events", augment_options={"drop": 0.1})
    doc = train(cfg, tmp_path).qnoise_checkpoint
    assert doc["training"]["augment"] == "events" and len(doc["history"]) == 2
    with pytest.raises(ValueError, match="augment_options"):
        TrainConfig(augment="shift", augment_options={"drop": 0.1})
    with pytest.raises(ValueError, match="unknown event augmentation"):
        TrainConfig(augment="events", augment_options={"flip": True})


def test_init_starts_quantized_training_from_float_weights(tmp_path):
    """--init: the float weights of a trained checkpoint, and the sum-of-sigmoids quantizers initialised from
    them (beta = 5p / (4 max|w|)), as Quantization Networks start from a trained full-precision model."""
    from qnoise.quant import float_weight, weight_quantizers

    src = train(TrainConfig(**{**FAST, "epochs": 1}), tmp_path / "float")
    cfg = TrainConfig(**{**FAST, "weight_bits": 1, "weight_method": "sigmoid", "init": str(tmp_path / "float")})
    model = run_module.build_for(cfg, (1, 8, 8), 10)
    w_src = src.fc1.body[1].weight.detach()
    assert torch.equal(float_weight(model.fc1.body[1]), w_src)
    assert torch.equal(float_weight(model.readout.body[0]), src.readout.body[0].weight)
    q = weight_quantizers(model)["fc1.body.1"]
    assert float(q.beta) == pytest.approx(5 * 1 / (4 * float(w_src.abs().max())))
    other = TrainConfig(**{**FAST, "model_options": {"hidden": [32]}, "init": str(tmp_path / "float")})
    with pytest.raises(ValueError, match="--init"):
        run_module.build_for(other, (1, 8, 8), 10)


@pytest.mark.parametrize("field,value", [("weight_decay", float("nan")), ("weight_decay", -1.0), ("lr", "fast"),
                                         ("quantizer_lr_scale", float("inf")), ("temperature_k", float("inf")),
                                         ("weight_method", "foo"), ("keep_first_last", "no"), ("seed", "a")])
def test_training_numbers_and_flags_are_checked_up_front(field, value):
    """Each trained (or failed deep inside) before: a NaN weight decay saved a checkpoint that cannot load."""
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{**FAST, field: value})


def test_a_damaged_training_record_names_its_file(tmp_path):
    train(TrainConfig(**{**FAST, "epochs": 1}), tmp_path)
    doc = json.loads((tmp_path / "config.json").read_text())
    doc["training"]["epochs"] = "2"
    (tmp_path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"config.json: its 'training' record: epochs"):
        train(TrainConfig(**{**FAST, "epochs": 1}), tmp_path)
