"""Step-major and folded inference (qnoise.stepping, qnoise.neuron_step): the same outputs as the layer-major
path bit for bit, on every reference model and neuron kind; which order a model runs in and why; the inference
kernels held to the neuron rule (qnoise.neurons.neuron_multistep) by property tests."""

from __future__ import annotations

import os
import subprocess
import sys
from unittest import mock

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings
from torch import nn

from qnoise import IF, LIF, neuron_step, neurons, stepmode, stepping
from qnoise.models import apply_quantization, build_model
from qnoise.neurons import neuron_multistep, spiking_neurons

SHAPE = (2, 12, 12)
NEURONS = {
    "IF zero": None,
    "IF half": {"v_init": "half"},
    "LIF": {"type": "lif", "beta": 0.8, "v_init": "half"},
    "signed IF": {"signed": True, "v_init": "half"},
    "per-channel reset-to-zero": {"per_channel": True, "reset": "zero"},
}


def _model(arch: str, neuron, quantized: bool = False, threshold: float = 0.15) -> nn.Module:
    options = {"channels": [6, 8], "hidden": 16} if arch == "cnn" else \
        {"channels": [4, 6]} if arch == "resnet" else {"hidden": [24, 16]}
    spec = dict(neuron or {})
    spec["threshold"] = threshold  # low thresholds: every layer spikes
    torch.manual_seed(1)
    model = build_model(arch, SHAPE, 5, neuron=spec, **options)
    if quantized:
        apply_quantization(model, {"weights": {"bits": 3}, "membrane": {"bits": 6}})
    for m in model.modules():  # BN statistics that are not the identity
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _events(T: int = 6, B: int = 5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, *SHAPE, generator=g) < 0.3).float()


