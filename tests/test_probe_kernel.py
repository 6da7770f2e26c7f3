"""The probe's two implementations of one layer's ANN sums (qnoise.probe.kernel): the fused CPU kernel (numba,
qnoise.probe.cpu_kernel: closed forms for an IF neuron on a constant input, the rule of the twin's activation)
must give the numbers of the torch functions (qnoise.probe.sums, which call the neuron's and the activation
module's own forward) for every neuron kind, twin, activation and threshold layout; and the synaptic
operations of a hand count."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from qnoise import IF, LIF
from qnoise.neurons import ClampActivation
from qnoise.probe.cpu_kernel import CHUNK
from qnoise.probe.kernel import ann_layer_sums, input_synops
from qnoise.probe.sums import ANN_SUMS
from qnoise.quant import LearnableClip

pytest.importorskip("numba", reason="the fused CPU kernel is written with numba")


def _layer(neuron: IF, T: int, B: int, N: int, Tt: int, seed: int, dtype=torch.float32):
    """Input, output, twin tensors and fan-out of one neuron layer ([T, B, C, N/C] when per channel)."""
    g = torch.Generator().manual_seed(seed)
    shape = (T, B, neuron.threshold.numel(), N // neuron.threshold.numel()) if neuron.per_channel else (T, B, N)
    x = (torch.randn(*shape, generator=g) * 0.6 + 0.25).to(dtype)
    with torch.no_grad():
        out = neuron(x)
    A = torch.rand(Tt, *shape[1:], generator=g).to(dtype)
    z_hat = (torch.randn(Tt, *shape[1:], generator=g) * 0.6 + 0.25).to(dtype)
    fanout = torch.randint(0, 20, (N, 2), generator=g).double() / 4  # fractional, as average pooling folds in
    return x, out, A, z_hat, fanout


def _both(neuron: IF, activation: nn.Module | None = None, T=5, B=3, N=300, Tt=1, seed=0, dtype=torch.float32):
    """The layer's sums by the fused CPU kernel and by the torch functions."""
    x, out, A, z_hat, fanout = _layer(neuron, T, B, N, Tt, seed, dtype)
    act = activation if activation is not None else ClampActivation(neuron)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the fused kernel must not fall back
        fused = ann_layer_sums(neuron, x, out, A, z_hat, act, fanout, True, fused=True)
    return fused, ann_layer_sums(neuron, x, out, A, z_hat, act, fanout, True, fused=False)


def _assert_same(fused, eager, dtype=torch.float32) -> None:
    rel = 1e-5 if dtype == torch.float32 else 1e-10
    for part in ("propagated", "isolated", "reference", "synops"):
        torch.testing.assert_close(getattr(fused, part), getattr(eager, part), rtol=rel, atol=rel * 100,
                                   msg=lambda m, part=part: f"{part}: {m}")


NEURONS = {
    "IF half (closed form, rounding)": lambda: IF(threshold=0.8, v_init="half"),
    "IF zero (closed form, truncation)": lambda: IF(threshold=1.0, v_init="zero"),
    "IF reset to zero (dynamics)": lambda: IF(threshold=0.8, v_init="half", reset="zero"),
    "signed IF": lambda: IF(threshold=0.7, v_init="half", signed=True),
    "LIF (dynamics)": lambda: LIF(beta=0.8, threshold=0.9, v_init="zero"),
    "per-channel IF": lambda: _per_channel(),
    "quantized membrane (dynamics)": lambda: IF(threshold=0.8, v_init="half", state_bits=5),
}


def _per_channel() -> IF:
    n = IF(v_init="half", per_channel=True, channels=4)
    with torch.no_grad():
        n.raw_threshold.copy_(torch.tensor([0.5, 0.8, 1.1, 1.4]))
    return n


