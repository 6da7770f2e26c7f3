"""Layer-wise fine-tuning (Fast-SNN, qnoise.train.finetune): the straight-through loss and its gradient by hand,
gradients that reach only the layer being tuned, the keep-or-revert rule, and what the loop leaves behind."""

from __future__ import annotations

import pytest
import torch

from qnoise.neurons import spiking_neurons
from qnoise.quant import LearnableClip
from qnoise.train import Batches, TrainConfig, train
from qnoise.train import finetune as ft
from qnoise.train.convert import clip_layers, convert_to_snn
from qnoise.train.splits import batches, load_split

HIDDEN = [48, 32, 24]  # three spiking layers: layers 2 and 3 are tuned


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A 2-bit digits MLP (three hidden layers) and its converted SNN, with the training split."""
    cfg = TrainConfig(mode="ann", model="mlp", model_options={"hidden": HIDDEN}, act_bits=2, progressive=True,
                      timesteps=1, epochs=4, progress=False, device="cpu", test_split=None)
    ann = train(cfg, tmp_path_factory.mktemp("ann")).eval()
    data = load_split("digits", "train", 1)
    return ann, data


def _snn(ann):
    return convert_to_snn(ann).eval()


def _params(snn):
    return {k: v.detach().clone() for k, v in snn.named_parameters()}


def test_loss_is_the_snn_rate_against_the_ann_and_the_gradient_is_the_ann_layers(pair):
    """For layer 2 of an MLP: value MSE(r_2, A_2); gradient through the ANN layer fed the SNN's input rate,
    dL/dW = (2/n) [(r_2 - A_2) * 1{0 <= z <= alpha}]^T r_1 with z = W r_1 + b (straight-through)."""
    ann, data = pair
    snn = _snn(ann)
    neurons = [m for _, m in spiking_neurons(snn)]
    clip = clip_layers(ann)[1]
    x = data[0][:40].transpose(0, 1)
    loss = ft.tune_step(snn, ann, neurons[:2], clip, x, 3)
    loss.backward()
    with torch.no_grad():
        r1, r2 = ft.snn_rates(snn, neurons[:2], x, 3)
        target = ft._ann_activation(ann, clip, x)
        fc = snn.fc2.body[0]
        z = r1 @ fc.weight.T + fc.bias
        alpha = float(clip.alpha)
        assert torch.allclose(loss, ((r2 - target) ** 2).mean())
        assert not torch.allclose(r2, clip(z))  # the SNN's rate differs from the ANN layer's output here
        dy = 2 * (r2 - target) / target.numel() * ((z >= 0) & (z <= alpha)).float()
    assert torch.allclose(fc.weight.grad, dy.T @ r1, atol=1e-7)
    assert torch.allclose(fc.bias.grad, dy.sum(0), atol=1e-7)


def test_synaptic_input_is_the_layer_fed_the_rates_below(pair):
    ann, data = pair
    snn = _snn(ann)
    neurons = [m for _, m in spiking_neurons(snn)]
    x = data[0][:16].transpose(0, 1)
    with torch.no_grad():
        rates = ft.snn_rates(snn, neurons, x, 3)
        z3 = ft.synaptic_input(snn, neurons, rates[:2], x)
        fc = snn.fc3.body[0]
        assert torch.allclose(z3, rates[1] @ fc.weight.T + fc.bias, atol=1e-6)
        # the rates are the SNN's own: the mean over T steps of what each neuron emits on the static input
        spikes = neurons[0](snn.fc1(x.mean(0, keepdim=True).expand(3, *x.shape[1:])))
        assert torch.equal(rates[0], spikes.mean(0))


def test_gradients_reach_only_the_layer_being_tuned(pair):
    """Even with every parameter trainable, the loss of layer l depends on layer l's weights alone: the rates
    below are constants and the ANN only supplies targets."""
    ann, data = pair
    snn = _snn(ann)
    ann.requires_grad_(True)
    neurons = [m for _, m in spiking_neurons(snn)]
    groups = ft.layer_groups(snn)
    x = data[0][:32].transpose(0, 1)
    for i in (1, 2):
        snn.zero_grad(set_to_none=True)
        ann.zero_grad(set_to_none=True)
        ft.tune_step(snn, ann, neurons[:i + 1], clip_layers(ann)[i], x, 3).backward()
        tuned = {id(p) for p in groups[i]}
        for name, p in snn.named_parameters():
            if id(p) in tuned:
                assert p.grad is not None and p.grad.abs().sum() > 0, name
            else:
                assert p.grad is None, name
        assert all(p.grad is None for p in ann.parameters())


def test_an_update_that_lowers_training_accuracy_is_reverted(pair):
    """A destructive learning rate: the tuned layer's weights come back bit for bit; with force they stay."""
    ann, data = pair
    snn = _snn(ann)
    before = _params(snn)
    loader = Batches(data[0], data[1], 64, shuffle=True)
    start = ft._accuracy(snn, batches(data), "cpu", 3)
    reports = ft.layerwise_finetune(snn, ann, loader, 3, lr=200.0, eval_batches=batches(data), progress=False)
    assert [r["kept"] for r in reports] == [False, False, False]
    assert all(r["epochs"][0]["train_accuracy"] < start for r in reports[1:])
    after = _params(snn)
    assert all(torch.equal(before[k], after[k]) for k in before)
    forced = _snn(ann)
    reports = ft.layerwise_finetune(forced, ann, loader, 3, lr=200.0, force=True, progress=False)
    assert [r["kept"] for r in reports[1:]] == [True, True]
    assert not torch.equal(forced.fc2.body[0].weight, before["fc2.body.0.weight"])


