"""`Probe`: forward hooks on a model's neurons that accumulate DESIGN.md's metrics over batches.

The probe is a manager in the NeuroBench manner: it registers hooks on the model (a pre-hook and a hook on
the root module, one hook per neuron), never flags inside layers, and removes them on exit, exception or
not. The model's outputs are the same with and without it (hooks only read).

Per neuron layer the hook receives the neuron's input ``x [T, B, ...]`` and output ``out [T, B, ...]``, and
nothing else is needed: the SNN rate is ``r(t) = cumsum(out)/t`` and the mean input is
``z(t) = cumsum(x)/t``. That ``z(t)`` equals DESIGN.md's ``f_l(r_{l-1}(t))`` rests on one assumption: the
synaptic op ``f_l`` between two neuron layers is affine and stateless (conv/linear, batch norm in eval mode,
bias, average pooling, flatten, residual adds), so the mean of its outputs is its output on the mean input.
Max pooling or a nonlinearity between neurons would break it. ``tests/test_probe.py`` checks the identity
against an explicit ``f_l(r_{l-1}(t))``.

Statistics are running sums (float64) per layer and timestep, so memory is O(layers x T), never
O(samples); ``keep_tensors=k`` additionally keeps the full spike, membrane, input and twin tensors of the
first k samples.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..metrics import (
    E_AC_PJ,
    E_MAC_PJ,
    cosine_from_sums,
    energy_pj,
    firing_rate_from_counts,
    memory_bits,
    sqnr_from_norms,
    weight_sqnr_db,
)
from ..neurons import IF, LIF, spiking_neurons
from ..quant import BinaryWeight, SigmoidSumQuantizer, TernaryWeight, float_weight, weight_bits, weight_layers
from .functional import (
    ISO_OFF,
    PROP_STATS,
    complete_stats,
    cumulative_mean,
    isolated_mode,
    membrane_noise,
)
from .kernel import input_synops, layer_sums, resolve_compile
from .structure import INPUT, OUTPUT, Structure, model_structure
from .twin import REFERENCES, TWIN_INPUTS, TwinActivations, activation_modules, ann_twin, run_twin

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ["model", "dataset", "weight_bits", "state_bits", "timesteps", "rounding", "neuron", "layer", "t",
           "metric", "value", "mode"]
MODES = ("propagated", "isolated")
_IDX = {name: i for i, name in enumerate(PROP_STATS)}


def weights_are_signs(module: nn.Module) -> bool:
    """True when a weight layer's weights are binary or ternary ({-a, +a} or {-a, 0, +a}): every
    product with such a weight is a sign flip, counted as an accumulate."""
    if not parametrize.is_parametrized(module, "weight"):
        return False
    q = module.parametrizations.weight[0]
    if isinstance(q, (BinaryWeight, TernaryWeight)):
        return True
    return isinstance(q, SigmoidSumQuantizer) and q.levels.numel() <= 3


def describe_neurons(model: nn.Module) -> str:
    """The neuron column: ``IF``, ``LIF``, ``signed IF``, ``signed LIF``, or ``mixed``."""
    kinds = {("signed " if n.signed else "") + ("LIF" if isinstance(n, LIF) else "IF")
             for _, n in spiking_neurons(model)}
    return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "none")


def describe_weight_bits(model: nn.Module) -> int:
    """The weight_bits column: the lowest per-layer width (32 when no layer is quantized)."""
    return min((weight_bits(m) for _, m in weight_layers(model)), default=32)


def describe_state_bits(model: nn.Module) -> int:
    """The state_bits column: the lowest membrane width (32 = float membrane)."""
    return min((n.state_bits or 32 for _, n in spiking_neurons(model)), default=32)


def _flat_theta(neuron: IF, x: torch.Tensor) -> torch.Tensor:
    """The neuron's threshold as one value per element of a sample, ``[N]``."""
    theta = neuron.broadcast_threshold(x).detach().to(x.dtype)
    return theta.expand(x.shape[2:]).reshape(-1).contiguous()