@pytest.mark.parametrize("kind", list(NEURONS))
@pytest.mark.parametrize("twin", ["mean", "cumulative"])
def test_fused_cpu_kernel_equals_the_torch_functions(kind, twin):
    neuron = NEURONS[kind]()
    fused, eager = _both(neuron, Tt=5 if twin == "cumulative" else 1)
    _assert_same(fused, eager)


@pytest.mark.parametrize("activation", [lambda: LearnableClip(bits=2, alpha=0.9, learn_alpha=False),
                                        lambda: LearnableClip(bits=None, alpha=1.1, learn_alpha=False),
                                        nn.ReLU, nn.ReLU6, lambda: nn.Hardtanh(-0.2, 0.7)],
                         ids=["LearnableClip 2 bits", "float clip", "ReLU", "ReLU6", "Hardtanh"])
def test_the_kernel_evaluates_a_given_anns_activation_as_the_module_does(activation):
    fused, eager = _both(IF(threshold=0.9, v_init="half"), activation())
    _assert_same(fused, eager)


def test_fused_cpu_kernel_in_float64_and_across_chunks():
    """float64 data agree to rounding; a layer wider than one chunk is summed over all its chunks."""
    neuron = IF(threshold=0.8, v_init="zero").double()
    fused, eager = _both(neuron, T=3, B=2, N=CHUNK + 77, dtype=torch.float64)
    _assert_same(fused, eager, torch.float64)


@settings(max_examples=40, deadline=None)
@given(T=st.integers(1, 6), B=st.integers(1, 4), N=st.integers(1, 64), theta=st.floats(0.25, 2.0),
       v_init=st.sampled_from(["zero", "half"]), signed=st.booleans(), reset=st.sampled_from(["subtract", "zero"]),
       cumulative=st.booleans(), seed=st.integers(0, 10_000))
def test_fused_cpu_kernel_property(T, B, N, theta, v_init, signed, reset, cumulative, seed):
    neuron = IF(threshold=theta, v_init=v_init, signed=signed, reset=reset)
    fused, eager = _both(neuron, T=T, B=B, N=N, Tt=T if cumulative else 1, seed=seed)
    _assert_same(fused, eager)