def _orders(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    outs = {}
    with torch.no_grad():
        for kind in ("layer", "step", "fold"):
            with stepping.mode(kind):
                assert stepping.plan(model, x) == kind
                outs[kind] = model(x)
    return outs


@pytest.mark.parametrize("arch", ["mlp", "cnn", "resnet"])
@pytest.mark.parametrize("kind", list(NEURONS))
def test_every_order_gives_the_layer_major_outputs_bit_for_bit(arch, kind):
    model = _model(arch, NEURONS[kind])
    x = _events()
    outs = _orders(model, x)
    assert torch.equal(outs["step"], outs["layer"]) and torch.equal(outs["fold"], outs["layer"])
    rates = []
    hooks = [n.register_forward_hook(lambda m, a, o: rates.append(float((o != 0).float().mean())))
             for _, n in spiking_neurons(model)]
    with torch.no_grad(), stepping.mode("layer"):
        model(x)
    for h in hooks:
        h.remove()
    assert min(rates) > 0.01, f"a layer hardly spikes ({rates}): the comparison would prove little"


@pytest.mark.parametrize("arch", ["mlp", "cnn", "resnet"])
def test_quantized_weights_and_membrane_step_as_they_run_layer_major(arch):
    model = _model(arch, {"v_init": "half"}, quantized=True)
    with torch.no_grad(), torch.nn.utils.parametrize.cached():
        outs = _orders(model, _events(seed=3))
    assert torch.equal(outs["step"], outs["layer"]) and torch.equal(outs["fold"], outs["layer"])


def test_float64_and_the_default_plan_choose_per_model():
    """The first call of a network not seen before runs step-major; a network with small activations then runs
    folded, one with large ones stays step-major; both as layer-major, and in float64 too."""
    x = _events(T=4, B=3).double()
    mlp = _model("mlp", {"v_init": "half"}).double()
    with torch.no_grad():
        assert stepping.plan(mlp, x) == "step"
        first = mlp(x)
        assert stepping.plan(mlp, x) == "fold"
        assert torch.equal(mlp(x), first)
        with stepping.mode("layer"):
            assert torch.equal(mlp(x), first)
        with mock.patch.object(stepping, "FOLD_BYTES", 16):
            assert stepping.plan(mlp, x) == "step"
    assert stepping.plan(mlp, x) == "layer"  # autograd on: training's order


def test_what_keeps_a_model_layer_major():
    model = _model("cnn", None)
    x = _events(T=3, B=2)
    with torch.no_grad():
        model(x)  # its activations are small: "auto" folds it from now on
        assert stepping.why_not(model) is None and stepping.plan(model, x) == "fold"
        model.train()
        assert "training mode" in stepping.why_not(model)
        model.eval()
        h = model.act1.register_forward_hook(lambda m, a, o: None)
        assert "hook" in stepping.why_not(model) and stepping.plan(model, x) == "fold"
        h.remove()
        h = model.conv1.body[0].register_forward_hook(lambda m, a, o: None)
        assert stepping.why_not(model) and stepping.why_not_fold(model) and stepping.plan(model, x) == "layer"
        h.remove()
        model.act2.state_bits, model.act2.state_rounding = 5, "stochastic"
        assert "stochastically" in stepping.why_not(model)
        model.act2.state_bits = None
        model.conv2.mode = "fold"
        assert "fold" in stepping.why_not(model)
        model.conv2.mode = "loop"
        with stepping.mode("layer"):
            assert stepping.plan(model, x) == "layer"
        with stepping.mode("step"):
            assert stepping.plan(model, x) == "step"
    with torch.no_grad():
        assert stepping.plan(model.to("meta"), x.to("meta")) == "layer"  # "auto" plans on the CPU only


class _OwnForward(IF):
    """A neuron kind with a forward of its own (as imported neuron kinds have): it takes [T, B, ...]."""

    def forward(self, x):
        return super().forward(x) * 1.0


def test_a_neuron_with_its_own_forward_is_never_stepped():
    model = _model("mlp", None)
    model.act2 = _OwnForward(threshold=0.4).eval()
    x = _events(T=3, B=2)
    with torch.no_grad():
        assert "forward of its own" in stepping.why_not(model)
        with stepping.mode("layer"):
            ref = model(x)
        with stepping.mode("fold"):
            assert torch.equal(model(x), ref)


def test_a_step_aware_hook_sees_each_step_and_may_replace_the_output():
    model = _model("cnn", {"v_init": "half"})
    x = _events(T=4, B=3)
    seen = []

    def hook(module, args, out):
        seen.append((stepmode.current().t, tuple(args[0].shape)))
        return out * 0

    with torch.no_grad():
        with stepping.mode("layer"):
            h = model.act2.register_forward_hook(lambda m, a, o: o * 0)
            ref = model(x)
            h.remove()
        h = model.act2.register_forward_hook(stepping.step_aware(hook))
        with stepping.mode("step"):
            assert stepping.plan(model, x) == "step"
            out = model(x)
        h.remove()
    assert torch.equal(out, ref)
    assert seen == [(t, (3, 8, 6, 6)) for t in range(4)]


def test_a_network_called_from_inside_a_step_runs_by_itself():
    """A hook that runs another network (a probe's reference) inside a step: that network runs in its own
    order, on its own [T, B, ...] input."""
    model, other = _model("cnn", None), _model("mlp", None)
    x = _events(T=3, B=2)
    with torch.no_grad(), stepping.mode("layer"):
        expect = other(x)
    got = []
    h = model.act1.register_forward_hook(stepping.step_aware(lambda m, a, o: got.append(other(x))))
    with torch.no_grad(), stepping.mode("step"):
        model(x)
    h.remove()
    assert len(got) == 3 and all(torch.equal(g, expect) for g in got)


def test_stepper_steps_a_network_one_call_at_a_time():
    model = _model("resnet", {"v_init": "half"})
    x = _events(T=5, B=2)
    with torch.no_grad():
        with stepping.mode("layer"):
            ref = model(x)
        body = nn.Sequential(*model.children())
        stepper = stepping.Stepper(body, T=5)
        outs = [stepper.step(x[t]) for t in range(5)]
    assert stepper.t == 4 and torch.equal(torch.stack(outs), ref)


# ---------------------------------------------------------------- the neuron rule and the inference kernels
def _neuron(kind: str, theta: float, v_init: str, reset: str, signed: bool, per_channel: bool, state_bits):
    kwargs = {"threshold": theta, "v_init": v_init, "reset": reset, "signed": signed, "state_bits": state_bits}
    if per_channel:
        kwargs.update(per_channel=True, channels=3)
    n = LIF(beta=0.75, **kwargs) if kind == "lif" else IF(**kwargs)
    if per_channel:
        n.set_threshold(torch.tensor([theta, theta * 0.5, theta * 1.7]))
    return n


neuron_options = {
    "kind": st.sampled_from(["if", "lif"]), "theta": st.floats(0.2, 2.0), "v_init": st.sampled_from(["zero", "half"]),
    "reset": st.sampled_from(["subtract", "zero"]), "signed": st.booleans(), "per_channel": st.booleans(),
    "state_bits": st.sampled_from([None, None, 4, 8]),
}


@settings(max_examples=80, deadline=None)
@given(T=st.integers(1, 9), B=st.integers(1, 3), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([torch.float32, torch.float64]), kernel=st.booleans(), **neuron_options)
def test_stepping_a_neuron_equals_its_multistep_rule(T, B, seed, dtype, kernel, kind, theta, v_init, reset, signed,
                                                     per_channel, state_bits):
    """IF.step over x[0], x[1], ... (inference: the CPU kernel, or the in-place torch steps other devices use)
    gives neuron_multistep's unrolled rule bit for bit: IF and LIF, v_init, reset, signed, membrane bits,
    per-channel thresholds, float32 and float64; so does the layer-major inference kernel."""
    n = _neuron(kind, theta, v_init, reset, signed, per_channel, state_bits)
    g = torch.Generator().manual_seed(seed)
    x = ((torch.rand(T, B, 3, 4, generator=g, dtype=torch.float64) * 2.4 - 0.6) * theta).to(dtype)
    # the unrolled rule (record=True never takes a fast path)
    rule = neuron_multistep(x, n.broadcast_threshold(x), n.beta, v_init, reset, signed, n.surrogate, state_bits,
                            record=True).out
    real = neuron_step.uses_kernel
    with torch.no_grad(), mock.patch.object(neurons, "uses_kernel", lambda *a: kernel and real(*a)):
        state, outs = None, []
        for t in range(T):
            out, state = n.step(x[t], state)
            outs.append(out)
        layer_major = n(x)
    assert torch.equal(torch.stack(outs), rule)
    assert torch.equal(layer_major, rule)


@given(T=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_the_step_kernel_is_one_thread_or_many_and_any_width(T, seed):
    """Layers wider than a kernel chunk and batches over the serial threshold step as the rule does."""
    n = IF(threshold=0.5, v_init="half")
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(T, 9, neuron_step.CHUNK + 5, generator=g) - 0.2
    with torch.no_grad():
        state, outs = None, []
        for t in range(T):
            out, state = n.step(x[t], state)
            outs.append(out)
    rule = neuron_multistep(x, n.broadcast_threshold(x), 1.0, "half", record=True).out
    assert state.flat is not None and torch.equal(torch.stack(outs), rule)


def test_step_with_autograd_follows_the_rule_and_its_gradient():
    n = LIF(beta=0.8, v_init="half", learn_threshold=True)
    x = torch.rand(4, 2, 5, requires_grad=True)
    state, outs = None, []
    for t in range(4):
        out, state = n.step(x[t], state)
        outs.append(out)
    torch.stack(outs).sum().backward()
    gx, gth = x.grad.clone(), n.raw_threshold.grad.clone()
    x.grad, n.raw_threshold.grad = None, None
    neuron_multistep(x, n.broadcast_threshold(x), n.beta, "half", record=True).out.sum().backward()
    assert torch.allclose(gx, x.grad) and torch.allclose(gth, n.raw_threshold.grad)


def test_the_kernels_keep_torch_thread_count():
    """Starting numba's OpenMP pool resets the runtime it shares with torch: a network's first step-major and
    folded runs must leave torch's thread count as the user set it (fresh process: the pool starts there)."""
    code = ("import torch\n"
            "from qnoise.models import build_model\n"
            "torch.set_num_threads(1)\n"
            "m = build_model('cnn', (2, 12, 12), 3, channels=[64, 64], hidden=8).eval()\n"
            "with torch.no_grad():\n"
            "    m(torch.rand(2, 4, 2, 12, 12)); m(torch.rand(2, 4, 2, 12, 12))\n"
            "print(torch.get_num_threads())\n")
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["1"]


def test_bad_steps_say_what_is_expected():
    with pytest.raises(ValueError, match=r"one step \[B, \.\.\.\]"):
        IF().step(torch.ones(3))
    n = IF(per_channel=True, channels=3)
    with pytest.raises(ValueError, match="per-channel"):
        n.step(torch.ones(2, 4))
    with pytest.raises(ValueError, match="mode="):
        with stepping.mode("sideways"):
            pass


def test_quantized_weights_step_but_weights_drawn_at_random_do_not():
    """Weight parametrizations (quantizers, in whatever mode) transform weights, not data: a quantized model
    steps. Stochastic rounding draws new weights at each use, so another order would draw others: such a model
    runs layer-major unless the weights are cached for the run."""
    from qnoise.probe import configured

    model = _model("cnn", None)
    x = _events(T=3, B=2)
    with torch.no_grad():
        with configured(model, weight_bits=4):
            assert stepping.why_not(model) is None and stepping.why_not_fold(model) is None
        with configured(model, weight_bits=4, rounding="stochastic"):
            assert "at random" in stepping.why_not(model) and "at random" in stepping.why_not_fold(model)
            assert stepping.plan(model, x) == "layer"
            with torch.nn.utils.parametrize.cached():
                assert stepping.why_not(model) is None


def test_folding_is_decided_on_random_values_not_on_the_first_input():
    """A first folded call on zeros (a silent layer's spikes) agrees with the per-step values by chance; the
    decision is made on random values of the shape, so a later input is not folded where folding rounds
    differently (a Linear with few rows)."""
    from qnoise import stepping
    from qnoise.models import build_model

    for seed in range(10):
        torch.manual_seed(seed)
        model = build_model("mlp", (20,), 33, hidden=[], batchnorm=False).eval()
        x = torch.rand(4, 2, 20) * 2
        with torch.no_grad():
            with stepping.mode("fold"):
                model(torch.zeros_like(x))
                folded = model(x)
            with stepping.mode("layer"):
                assert torch.equal(folded, model(x)), seed


def test_every_order_gives_small_batch_linear_layers_aligned_steps():
    """A linear layer on a few rows rounds by its input's memory alignment: layer-major fed it views x[t] of a
    [T, B, N] tensor (B N not a multiple of 16 floats: misaligned), step-major fresh tensors, and the outputs
    differed in the last bit in 9 of 20 seeds. Every order now gives the body aligned steps."""
    from qnoise import stepping
    from qnoise.models import build_model

    for seed in range(20):
        torch.manual_seed(seed)
        model = build_model("mlp", (20,), 3, hidden=[33, 33], batchnorm=False).eval()
        x = torch.rand(4, 2, 20) * 2
        with torch.no_grad():
            outs = {}
            for order in ("layer", "step", "fold"):
                with stepping.mode(order):
                    outs[order] = model(x)
        assert torch.equal(outs["step"], outs["layer"]) and torch.equal(outs["fold"], outs["layer"]), seed


@pytest.mark.parametrize("arch", ["cnn", "resnet"])
def test_an_input_whose_channels_are_innermost_runs_in_every_order(arch):
    """Images from an [N, H, W, C] array permuted to [C, H, W] have channel stride 1; with one channel torch
    takes them for channels-last and so does the conv's output: the step kernel's output, allocated like its
    input, could not be viewed as the kernel's rows (the resnet's forward failed in every order but layer-major).
    Every order now runs, and gives the same outputs as the contiguous input within float rounding (the conv
    sums in another order for another memory format)."""
    torch.manual_seed(0)
    model = build_model(arch, (1, 16, 16), 4).eval()
    x = torch.rand(6, 16, 16, 1).permute(0, 3, 1, 2).unsqueeze(0).expand(5, -1, -1, -1, -1)  # [T, B, 1, H, W]
    assert x[0].stride()[1] == 1
    with torch.no_grad():
        for order in ("layer", "step", "fold"):
            with stepping.mode(order):
                torch.testing.assert_close(model(x), model(x.contiguous()), rtol=1e-5, atol=1e-6)