class Probe:
    """Context manager that records quantization noise, spikes and costs of ``model`` per layer and step.

    Args:
        model: an SNN built from qnoise neurons, ``[T, B, ...] -> [T, B, classes]``.
        reference: ``"float"`` (ANN twin with float weights), ``"quantized"`` (the SNN's own quantized
            weights) or an ``nn.Module`` ANN (e.g. the quantized ANN a model was converted from), see
            `qnoise.probe.twin`. The twin is built on entering the context, from the weights at that time.
        isolate: also run each neuron layer on the twin's input (isolated mode, the shadow comparison of
            torch.ao's numeric suite): the layer's own quantization and sequential error, nothing inherited.
        keep_tensors: keep full tensors of this many samples (`tensors`).
        twin_input: ``"mean"`` or ``"cumulative"`` (`qnoise.probe.twin`).
        compile: compute the statistics with the fused kernels (`qnoise.probe.kernel`): True, False or
            ``"auto"`` (for a big enough model).
        e_mac, e_ac: energy per MAC and per accumulate in pJ.

    Use::

        with Probe(model) as probe:
            for x, y in batches:          # x [T, B, ...]
                probe.step(x, y)          # or model(x): without labels there is no accuracy
        df = probe.table()
    """

    def __init__(self, model: nn.Module, reference: str | nn.Module = "float", isolate: bool = True,
                 keep_tensors: int = 0, twin_input: str = "mean", compile: bool | str = "auto",
                 e_mac: float = E_MAC_PJ, e_ac: float = E_AC_PJ) -> None:
        if not isinstance(reference, nn.Module) and reference not in REFERENCES:
            raise ValueError(f"reference={reference!r} is not one of {REFERENCES} or an nn.Module")
        if twin_input not in TWIN_INPUTS:
            raise ValueError(f"twin_input={twin_input!r} is not one of {TWIN_INPUTS}")
        if not (isinstance(keep_tensors, int) and keep_tensors >= 0):
            raise ValueError(f"keep_tensors must be an int >= 0, got {keep_tensors!r}")
        self.neurons = dict(spiking_neurons(model))
        if not self.neurons:
            raise ValueError(f"{type(model).__name__} has no qnoise neurons (IF/LIF) to probe")
        self.model, self.reference, self.isolate = model, reference, isolate
        resolve_compile(compile, 0)  # checks the value
        self.keep_tensors, self.twin_input, self.compile = keep_tensors, twin_input, compile
        self.e_mac, self.e_ac = e_mac, e_ac
        self.twin: nn.Module | None = None
        self.structure: Structure | None = None
        self._handles: list = []
        self.reset()

    # ------------------------------------------------------------------ context
    def __enter__(self) -> Probe:
        self.attach()
        return self

    def __exit__(self, *exc) -> bool:
        self.detach()
        return False

    def attach(self) -> None:
        """Build the twin and register the hooks (what entering the context does)."""
        if self._handles:
            raise RuntimeError("this Probe is already attached")
        self._custom_reference = isinstance(self.reference, nn.Module)
        if self._custom_reference:
            self._build_twin()
        try:
            self._handles.append(self.model.register_forward_pre_hook(self._on_input))
            self._handles.append(self.model.register_forward_hook(self._on_output))
            for name, neuron in self.neurons.items():
                self._handles.append(neuron.register_forward_hook(
                    lambda mod, args, out, name=name: self._on_neuron(name, mod, args, out)))
        except BaseException:
            self.detach()
            raise

    def detach(self) -> None:
        """Remove every hook (what leaving the context does)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._batch = None
        if not isinstance(self.reference, nn.Module):
            self.twin = None

    def reset(self) -> None:
        """Forget all accumulated statistics."""
        self._fused: bool | None = None  # fused kernels or not: decided on the next batch
        self.T: int | None = None
        self.Tt: int | None = None
        self.samples = 0
        self.labeled = 0
        self._prop: dict[str, torch.Tensor] = {}
        self._iso: dict[str, torch.Tensor] = {}
        self._mem: dict[str, torch.Tensor] = {}
        self._ops: dict[str, dict[str, torch.Tensor]] = {"ac": {}, "mac": {}}
        self._correct = self._agree = self._ann_correct = None
        self._kept = 0
        self._tensors: dict[str, dict[str, list[torch.Tensor]]] = {}
        self._batch = None
        self._labels = None
        self._given_twin = None
        self._element_count: dict[str, int] = {}

    # ------------------------------------------------------------------ driving
    @torch.no_grad()
    def step(self, x: torch.Tensor, y: torch.Tensor | None = None,
             twin: TwinActivations | None = None) -> torch.Tensor:
        """Run the model on ``x [T, B, ...]`` with labels ``y [B]`` (for accuracy); returns its output.

        ``twin`` passes precomputed twin activations for this batch (`twin_activations`), as sweeps do to
        share them between configurations.
        """
        if not self._handles:
            raise RuntimeError("Probe.step needs the probe attached: use `with Probe(model) as probe:`")
        self._labels, self._given_twin = y, twin
        try:
            return self.model(x)
        finally:
            self._labels = self._given_twin = None

    def _build_twin(self) -> None:
        if isinstance(self.reference, nn.Module):
            self.twin = self.reference.eval()
        else:
            self.twin = ann_twin(self.model, self.reference)
        self._acts = activation_modules(self.twin, list(self.neurons))

    @torch.no_grad()
    def twin_activations(self, x: torch.Tensor) -> TwinActivations:
        """The twin's activations for the batch ``x [T, B, ...]``. The twin is built on first use (from the
        model's weights at that moment) and kept while the probe is attached."""
        if not self._handles:
            raise RuntimeError("the probe must be attached to run its twin")
        if self.twin is None:
            self._build_twin()
        return run_twin(self.twin, self._acts, x, self.twin_input, self._custom_reference)

    # ------------------------------------------------------------------ hooks
    def _on_input(self, module: nn.Module, args: tuple) -> None:
        if not args or not torch.is_tensor(args[0]) or args[0].dim() < 3:
            raise ValueError("the probed model must take a multi-step tensor [T, B, ...] as first argument")
        with torch.no_grad():
            x = args[0].detach()
            T, B = x.shape[:2]
            if self.structure is None:
                self.structure = model_structure(self.model, tuple(x.shape[2:]))
            if self._fused is None:  # decided once, from the model and the first batch's shape
                values = sum(self.structure.neuron_size.values()) + math.prod(x.shape[2:])
                self._fused = resolve_compile(self.compile, T * B * values, x.device.type)
            if self.T is None:
                self.T = T
            elif T != self.T:
                raise ValueError(f"all batches must have the same number of timesteps: got T={T} after "
                                 f"T={self.T} (call reset() between runs)")
            twin = self._given_twin if self._given_twin is not None else self.twin_activations(x)
            self.Tt = twin.output.shape[0]
            self._batch = {"twin": twin, "B": B, "device": x.device}
            self._count_input_ops(x)

    def _acc(self, store: dict, key: str, shape: tuple, device) -> torch.Tensor:
        if key not in store:
            store[key] = torch.zeros(shape, dtype=torch.float64, device=device)
        return store[key]

    def _count_input_ops(self, x: torch.Tensor) -> None:
        fan = self.structure.fanout.get(INPUT)
        if fan is None:
            return
        F, names = fan
        ops, binary = input_synops(x, F, self._fused)
        for j, name in enumerate(names):
            kind = "ac" if binary or weights_are_signs(self.model.get_submodule(name)) else "mac"
            self._acc(self._ops[kind], name, (x.shape[0],), x.device).add_(ops[:, j].to(x.device))

    def _on_neuron(self, name: str, module: IF, args: tuple, out: torch.Tensor) -> None:
        if self._batch is None:  # called outside a forward of the probed model
            return
        with torch.no_grad():
            self._neuron_stats(name, module, args[0].detach(), out.detach())

    def _neuron_stats(self, name: str, module: IF, x: torch.Tensor, out: torch.Tensor) -> None:
        twin: TwinActivations = self._batch["twin"]
        T, B = x.shape[:2]
        xf, of = x.reshape(T, B, -1), out.reshape(T, B, -1)
        N = xf.shape[2]
        dev, dtype = x.device, x.dtype
        theta_n = _flat_theta(module, x)  # [N]
        theta = theta_n if module.per_channel else module.threshold.detach().to(dtype).reshape(())
        Tt = twin.output.shape[0]
        Z = twin.Z[name].to(dtype).reshape(Tt, B, N)
        A = None if twin.A is None else twin.A[name].to(dtype).reshape(Tt, B, N)
        self._element_count[name] = N
        # isolated sums depend only on the twin's input and the neuron: runs sharing the twin share them
        iso = isolated_mode(module, Tt == 1, A is None) if self.isolate else ISO_OFF
        iso_key = None
        if iso:
            beta = module.beta
            beta_f = float(beta) if not torch.is_tensor(beta) else float(beta.detach())
            iso_key = (name, T, iso, type(module).__name__, module.v_init, module.reset, bool(module.signed),
                       module.state_bits, module.state_rounding, beta_f, dtype,
                       module.threshold.detach().cpu().numpy().tobytes())
            if iso_key in twin.isolated:
                iso = ISO_OFF
        F, synapses = self.structure.fanout.get(name, (None, []))
        sums = layer_sums(xf, of, Z, A, theta, theta_n, F, iso, module, tuple(x.shape), self._fused)
        self._acc(self._prop, name, (T, len(PROP_STATS)), dev).add_(complete_stats(sums.propagated, sums.reference))
        if iso:
            twin.isolated[iso_key] = complete_stats(sums.isolated, sums.reference)
        if iso_key is not None:
            self._acc(self._iso, name, (T, len(PROP_STATS)), dev).add_(twin.isolated[iso_key])
        for j, syn in enumerate(synapses):
            self._acc(self._ops["ac"], syn, (T,), dev).add_(sums.synops[:, j].to(dev))
        if module.state_bits is not None:
            tr = module.trace(x)
            noise = membrane_noise(x, tr.membrane, tr.spikes, module.broadcast_threshold(x).detach(), module.beta,
                                   module.v_init, module.reset)
            self._acc(self._mem, name, (T, 2), dev).add_(noise)
        if self._kept < self.keep_tensors:
            self._keep(name, module, x, out, twin, self.keep_tensors - self._kept)

    def _keep(self, name: str, module: IF, x: torch.Tensor, out: torch.Tensor, twin: TwinActivations,
              k: int) -> None:
        k = min(k, x.shape[1])
        store = self._tensors.setdefault(name, {"spikes": [], "membrane": [], "input": [], "rate": [],
                                                "twin_input": [], "ann": [], "threshold": []})
        tr = module.trace(x[:, :k])
        store["spikes"].append(tr.spikes.to(torch.int8).cpu())
        store["membrane"].append(tr.membrane.cpu())
        store["input"].append(x[:, :k].cpu())
        store["rate"].append(cumulative_mean(out[:, :k]).cpu())
        Z = twin.Z[name][:, :k]
        store["twin_input"].append(Z.cpu())
        ann = twin.A[name][:, :k] if twin.A is not None else torch.minimum(
            Z.clamp_min(0.0), module.broadcast_threshold(Z).detach().to(Z.dtype))
        store["ann"].append(ann.cpu())
        if not store["threshold"]:
            store["threshold"].append(module.threshold.detach().cpu())

    def _on_output(self, module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        if self._batch is None:
            return
        with torch.no_grad():
            twin: TwinActivations = self._batch["twin"]
            B, dev = self._batch["B"], self._batch["device"]
            T, Tt = self.T, twin.output.shape[0]
            pred = out.detach().cumsum(0).argmax(-1)  # [T, B]: prediction of a t-step run
            ann_pred = twin.output.argmax(-1)  # [Tt, B]
            idx = torch.clamp(torch.arange(T, device=dev), max=Tt - 1)
            if self._agree is None:
                self._agree = torch.zeros(T, dtype=torch.float64, device=dev)
                self._correct = torch.zeros(T, dtype=torch.float64, device=dev)
                self._ann_correct = torch.zeros(Tt, dtype=torch.float64, device=dev)
            self._agree.add_((pred == ann_pred[idx]).sum(1))
            y = self._labels
            if y is not None:
                y = y.to(dev).view(1, -1)
                self._correct.add_((pred == y).sum(1))
                self._ann_correct.add_((ann_pred == y).sum(1))
                self.labeled += B
            self.samples += B
            if self._kept < self.keep_tensors and self._tensors:
                self._kept = min(self.keep_tensors, self._kept + B)
            self._batch = None

    # ------------------------------------------------------------------ results
    @property
    def tensors(self) -> dict[str, dict[str, np.ndarray]]:
        """Full tensors of the first ``keep_tensors`` samples per neuron layer, as numpy arrays:
        ``spikes`` (int8 ``[T, k, ...]``, in {-1, 0, 1}), ``membrane`` (after charge, before reset),
        ``input`` (the neuron's input x), ``rate`` (r(t), the mean output over steps 1..t), ``twin_input``
        and ``ann`` (the twin's pre-activation Z and activation A, ``[Tt, k, ...]``) and ``threshold``."""
        out = {}
        for name, store in self._tensors.items():
            out[name] = {key: (torch.cat(vals, 1) if key != "threshold" else vals[0]).numpy()
                         for key, vals in store.items() if vals}
        return out

    def table(self, **config) -> pd.DataFrame:
        """The long-form table (`COLUMNS`) of everything recorded so far.

        ``config`` fills the config columns (``model``, ``dataset``, ``weight_bits``, ``state_bits``,
        ``timesteps``, ``rounding``, ``neuron``); missing ones are read off the model.
        """
        import pandas as pd

        if self.structure is None or self.samples == 0:
            raise ValueError("the probe has recorded nothing: run the model on at least one batch inside it")
        rows: list[tuple] = []

        def add(layer: str, t, metric: str, values, mode: str = "propagated") -> None:
            if np.ndim(values) == 0:
                rows.append((layer, int(t), metric, float(values), mode))
            else:
                for tt, val in zip(t, values, strict=True):
                    rows.append((layer, int(tt), metric, float(val), mode))

        T = self.T
        ts = np.arange(1, T + 1)
        n = self.samples
        for layer in self.structure.layers:
            if layer.neuron is not None:
                N = self._element_count.get(layer.neuron, self.structure.neuron_size[layer.neuron])
                for mode, store in (("propagated", self._prop), ("isolated", self._iso)):
                    if layer.neuron in store:
                        for metric, values in _rate_metrics(store[layer.neuron].cpu().numpy(), n * N).items():
                            add(layer.name, ts, metric, values, mode)
                if layer.neuron in self._mem:
                    mem = self._mem[layer.neuron].cpu().numpy().cumsum(0)
                    add(layer.name, ts, "membrane_sqnr_db",
                        [sqnr_from_norms(math.sqrt(a), math.sqrt(b)) for a, b in mem])
            for metric, value in self._weight_metrics(layer.synapses).items():
                add(layer.name, 0, metric, value)
            ac, mac = self._ops_of(layer.synapses)
            add(layer.name, ts, "synops", (ac + mac) / n)
            add(layer.name, ts, "synops_ac", ac / n)
            add(layer.name, ts, "synops_mac", mac / n)
        # run level
        all_syn = [s for layer in self.structure.layers for s in layer.synapses]
        ac, mac = self._ops_of(all_syn)
        agree = self._agree.cpu().numpy() / n
        if self.labeled:
            add(OUTPUT, ts, "accuracy", self._correct.cpu().numpy() / self.labeled)
            ann = self._ann_correct.cpu().numpy() / self.labeled
            if self.Tt == 1:
                add(OUTPUT, 0, "ann_accuracy", ann[0])
            else:
                add(OUTPUT, ts, "ann_accuracy", ann)
        add(OUTPUT, ts, "agreement", agree)
        add(OUTPUT, ts, "synops", (ac + mac) / n)
        add(OUTPUT, ts, "synops_ac", ac / n)
        add(OUTPUT, ts, "synops_mac", mac / n)
        add(OUTPUT, ts, "energy_pj", [energy_pj(m, a, self.e_mac, self.e_ac) for m, a in zip(mac / n, ac / n,
                                                                                               strict=True)])
        add(OUTPUT, 0, "ann_energy_pj", self._ann_energy())
        add(OUTPUT, 0, "memory_bits", self._memory())
        df = pd.DataFrame(rows, columns=["layer", "t", "metric", "value", "mode"])
        cfg = {"model": type(self.model).__name__, "dataset": "", "weight_bits": describe_weight_bits(self.model),
               "state_bits": describe_state_bits(self.model), "timesteps": T, "rounding": _rounding(self.model),
               "neuron": describe_neurons(self.model), **config}
        unknown = set(cfg) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown config column(s) {sorted(unknown)}; config columns are {COLUMNS[:7]}")
        for key in COLUMNS[:7]:
            df[key] = cfg[key]
        df = df[COLUMNS]
        return df.astype({"model": str, "dataset": str, "weight_bits": "int64", "state_bits": "int64",
                          "timesteps": "int64", "rounding": str, "neuron": str, "t": "int64", "value": "float64"})

    def _ops_of(self, synapses: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Cumulative (over steps 1..t) accumulates and MACs of these weight layers, summed over samples."""
        ac = np.zeros(self.T)
        mac = np.zeros(self.T)
        for s in synapses:
            if s in self._ops["ac"]:
                ac += self._ops["ac"][s].cpu().numpy()
            if s in self._ops["mac"]:
                mac += self._ops["mac"][s].cpu().numpy()
        return ac.cumsum(), mac.cumsum()

    def _weight_metrics(self, synapses: list[str]) -> dict[str, float]:
        mods = [self.model.get_submodule(s) for s in synapses]
        if not mods:
            return {}
        with torch.no_grad():
            sqnr = weight_sqnr_db([float_weight(m) for m in mods], [m.weight for m in mods])
        sizes = [m.weight.numel() for m in mods]
        bits = [weight_bits(m) for m in mods]
        mean_bits = bits[0] if len(set(bits)) == 1 else \
            sum(b * s for b, s in zip(bits, sizes, strict=True)) / sum(sizes)
        params = sum(m.weight.numel() + (m.bias.numel() if getattr(m, "bias", None) is not None else 0)
                     for m in mods)
        return {"weight_sqnr_db": sqnr, "weight_bits": mean_bits, "params": params,
                "macs": sum(self.structure.macs[s] for s in synapses)}

    def _ann_energy(self) -> float:
        """Energy of one ANN inference (one pass, dense): every MAC of the twin's weight layers (the
        SNN's layers with reference="quantized", float ones with reference="float")."""
        total = 0.0
        if isinstance(self.reference, nn.Module):
            mods = dict(self.reference.named_modules())
        else:
            mods = dict(self.model.named_modules()) if self.reference == "quantized" else {}
        for name, macs in self.structure.macs.items():
            mod = mods.get(name)
            sign = mod is not None and weights_are_signs(mod)
            total += energy_pj(0.0, macs, self.e_mac, self.e_ac) if sign else energy_pj(macs, 0.0, self.e_mac,
                                                                                         self.e_ac)
        return total

    def _memory(self) -> int:
        """`qnoise.metrics.memory_bits` of the model as probed (see there for what is counted)."""
        weights, other = [], 0
        for _, m in weight_layers(self.model):
            weights.append((m.weight.numel(), weight_bits(m)))
            if getattr(m, "bias", None) is not None:
                other += m.bias.numel()
        for m in self.model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                other += 2 * m.num_features
        states = []
        for name, neuron in self.neurons.items():
            other += neuron.threshold.numel() + (1 if isinstance(neuron, LIF) else 0)
            states.append((self.structure.neuron_size.get(name, 0), neuron.state_bits or 32))
        return memory_bits(weights, other, states)


def _rounding(model: nn.Module) -> str:
    for _, m in weight_layers(model):
        if parametrize.is_parametrized(m, "weight"):
            return str(getattr(m.parametrizations.weight[0], "rounding", "nearest"))
    return "nearest"


def _rate_metrics(sums: np.ndarray, count: int) -> dict[str, np.ndarray]:
    """Per-t metrics from the running sums ``[T, len(PROP_STATS)]`` over ``count`` elements per step."""
    g = {k: sums[:, i] for k, i in _IDX.items()}
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        out["sqnr_db"] = np.array([sqnr_from_norms(math.sqrt(a), math.sqrt(b))
                                   for a, b in zip(g["ref2"], g["total2"], strict=True)])
        out["mse"] = g["total2"] / count
        out["nmse"] = np.where(g["ref2"] > 0, g["total2"] / np.where(g["ref2"] > 0, g["ref2"], 1), np.nan)
        out["cosine"] = np.array([cosine_from_sums(c, a, b)
                                  for c, a, b in zip(g["cross"], g["ref2"], g["rate2"], strict=True)])
        for comp in ("quant", "seq", "prop", "total"):
            out[f"err_{comp}_mse"] = g[f"{comp}2"] / count
            out[f"err_{comp}_mean"] = g[comp] / count
        steps = np.arange(1, len(sums) + 1)
        out["firing_rate"] = np.array([firing_rate_from_counts(e, count, s)
                                       for e, s in zip(g["events"].cumsum(), steps, strict=True)])
    return out