def test_synops_are_spikes_times_fanout():
    """A hand count: spikes (negative ones too) times the weights each neuron reaches, per step."""
    neuron = IF(threshold=1.0, signed=True)
    x = torch.tensor([[[1.0, 0.2, 0.0]], [[-2.0, 0.9, 0.0]], [[0.0, 0.0, 3.0]]])  # [T=3, B=1, N=3]
    with torch.no_grad():
        out = neuron(x)
    assert out[:, 0].tolist() == [[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    fanout = torch.tensor([[9.0], [4.0], [2.5]], dtype=torch.float64)
    zero = torch.zeros(1, 1, 3)
    for fused in (True, False):
        sums = ann_layer_sums(neuron, x, out, zero, zero, ClampActivation(neuron), fanout, False, fused=fused)
        assert sums.synops[:, 0].tolist() == [9.0, 13.0, 2.5]
        assert sums.propagated[:, ANN_SUMS.index("events")].tolist() == [1.0, 2.0, 1.0]


def test_synops_of_large_fanouts_are_exact_counts():
    """A layer whose spikes reach thousands of weights each (a 512-channel 3x3 conv's 4608): per step the
    count is beyond float32's whole numbers (2^24), and the kernels still give the exact count of a float64
    hand sum, for the layer's spikes and for the data's events."""
    g = torch.Generator().manual_seed(0)
    N = 2 * 8192
    neuron = IF(threshold=1.0)
    x = (torch.rand(2, 3, N, generator=g) < 0.6).float() * 1.5  # [T, B, N], float32
    with torch.no_grad():
        out = neuron(x)
    fanout = torch.randint(4000, 4700, (N, 1), generator=g, dtype=torch.float64)
    counts = ((out != 0).double().sum(1) @ fanout)[:, 0]
    assert counts.max() > 2 ** 26
    zero = torch.zeros(1, 3, N)
    sums = ann_layer_sums(neuron, x, out, zero, zero, ClampActivation(neuron), fanout, False, fused=True)
    assert sums.synops[:, 0].tolist() == counts.tolist()
    binary, analog = input_synops(x, fanout, True)  # values 1.5: every sample counts as analog
    assert binary.abs().sum() == 0
    assert analog[:, 0].tolist() == ((x != 0).double().sum(1) @ fanout)[:, 0].tolist()


@pytest.mark.parametrize("values,analog", [((0.0, 1.0), ()), ((0.0, -1.0, 1.0), ()), ((0.0, 0.5), (0, 1, 2)),
                                           ((0.0, 1.0), (1,))])
def test_input_synops_fused_equals_eager(values, analog):
    """The data's operations split per sample: a sample whose every value is 0, +1 or -1 counts accumulates, any
    other sample (here those in ``analog``, given one value of 0.7) multiply-accumulates; the CPU kernel (chunks
    of 8192 values per job) and torch agree with a count by hand, sample by sample."""
    g = torch.Generator().manual_seed(0)
    pick = torch.randint(0, len(values), (4, 3, 2, 5, 5), generator=g)
    x = torch.tensor(values)[pick]
    for b in analog:
        x[1, b, 0, 0, 0] = 0.7
    fanout = torch.rand(50, 2, generator=g, dtype=torch.float64) * 9
    fused, eager = input_synops(x, fanout, True), input_synops(x, fanout, False)
    per_sample = (x != 0).reshape(4, 3, -1).double().permute(1, 0, 2) @ fanout  # [B, T, M]
    expected = (sum((per_sample[b] for b in range(3) if b not in analog), torch.zeros(4, 2, dtype=torch.float64)),
                sum((per_sample[b] for b in analog), torch.zeros(4, 2, dtype=torch.float64)))
    for got in (fused, eager):
        for a, e in zip(got, expected, strict=True):
            torch.testing.assert_close(a, e, rtol=0, atol=1e-9)



def test_the_fused_kernel_keeps_torch_thread_count():
    """Numba's OpenMP pool shares torch's OpenMP runtime and resets its thread count when it starts; the
    kernel must leave torch's setting as the user made it (checked in a fresh process, where the pool
    starts)."""
    code = ("import torch\n"
            "from qnoise.probe.kernel import input_synops\n"
            "torch.set_num_threads(1)\n"
            "x = (torch.rand(2, 3, 4) < 0.5).float()\n"
            "input_synops(x, torch.ones(4, 1, dtype=torch.float64), fused=True)\n"
            "import numba\n"
            "print(torch.get_num_threads(), numba.get_num_threads())\n")
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["1", "1"]


@pytest.mark.parametrize("signed", [False, True])
def test_fused_snn_sums_equal_the_torch_functions(signed):
    """The sums against the float SNN (own and propagated, isolated, the reference's square, synops) by the CPU
    kernel equal `qnoise.probe.sums.snn_sums` on random spike trains."""
    from qnoise.probe.kernel import snn_layer_sums

    g = torch.Generator().manual_seed(3)
    low = -1 if signed else 0
    out, own, ref = (torch.randint(low, 2, (6, 3, 400), generator=g).float() * 0.7 for _ in range(3))
    fanout = torch.rand(400, 2, generator=g, dtype=torch.float64) * 5
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        fused = snn_layer_sums(out, own, ref, fanout, True, fused=True)
    _assert_same(fused, snn_layer_sums(out, own, ref, fanout, True, fused=False))


@pytest.mark.slow
def test_the_first_run_after_installation_gives_the_numbers_of_every_later_run(tmp_path):
    """Numba optimizes a freshly compiled parallel kernel differently from the cached one (numba issue 10617):
    a process that finds an empty kernel cache must still give, bit for bit, what a process with a warm
    cache gives (issue 12: the first sweep after installation differed in 378 of 3339 values)."""
    code = ("import torch\n"
            "from qnoise.probe.cpu_kernel import layer_sums, snn_sums\n"
            "from qnoise.probe.sums import ISO_CLOSED, Q_ROUND\n"
            "g = torch.Generator().manual_seed(0)\n"
            "x = torch.rand(4, 8, 20000, generator=g); A = torch.rand(1, 8, 20000, generator=g)\n"
            "th = torch.ones(20000)\n"
            "p, i, r, o = layer_sums(x, x, A, A, A, th, 0.0, th, 0, Q_ROUND, iso=ISO_CLOSED)\n"
            "s = snn_sums(x, x * 0.5, A.expand_as(x).contiguous())\n"
            "print(repr(r.tolist()), repr(p.tolist()), repr(s[0].tolist()), repr(s[2].tolist()))\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    cold, warm = (subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
                  for _ in range(2))
    assert cold.stdout == warm.stdout and cold.stdout


# ---------------------------------------------------------------- step-major runs (issue 15)
def _probe_table(model, x, y, order: str, compare, count=None):
    """The probe's table of two batches with the model run in ``order`` (qnoise.stepping.mode)."""
    from qnoise import stepping
    from qnoise.probe import Count, Probe

    with torch.no_grad(), stepping.mode(order), Probe(model, compare, count or Count(), compile=True) as probe:
        assert stepping.plan(model, x) == order
        probe.step(x, y)
        probe.step(x[:, :2], y[:2])
        return probe.table()


def _stepping_model(arch: str, neuron):
    from qnoise.models import build_model

    options = {"channels": [6, 8], "hidden": 16} if arch == "cnn" else \
        {"channels": [4, 6]} if arch == "resnet" else {"hidden": [24, 16]}
    torch.manual_seed(2)
    model = build_model(arch, (2, 12, 12), 5, neuron={**(neuron or {}), "threshold": 0.15}, **options)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("arch", ["mlp", "cnn", "resnet"])
@pytest.mark.parametrize("reference,neuron", [("ann", None), ("ann", {"v_init": "half"}), ("ann-quantized", None),
                                              ("snn", {"signed": True, "v_init": "half"}), ("snn", {"type": "lif"}),
                                              ("ann", {"reset": "zero"}), ("none", None), ("ann", {"type": "lif"})])
def test_the_probe_gives_the_same_table_in_every_order(arch, reference, neuron):
    """A step-major run accumulates every layer's sums step by step (the fused neuron kernel where it can), a
    folded or layer-major run over whole tensors: the tables are the same bit for bit, at 4-bit weights."""
    from qnoise.probe import Compare, configured

    model = _stepping_model(arch, neuron)
    g = torch.Generator().manual_seed(5)
    x = (torch.rand(5, 4, 2, 12, 12, generator=g) < 0.3).float()
    y = torch.randint(0, 5, (4,), generator=g)
    with configured(model, weight_bits=4), torch.nn.utils.parametrize.cached():
        tables = {order: _probe_table(model, x, y, order, Compare(reference=reference))
                  for order in ("layer", "step", "fold")}
    assert tables["step"].equals(tables["layer"]) and tables["fold"].equals(tables["layer"])
    assert len(tables["layer"]) > 100


@pytest.mark.parametrize("options", [{"twin_input": "cumulative"}, {"isolate": False}, {"keep_tensors": 3},
                                     {"state_bits": 5}])
def test_step_major_probe_options_match_the_layer_major_table(options):
    """Options whose sums need whole tensors (kept samples, a quantized membrane) or a twin per step gather
    the steps or take them as they come; the table is the layer-major one."""
    from qnoise.probe import Compare, Count

    model = _stepping_model("cnn", {"v_init": "half"})
    if "state_bits" in options:
        for m in model.modules():
            if isinstance(m, IF):
                m.state_bits = options["state_bits"]
    compare = Compare(**{k: v for k, v in options.items() if k in ("twin_input", "isolate")})
    count = Count(keep_tensors=options.get("keep_tensors", 0))
    g = torch.Generator().manual_seed(6)
    x = (torch.rand(4, 3, 2, 12, 12, generator=g) < 0.3).float()
    y = torch.randint(0, 5, (3,), generator=g)
    step, layer = (_probe_table(model, x, y, order, compare, count) for order in ("step", "layer"))
    assert step.equals(layer)


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 5), B=st.integers(1, 4), N=st.integers(1, 9000), M=st.integers(0, 3),
       rate=st.floats(0.0, 1.0), seed=st.integers(0, 10_000))