def test_keep_or_revert_follows_training_accuracy(pair, monkeypatch):
    """Scripted accuracies: layer 2 improves (kept, at its best epoch), layer 3 does not (reverted)."""
    ann, data = pair
    snn = _snn(ann)
    before = _params(snn)
    script = iter([0.50, 0.60, 0.58, 0.55, 0.59])  # start; layer 2 epochs 1, 2; layer 3 epochs 1, 2
    snapshots = []

    def scripted(model, *_args):
        snapshots.append(_params(model))
        return next(script)

    monkeypatch.setattr(ft, "_accuracy", scripted)
    loader = Batches(data[0], data[1], 64, shuffle=True)
    reports = ft.layerwise_finetune(snn, ann, loader, 3, epochs=2, lr=0.05, progress=False)
    assert [r["kept"] for r in reports] == [False, True, False]
    assert [r["train_accuracy"] for r in reports[1:]] == [0.60, 0.60]
    after = _params(snn)
    layer2, layer3 = ("fc2.body.0.weight", "fc2.body.0.bias"), ("fc3.body.0.weight", "fc3.body.0.bias")
    for k in layer2:  # layer 2 holds its epoch-1 weights (0.60), not its later epoch-2 weights (0.58)
        assert torch.equal(after[k], snapshots[1][k]) and not torch.equal(after[k], before[k])
        assert not torch.equal(after[k], snapshots[2][k])
    for k in layer3:
        assert torch.equal(after[k], before[k])
    for k in ("fc1.body.1.weight", "readout.body.0.weight"):  # layer 1 and the readout are never tuned
        assert torch.equal(after[k], before[k])


def test_thresholds_are_frozen_and_trainable_flags_restored(pair):
    ann, data = pair
    snn = _snn(ann)
    thetas = [float(n.threshold) for _, n in spiking_neurons(snn)]
    alphas = [float(c.alpha) for c in ann.modules() if isinstance(c, LearnableClip)]
    flags = {k: p.requires_grad for k, p in snn.named_parameters()}
    ann_flags = [p.requires_grad for p in ann.parameters()]
    ft.layerwise_finetune(snn, ann, Batches(data[0][:128], data[1][:128], 64), 3, force=True, progress=False)
    assert [float(n.threshold) for _, n in spiking_neurons(snn)] == thetas
    assert [float(c.alpha) for c in ann.modules() if isinstance(c, LearnableClip)] == alphas
    assert {k: p.requires_grad for k, p in snn.named_parameters()} == flags
    assert [p.requires_grad for p in ann.parameters()] == ann_flags


