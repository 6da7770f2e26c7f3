"""`Probe`: forward hooks on a model's neurons that accumulate DESIGN.md's metrics over batches.

The probe is a manager in the NeuroBench manner: it registers hooks on the model (a pre-hook and a hook on
the root module, one hook per neuron), never flags inside layers, and removes them on exit, exception or
not. The model's outputs are the same with and without it (hooks only read).

Per neuron layer the hook receives the neuron's input ``x [T, B, ...]`` and output ``out [T, B, ...]``: the
SNN rate is ``r(t) = cumsum(out)/t`` and the mean input ``z(t) = cumsum(x)/t``. That ``z(t)`` equals
DESIGN.md's ``f_l^q(r_{l-1}(t))`` rests on one assumption: the synaptic op ``f_l`` between two neuron layers
is affine and stateless (conv/linear, batch norm in eval mode, bias, average pooling, flatten, residual
adds), so the mean of its outputs is its output on the mean input. Max pooling or a nonlinearity between
neurons would break it. ``tests/test_probe.py`` checks the identity against an explicit ``f_l(r_{l-1}(t))``.

The reference (`qnoise.probe.references`) runs in the root pre-hook, before the SNN, on the same batch.
Statistics are running sums (float64) per layer and timestep (`qnoise.probe.table.Recording`), so memory is
O(layers x T), never O(samples); ``keep_tensors=k`` also keeps full tensors of the first k samples.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import stepmode, stepping
from ..metrics import sqnr_from_norms, weight_sqnr_db
from ..neurons import IF, spiking_neurons
from ..quant import float_weight, weight_bits
from .costs import ann_energy_pj, membrane_energy_pj, memory_parts, snn_energy_pj, synapse_widths
from .describe import describe_neurons, describe_rounding, describe_state_bits, describe_weight_bits, neuron_rules
from .kernel import (
    AnnStream,
    LayerSums,
    SnnStream,
    ann_layer_sums,
    fused_cpu,
    input_synops,
    kernel_failed,
    resolve_compile,
    snn_layer_sums,
    snn_thetas,
    spike_synops,
)
from .options import ANN_REFERENCES, Compare, Count
from .references import AnnActivations, AnnReference, SnnActivations, SnnLockstep, SnnReference, twin_unavailable
from .structure import INPUT, OUTPUT, Structure, model_structure
from .sums import membrane_sums
from .table import MODES, Recording, Rows, error_metrics
from .terms import ANN_TERMS, SNN_TERMS, cumulative_mean, rate_rule


class Probe:
    """Context manager that records quantization noise, spikes and costs of ``model`` per layer and step.

    Args:
        model: an SNN built from qnoise neurons, ``[T, B, ...] -> [T, B, classes]``.
        compare: what to compare with (`qnoise.probe.options.Compare`); a reference ANN for ``"source"`` or
            ``"ann-given"`` is passed as ``ann``. The reference is built on entering the context, from the
            weights at that time.
        count: what to count (`qnoise.probe.options.Count`): the energy model, full tensors of k samples.
        compile: fused kernels (`qnoise.probe.kernel.resolve_compile`): True, False or ``"auto"``.
        ann: the ANN for ``compare.reference`` ``"source"`` or ``"ann-given"``.
        source: the quantized ANN a converted model came from, to report ``source_accuracy``.

    Use::

        with Probe(model) as probe:
            for x, y in batches:          # x [T, B, ...]
                probe.step(x, y)          # or model(x): without labels there is no accuracy
        df = probe.table()
    """

    def __init__(self, model: nn.Module, compare: Compare | None = None, count: Count | None = None,
                 compile: bool | str = "auto", ann: nn.Module | None = None, source: nn.Module | None = None) -> None:
        self.compare, self.count = compare or Compare(), count or Count()
        self.kind = self.compare.name
        if self.kind in ("source", "ann-given") and ann is None:
            raise ValueError(f"reference {self.kind!r} needs the ANN: Probe(..., ann=<module>) (qnoise.analyze "
                             f"loads it from the checkpoint)")
        self.neurons = dict(spiking_neurons(model))
        if not self.neurons:
            raise ValueError(f"{type(model).__name__} has no qnoise neurons (IF/LIF) to probe")
        resolve_compile(compile, 0)  # checks the value
        self.model, self.compile, self.ann, self.source = model, compile, ann, source
        self.note = ("no reference asked for (reference='none'): spikes, costs and accuracy only"
                     if self.kind == "none" else twin_unavailable(model) if self.kind != "snn" else None)
        self.reference: AnnReference | SnnReference | None = None
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
        """Build the reference and register the hooks (what entering the context does)."""
        if self._handles:
            raise RuntimeError("this Probe is already attached")
        if self.kind == "snn":
            self.reference = SnnReference(self.model)
        elif self.note is None:
            self.reference = AnnReference(self.model, self.kind, self.ann, self.compare.twin_input, self.source)
        try:
            self._handles.append(self.model.register_forward_pre_hook(self._on_input))
            self._handles.append(self.model.register_forward_hook(self._on_output))
            for name, neuron in self.neurons.items():
                self._handles.append(neuron.register_forward_pre_hook(stepping.step_aware(
                    lambda mod, args, name=name: self._before_neuron(name, mod, args))))
                self._handles.append(neuron.register_forward_hook(stepping.step_aware(
                    lambda mod, args, out, name=name: self._on_neuron(name, mod, args, out))))
        except BaseException:
            self.detach()
            raise

    def detach(self) -> None:
        """Remove every hook (what leaving the context does)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._drop_batch()

    def reset(self) -> None:
        """Forget all accumulated statistics."""
        self._fused: bool | None = None  # fused kernels or not: decided on the next batch
        self.T: int | None = None
        self.rec = Recording(SNN_TERMS if self.kind == "snn" else ANN_TERMS)
        self._kept = 0
        self._tensors: dict[str, dict[str, list[torch.Tensor]]] = {}
        self._batch: dict | None = None
        self._streams: dict[str, tuple[str, object]] = {}  # step-major runs: each layer's sums so far
        self._labels = None
        self._given = None

    # ------------------------------------------------------------------ driving
    @torch.no_grad()
    def step(self, x: torch.Tensor, y: torch.Tensor | None = None,
             reference: AnnActivations | SnnActivations | None = None) -> torch.Tensor:
        """Run the model on ``x [T, B, ...]`` with labels ``y [B]`` (for accuracy); returns its output.

        ``reference`` passes the reference's activations for this batch (`reference_activations`), as sweeps
        do to share them between configurations.
        """
        if not self._handles:
            raise RuntimeError("Probe.step needs the probe attached: use `with Probe(model) as probe:`")
        self._labels, self._given = y, reference
        try:
            return self.model(x)
        finally:
            self._labels = self._given = None

    @torch.no_grad()
    def reference_activations(self, x: torch.Tensor) -> AnnActivations | SnnActivations | None:
        """The part of the reference's view of ``x [T, B, ...]`` that does not depend on the SNN's
        configuration (the twin's activations, the float SNN's spikes), to share between runs; None when the
        model has no reference to compare with."""
        if not self._handles:
            raise RuntimeError("the probe must be attached to run its reference")
        return None if self.reference is None else self.reference.run(x)

    # ------------------------------------------------------------------ hooks
    def _on_input(self, module: nn.Module, args: tuple) -> None:
        if not args or not torch.is_tensor(args[0]) or args[0].dim() < 3:
            raise ValueError("the probed model must take a multi-step tensor [T, B, ...] as first argument")
        self._drop_batch()  # a batch an exception abandoned
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
            acts = None
            if self._lockstep(x):  # the float SNN steps alongside the model
                acts = SnnLockstep(self.reference, x)
            elif self.reference is not None:
                acts = self._given if self._given is not None else self.reference.run(x)
                acts = self.reference.complete(acts, x)
            self._batch = {"acts": acts, "B": B, "T": T, "device": x.device}
            self._streams = {}
            fan = self.structure.fanout.get(INPUT)
            if fan is not None:
                ops, binary = input_synops(x, fan[0], self._fused)
                widths = synapse_widths(self.model, self.structure)
                for j, name in enumerate(fan[1]):
                    kind = "ac" if binary or widths[name].signs else "mac"
                    self.rec.add(self.rec.ops[kind], name, ops[:, j])

    def _drop_batch(self) -> None:
        """Forget a batch (done, or abandoned by an exception): a lockstep reference's hooks go too."""
        if self._batch is not None and isinstance(self._batch["acts"], SnnLockstep):
            self._batch["acts"].close()
        self._batch = None
        self._streams = {}

    def _lockstep(self, x: torch.Tensor) -> bool:
        """Whether the float SNN runs in lockstep with this batch's forward: it will be step-major, the reference
        is the float SNN and was not given, and every layer's sums stream (the CPU kernel; no kept tensors, no
        quantized membrane: those gather whole tensors)."""
        return (isinstance(self.reference, SnnReference) and self._given is None and self._fused
                and fused_cpu(x) and not kernel_failed("cpu") and self.count.keep_tensors == 0
                and all(n.state_bits is None for n in self.neurons.values())
                and stepping.plan(self.model, x) == "step")

    def _before_neuron(self, name: str, module: IF, args: tuple) -> None:
        """A neuron's pre-hook: at the first step of a step-major run, open the layer's stream; one that can
        step the neuron itself (`qnoise.probe.kernel.AnnStream.neuron_step`) does so from then on, reading its
        input and output in the same pass (`qnoise.stepmode.Step.observers`)."""
        run = stepmode.current()
        if self._batch is None or run is None or run.fold or run.t != 0:
            return
        with torch.no_grad(), stepmode.paused():
            self._streams[name] = self._open_stream(name, module, args[0].detach())
        kind, stream = self._streams[name]
        if kind == "ann":
            run.observers[module] = stream.neuron_step

    def _on_neuron(self, name: str, module: IF, args: tuple, out: torch.Tensor) -> None:
        """A neuron's forward hook: ``[T, B, ...]`` in a layer-major or folded run, one step ``[B, ...]`` in a
        step-major one (`qnoise.stepping`); the reference and the sums then run outside the model's step."""
        if self._batch is None:  # called outside a forward of the probed model
            return
        run = stepmode.current()
        with torch.no_grad(), stepmode.paused():
            if run is None or run.fold:
                self._neuron_stats(name, module, args[0].detach(), out.detach())
            else:
                self._neuron_step(name, module, run.t, args[0].detach(), out.detach())

    def _neuron_step(self, name: str, neuron: IF, t: int, x: torch.Tensor, out: torch.Tensor) -> None:
        """One step of a step-major run: the layer's stream (opened by the pre-hook) takes it."""
        if name not in self._streams:
            self._streams[name] = self._open_stream(name, neuron, x)
        kind, stream = self._streams[name]
        if kind == "ann":
            stream.step(x, out)
        elif kind == "snn":
            acts = self._batch["acts"]
            if isinstance(acts, SnnLockstep):
                acts.advance(t)
                stream.step(out, acts.own[name], acts.ref[name])
            else:
                stream.step(out, acts.out_own[name][t], acts.out_ref[name][t])
        else:  # gathered for the layer-major sums at the end
            stream[0][t], stream[1][t] = x, out

    def _open_stream(self, name: str, neuron: IF, x: torch.Tensor) -> tuple[str, object]:
        """How a layer's sums accumulate in a step-major run: step by step in the CPU kernel (``"ann"``,
        ``"snn"``) where the sums have a closed form and no full tensor is asked for; otherwise the steps are
        gathered into ``[T, B, ...]`` and the layer-major sums run at the end (``"gather"``: the torch
        functions, neurons without closed form, quantized membranes, kept tensors), the same numbers."""
        acts, T = self._batch["acts"], self._batch["T"]
        fan = self.structure.fanout.get(name, (None, []))[0]
        streamable = (self._fused and fused_cpu(x) and not kernel_failed("cpu") and neuron.state_bits is None
                      and self._kept >= self.count.keep_tensors)
        try:
            if streamable and isinstance(acts, AnnActivations) and rate_rule(neuron) != "dynamics":
                return "ann", AnnStream(neuron, x.unsqueeze(0), T, acts.A[name], acts.z_hat[name],
                                        self.reference.activations[name], fan, self.compare.isolate,
                                        acts.A[name] if acts.z_hat[name] is acts.Z[name] else None)
            if streamable and isinstance(acts, (SnnActivations, SnnLockstep)):
                thetas = snn_thetas(neuron, self.reference.neurons[name], x.unsqueeze(0))
                return "snn", SnnStream(x, T, fan, self.compare.isolate, thetas)
        except Exception as err:  # no numba, or it cannot compile here  # noqa: BLE001
            kernel_failed("cpu", err)
        return "gather", (x.new_empty(T, *x.shape), x.new_empty(T, *x.shape))

    def _close_streams(self) -> None:
        """The end of a step-major run: every layer's sums recorded."""
        for name, (kind, stream) in self._streams.items():
            neuron = self.neurons[name]
            if kind == "gather":
                self._neuron_stats(name, neuron, *stream)
            else:
                self._add_sums(name, stream.result())
                self.rec.elements[name] = self.structure.neuron_size[name]
        self._streams = {}

    def _add_sums(self, name: str, sums: LayerSums) -> None:
        self.rec.add(self.rec.errors, (name, "propagated"), sums.propagated)
        if sums.isolated is not None:
            self.rec.add(self.rec.errors, (name, "isolated"), sums.isolated)
        self.rec.add(self.rec.ref2, name, sums.reference)
        for j, syn in enumerate(self.structure.fanout.get(name, (None, []))[1]):
            self.rec.add(self.rec.ops["ac"], syn, sums.synops[:, j])

    def _neuron_stats(self, name: str, neuron: IF, x: torch.Tensor, out: torch.Tensor) -> None:
        acts = self._batch["acts"]
        fan, synapses = self.structure.fanout.get(name, (None, []))
        isolate = self.compare.isolate
        if isinstance(acts, AnnActivations):
            dtype = x.dtype
            A = acts.A[name].to(dtype)
            sums = ann_layer_sums(neuron, x, out, A, acts.z_hat[name].to(dtype), self.reference.activations[name],
                                  fan, isolate, self._fused, A if acts.z_hat[name] is acts.Z[name] else None)
        elif isinstance(acts, SnnActivations):
            sums = snn_layer_sums(out, acts.out_own[name], acts.out_ref[name], fan, isolate, self._fused,
                                  snn_thetas(neuron, self.reference.neurons[name], x))
        else:  # no reference: spikes and costs only
            sums = None
            flat = out.reshape(out.shape[0], out.shape[1], -1)
            self.rec.add(self.rec.events, name, (flat != 0).sum((1, 2), dtype=torch.float64))
            ops = spike_synops(flat, fan)
        if sums is not None:
            self._add_sums(name, sums)
        else:
            for j, syn in enumerate(synapses):
                self.rec.add(self.rec.ops["ac"], syn, ops[:, j])
        self.rec.elements[name] = x[0, 0].numel()
        if neuron.state_bits is not None:
            tr = neuron.trace(x)
            self.rec.add(self.rec.membrane, name, membrane_sums(x, tr.membrane, tr.spikes,
                                                                neuron.broadcast_threshold(x).detach(), neuron))
        if self._kept < self.count.keep_tensors:
            self._keep(name, neuron, x, out, acts, self.count.keep_tensors - self._kept)

    def _keep(self, name: str, neuron: IF, x: torch.Tensor, out: torch.Tensor, acts, k: int) -> None:
        k = min(k, x.shape[1])
        store = self._tensors.setdefault(name, {})

        def keep(key: str, value: torch.Tensor) -> None:
            store.setdefault(key, []).append(value.detach().cpu())

        tr = neuron.trace(x[:, :k])
        keep("spikes", tr.spikes.to(torch.int8))
        keep("membrane", tr.membrane)
        keep("input", x[:, :k])
        keep("rate", cumulative_mean(out[:, :k]))
        if isinstance(acts, AnnActivations):
            keep("twin_input", acts.Z[name][:, :k])
            keep("ann", acts.A[name][:, :k])
            keep("z_hat", acts.z_hat[name][:, :k])
        elif isinstance(acts, SnnActivations):
            keep("reference_rate", cumulative_mean(acts.out_ref[name][:, :k]))
        if "threshold" not in store:
            store["threshold"] = [neuron.threshold.detach().cpu()]

    def _on_output(self, module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        if self._batch is None:
            return
        with torch.no_grad():
            self._close_streams()
            acts, B, dev = self._batch["acts"], self._batch["B"], self._batch["device"]
            if isinstance(acts, SnnLockstep):
                acts.close()
            T = self.T
            rec = self.rec
            pred = out.detach().cumsum(0).argmax(-1)  # [T, B]: prediction of a t-step run
            y = None if self._labels is None else self._labels.to(dev).view(1, -1)
            counts = rec.counts
            if acts is not None:
                # the float SNN's prediction after t steps, or the ANN's on its input (Tt = 1, or T cumulative)
                snn = isinstance(acts, (SnnActivations, SnnLockstep))
                ref_pred = (acts.output.cumsum(0) if snn else acts.output).argmax(-1)
                idx = torch.clamp(torch.arange(T, device=dev), max=ref_pred.shape[0] - 1)
                rec.add(counts, "agree", (pred == ref_pred[idx]).sum(1))
                if y is not None:
                    rec.add(counts, "ref_correct", (ref_pred == y).sum(1))
                    source = getattr(acts, "source_output", None)
                    if source is not None:  # the source ANN's answer on the whole sample
                        rec.add(counts, "source_correct", (source[-1].argmax(-1) == y[0]).sum().view(1))
            if y is not None:
                rec.add(counts, "correct", (pred == y).sum(1))
                rec.labeled += B
            rec.samples += B
            if self._kept < self.count.keep_tensors and self._tensors:
                self._kept = min(self.count.keep_tensors, self._kept + B)
            self._batch = None

    # ------------------------------------------------------------------ results
    @property
    def tensors(self) -> dict[str, dict[str, np.ndarray]]:
        """Full tensors of the first ``keep_tensors`` samples per neuron layer, as numpy arrays: ``spikes``
        (int8 ``[T, k, ...]``, in {-1, 0, 1}), ``membrane`` (after charge, before reset), ``input`` (the
        neuron's input x), ``rate`` (r(t), the mean output over steps 1..t), ``threshold``; against an ANN
        reference ``twin_input``, ``ann`` and ``z_hat`` (the twin's Z, A and z_hat, ``[Tt, k, ...]``), against
        the float SNN ``reference_rate`` (its r(t))."""
        return {name: {key: (torch.cat(vals, 1) if key != "threshold" else vals[0]).numpy()
                       for key, vals in store.items()} for name, store in self._tensors.items()}

    def sidecar(self) -> dict:
        """What the table's numbers were computed with (DESIGN.md: a number can be traced to its definition)."""
        doc = {"reference": self.kind, "twin_input": self.compare.twin_input if self.kind != "snn" else None,
               "isolate": self.compare.isolate, "terms": list(self.rec.terms), "neurons": neuron_rules(self.model),
               "energy": self.count.energy.as_dict(),
               "z_hat": None if not isinstance(self.reference, AnnReference) else
               ("the twin's own input (its weights are the SNN's)" if self.reference.same_weights else
                "the twin's activations through the SNN's quantized synaptic ops")}
        if self.note:
            doc["note"] = self.note
        return doc

    def table(self, **config) -> pd.DataFrame:
        """The long-form table (`qnoise.probe.table.COLUMNS`) of everything recorded so far.

        ``config`` fills the config columns (``model``, ``dataset``, ``weight_bits``, ``state_bits``,
        ``timesteps``, ``rounding``, ``neuron``); missing ones are read off the model. ``df.attrs["qnoise"]``
        holds `sidecar`.
        """
        rec = self.rec
        if self.structure is None or rec.samples == 0:
            raise ValueError("the probe has recorded nothing: run the model on at least one batch inside it")
        rows = Rows()
        T, n = self.T, rec.samples
        ts = np.arange(1, T + 1)
        widths = synapse_widths(self.model, self.structure)
        memory = memory_parts(self.model, self.structure, T)
        energy = self.count.energy
        total_energy = np.zeros(T)
        all_ac, all_mac = np.zeros(T), np.zeros(T)
        for layer in self.structure.layers:
            if layer.neuron is not None:
                N = rec.elements.get(layer.neuron, self.structure.neuron_size[layer.neuron])
                for mode in MODES:
                    if (layer.neuron, mode) in rec.errors:
                        metrics = error_metrics(rec.errors[(layer.neuron, mode)].cpu().numpy(),
                                                rec.ref2[layer.neuron].cpu().numpy(), n * N, rec.terms)
                        for metric, values in metrics.items():
                            rows.add(layer.name, ts, metric, values, mode)
                if layer.neuron in rec.events:  # no reference: the firing rate alone
                    events = rec.events[layer.neuron].cpu().numpy().cumsum()
                    rows.add(layer.name, ts, "firing_rate", events / (n * N * ts))
                if layer.neuron in rec.membrane:
                    mem = rec.membrane[layer.neuron].cpu().numpy().cumsum(0)
                    rows.add(layer.name, ts, "membrane_sqnr_db", [sqnr_from_norms(math.sqrt(a), math.sqrt(b))
                                                                  for a, b in mem])
            for metric, value in self._weight_metrics(layer.synapses).items():
                rows.add(layer.name, 0, metric, value)
            layer_energy = np.zeros(T)
            for s in layer.synapses:
                ac, mac = self._ops_of(s)
                all_ac += ac
                all_mac += mac
                layer_energy += snn_energy_pj(ac / n, mac / n, widths[s], energy)
            ac, mac = self._ops_of(*layer.synapses)
            rows.add(layer.name, ts, "synops", (ac + mac) / n)
            rows.add(layer.name, ts, "synops_ac", ac / n)
            rows.add(layer.name, ts, "synops_mac", mac / n)
            if layer.neuron is not None:
                neuron = self.neurons[layer.neuron]
                layer_energy += membrane_energy_pj(self.structure.neuron_size[layer.neuron], ts,
                                                   neuron.state_bits or 32, energy)
            rows.add(layer.name, ts, "energy_pj", layer_energy)
            rows.add(layer.name, 0, "memory_bits", sum(c * b for c, b in memory[layer.name]))
            total_energy += layer_energy
        self._run_rows(rows, ts, all_ac, all_mac, total_energy, memory)
        cfg = {"model": type(self.model).__name__, "dataset": "", "weight_bits": describe_weight_bits(self.model),
               "state_bits": describe_state_bits(self.model), "timesteps": T, "rounding": describe_rounding(self.model),
               "neuron": describe_neurons(self.model), "reference": self.kind, **config}
        df = rows.frame(cfg)
        df.attrs["qnoise"] = self.sidecar()
        return df

    def _run_rows(self, rows: Rows, ts, ac, mac, energy_t, memory) -> None:
        rec, n = self.rec, self.rec.samples
        counts = {k: v.cpu().numpy() for k, v in rec.counts.items()}
        if rec.labeled:
            rows.add(OUTPUT, ts, "accuracy", counts["correct"] / rec.labeled)
            if "ref_correct" in counts:
                ref = counts["ref_correct"] / rec.labeled
                name = "float_snn_accuracy" if self.kind == "snn" else "ann_accuracy"
                if len(ref) == 1:
                    rows.add(OUTPUT, 0, name, ref[0])
                else:
                    rows.add(OUTPUT, ts, name, ref)
            if "source_correct" in counts:
                rows.add(OUTPUT, 0, "source_accuracy", counts["source_correct"][0] / rec.labeled)
        if "agree" in counts:
            rows.add(OUTPUT, ts, "agreement", counts["agree"] / n)
        rows.add(OUTPUT, ts, "synops", (ac + mac) / n)
        rows.add(OUTPUT, ts, "synops_ac", ac / n)
        rows.add(OUTPUT, ts, "synops_mac", mac / n)
        rows.add(OUTPUT, ts, "energy_pj", energy_t)
        acts = self.reference.activations if isinstance(self.reference, AnnReference) else None
        ann = self.reference.ann if isinstance(self.reference, AnnReference) else None
        rows.add(OUTPUT, 0, "ann_energy_pj", ann_energy_pj(self.model, self.structure, self.kind if self.kind in
                                                           (*ANN_REFERENCES, "ann-given") else "ann", ann, acts,
                                                           self.count.energy))
        rows.add(OUTPUT, 0, "memory_bits", sum(c * b for parts in memory.values() for c, b in parts))

    def _ops_of(self, *synapses: str) -> tuple[np.ndarray, np.ndarray]:
        """Cumulative (over steps 1..t) accumulates and MACs of these weight layers, summed over samples."""
        ac, mac = np.zeros(self.T), np.zeros(self.T)
        for s in synapses:
            if s in self.rec.ops["ac"]:
                ac += self.rec.ops["ac"][s].cpu().numpy()
            if s in self.rec.ops["mac"]:
                mac += self.rec.ops["mac"][s].cpu().numpy()
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