def test_spike_counts_by_the_kernel_equal_torch_and_a_count(T, B, N, M, rate, seed):
    """A layer's spikes per step (nonzero outputs, negative ones included) and the weights they reach: the CPU
    kernel (`SpikeSteps`, chunks of 8192 neurons) equals torch's count and an explicit loop over the steps."""
    from qnoise.probe.kernel import spike_counts

    g = torch.Generator().manual_seed(seed)
    sign = torch.randint(-1, 2, (T, B, N), generator=g).float()
    out = sign * (torch.rand(T, B, N, generator=g) < rate) * 0.37
    fan = torch.randint(0, 50, (N, M), generator=g).double() if M else None
    fused, eager = spike_counts(out, fan, fused=True), spike_counts(out, fan, fused=False)
    for a, b in zip(fused, eager, strict=True):
        assert torch.equal(a, b)
    for t in range(T):
        nz = (out[t] != 0).double()
        assert float(fused[0][t]) == float(nz.sum())
        if M:
            assert torch.equal(fused[1][t], (nz.sum(0) @ fan))
    assert fused[1].shape == (T, M)


def test_step_major_probe_streams_and_fuses_where_it_can():
    """In a step-major run the CPU kernel takes each layer step by step (the neuron and its sums in one pass for
    an IF layer against the twin); layers whose sums need whole tensors gather them."""
    from unittest import mock

    from qnoise import stepping
    from qnoise.probe import Compare, Probe, kernel

    model = _stepping_model("cnn", {"v_init": "half"})
    model.act2.reset = "zero"  # no closed form: gathered
    x = (torch.rand(4, 2, 2, 12, 12) < 0.3).float()
    fused = []
    real = kernel.AnnStream.neuron_step

    def spy(self, neuron, xt, state):
        out = real(self, neuron, xt, state)
        fused.append(out is not None)
        return out

    def stream_kinds(compare) -> dict[str, str]:
        """How each layer's sums accumulated in one step-major batch probed with ``compare``."""
        kinds = {}
        with torch.no_grad(), stepping.mode("step"), Probe(model, compare, compile=True) as probe, \
                mock.patch.object(kernel.AnnStream, "neuron_step", spy):
            real_close = probe._close_streams

            def close():
                kinds.update({name: kind for name, (kind, _) in probe._streams.items()})
                real_close()

            probe._close_streams = close
            probe.step(x)
        return kinds

    assert stream_kinds(Compare()) == {"act1": "ann", "act2": "gather", "act3": "ann"}
    assert fused and all(fused) and len(fused) == 2 * 4
    # no reference: counted step by step, nothing gathered
    assert set(stream_kinds(Compare(reference="none")).values()) == {"spikes"}