def test_finetune_never_lowers_training_accuracy(pair):
    ann, data = pair
    snn = _snn(ann)
    before = ft._accuracy(snn, batches(data), "cpu", 3)
    reports = ft.layerwise_finetune(snn, ann, Batches(data[0], data[1], 64, shuffle=True), 3,
                                    eval_batches=batches(data), progress=False)
    after = ft._accuracy(snn, batches(data), "cpu", 3)
    assert after >= before
    assert after == pytest.approx(max([before] + [r["train_accuracy"] for r in reports[1:]]))


@pytest.mark.parametrize("arch,options", [("cnn", {"channels": [4, 8], "hidden": 16}),
                                          ("resnet", {"channels": [4, 8], "blocks": 1})])
def test_synaptic_input_covers_pooling_and_residual_paths(arch, options):
    """z_l computed by the SNN on one step with the rates swapped in equals the layer's ops applied to the rates
    by hand: avgpool -> conv (cnn), and conv2(r_act1) + shortcut(r_in) for a residual block's second neuron."""
    from qnoise.models import build_model

    torch.manual_seed(0)
    ann = build_model(arch, (1, 8, 8), 10, kind="ann", act_bits=2, **options).eval()
    snn = convert_to_snn(ann)
    neurons = [m for _, m in spiking_neurons(snn)]
    x = torch.rand(1, 5, 1, 8, 8) * 2
    with torch.no_grad():
        rates = ft.snn_rates(snn, neurons, x, 3)
        if arch == "cnn":
            z = ft.synaptic_input(snn, neurons[:2], rates[:1], x)
            by_hand = snn.conv2(snn.pool1(rates[0].unsqueeze(0)))[0]
        else:
            block = snn.block2  # stride 2, 4 -> 8 channels: conv2(act1) + 1x1 shortcut of the block's input
            names = [n for n, _ in spiking_neurons(snn)]
            k = names.index("block2.act2")
            z = ft.synaptic_input(snn, neurons[:k + 1], rates[:k], x)
            r_in, r_mid = rates[names.index("block1.act2")], rates[names.index("block2.act1")]
            by_hand = (block.conv2(r_mid.unsqueeze(0)) + block.shortcut(r_in.unsqueeze(0)))[0]
    assert torch.allclose(z, by_hand, atol=1e-5)


def test_float_weights_behind_sum_of_sigmoid_weights_are_tuned():
    """A converted SNN whose weights are sum-of-sigmoids binary (eval mode: the hard values): the tuned layer's
    float weights, its quantizer's alpha, beta and step and its bias all receive a gradient (the staircase is
    straight-through to the soft form's gradient; a step function alone would pass none)."""
    from qnoise.models import build_model

    torch.manual_seed(0)
    ann = build_model("mlp", (12,), 3, kind="ann", act_bits=2, hidden=[10, 8],
                      quantization={"weights": {"bits": 1, "method": "sigmoid"}}, batchnorm=False)
    with torch.no_grad():
        for m in ann.modules():
            if isinstance(m, LearnableClip):
                m.alpha.fill_(0.9)
    ann.eval()
    snn = convert_to_snn(ann).eval()
    neurons = [m for _, m in spiking_neurons(snn)]
    groups = ft.layer_groups(snn)
    snn.requires_grad_(False)
    for p in groups[1]:
        p.requires_grad_(True)
    ann.requires_grad_(False)
    x = torch.rand(4, 16, 12)
    ft.tune_step(snn, ann, neurons[:2], clip_layers(ann)[1], x, 3).backward()
    names = {id(p): n for n, p in snn.named_parameters()}
    assert any("original" in names[id(p)] for p in groups[1])
    for p in groups[1]:
        assert p.grad is not None and p.grad.abs().sum() > 0, names[id(p)]