@settings(max_examples=30, deadline=None)
@given(T=st.integers(1, 6), B=st.integers(1, 3), N=st.integers(1, 40), theta=st.floats(0.25, 2.0),
       v_init=st.sampled_from(["zero", "half"]), seed=st.integers(0, 10_000), dtype=st.sampled_from([torch.float32,
                                                                                                    torch.float64]))
def test_the_fused_neuron_kernel_steps_the_neuron_and_adds_the_sums_of_the_plain_kernels(T, B, N, theta, v_init, seed,
                                                                                           dtype):
    """AnnSteps.neuron_step gives the neuron's own output (its rule) and the sums AnnSteps.step adds on it."""
    from qnoise.neuron_step import StepState, flat_threshold, prepare_kernel
    from qnoise.probe.cpu_kernel import AnnSteps
    from qnoise.probe.sums import Q_FLOOR, Q_ROUND

    g = torch.Generator().manual_seed(seed)
    neuron = IF(threshold=theta, v_init=v_init).to(dtype)
    x = ((torch.rand(T, B, N, generator=g, dtype=torch.float64) * 2.2 - 0.5) * theta).to(dtype)
    A = torch.rand(1, B, N, generator=g, dtype=torch.float64).to(dtype)
    th = flat_threshold(neuron.threshold.detach(), x[0])
    fan = torch.rand(N, 2, generator=g, dtype=torch.float64)
    q_rule = Q_ROUND if v_init == "half" else Q_FLOOR
    with torch.no_grad():
        expect = neuron(x)
    plain, fused = (AnnSteps(A, A, th, 0.0, th, 0, q_rule, T, fan, dtype) for _ in range(2))
    state = StepState(None, None, neuron.threshold.detach(), 1.0, flat=th)
    outs = []
    for t in range(T):
        xs = prepare_kernel(state, x[t], v_init == "half")
        outs.append(fused.neuron_step(xs, state.v, th, state.scalars[1]))
        state.t += 1
        plain.step(x[t], expect[t])
    assert torch.equal(torch.stack(outs), expect)
    weight = torch.zeros(T, 2, dtype=torch.float64)
    for a, b in zip(fused.result(weight), plain.result(weight), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("signed", [False, True])
def test_snn_sums_by_spike_counts_equal_the_torch_functions(signed):
    """For IF neurons (outputs theta * s) the kernel keeps spike counts instead of sums of outputs: the same
    numbers as `qnoise.probe.sums.snn_sums`, per-element thresholds different between the layer and the float
    SNN."""
    from qnoise.probe.kernel import snn_layer_sums

    g = torch.Generator().manual_seed(4)
    low = -1 if signed else 0
    theta = torch.rand(400, generator=g) + 0.3
    theta_ref = theta + torch.rand(400, generator=g) * 0.1
    out, own = (torch.randint(low, 2, (6, 3, 400), generator=g).float() * theta for _ in range(2))
    ref = torch.randint(low, 2, (6, 3, 400), generator=g).float() * theta_ref
    fanout = torch.rand(400, 2, generator=g, dtype=torch.float64) * 5
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        counted = snn_layer_sums(out, own, ref, fanout, True, fused=True, thetas=(theta, theta_ref))
    _assert_same(counted, snn_layer_sums(out, own, ref, fanout, True, fused=False))


@pytest.mark.parametrize("compile", [False, True])
def test_input_operations_do_not_depend_on_the_batch(compile):
    """One analog sample in a batch made every sample of it count multiply-accumulates (the data was judged binary
    or not as a whole): synops_ac / synops_mac / energy differed between batch_size 1 and 2. Now per sample."""
    from qnoise import IF, MultiStep
    from qnoise.probe import analyze

    model = nn.Sequential(MultiStep(nn.Linear(2, 1)), IF(threshold=1.0, v_init="half"),
                          MultiStep(nn.Linear(1, 2))).eval()
    with torch.no_grad():
        model[0].body.weight.fill_(0.5)
    X = torch.zeros(2, 1, 2)
    X[0, 0, 0], X[1, 0, 0] = 1.0, 0.5  # one binary event, one analog value
    rows = []
    for batch_size in (1, 2):
        df = analyze(model, (X, torch.tensor([0, 1])), timesteps=1, batch_size=batch_size, reference="none",
                     compile=compile)
        rows.append(df[(df.layer == "1") & (df.t == 1)].set_index("metric").value)
    for metric, value in (("synops", 1.0), ("synops_ac", 0.5), ("synops_mac", 0.5)):
        assert rows[0][metric] == rows[1][metric] == value
    assert rows[0]["energy_pj"] == rows[1]["energy_pj"]
