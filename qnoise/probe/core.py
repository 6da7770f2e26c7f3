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

import contextlib
import math

import numpy as np
import torch
from torch import nn

from .. import stepmode, stepping
from ..allocator import recycle_large_allocations
from ..labels import check_classes
from ..metrics import predicted_classes
from ..neurons import IF, spiking_neurons
from .costs import synapse_widths
from .describe import describe_neurons, describe_state_bits  # noqa: F401 - sensitivity imports them from here
from .kernel import (
    LayerSums,
    ann_layer_sums,
    input_synops,
    resolve_compile,
    snn_layer_sums,
    snn_thetas,
    spike_counts,
)
from .options import Compare, Count
from .references import (AnnActivations, AnnReference, SameSnn, SnnActivations, SnnLockstep, SnnReference,
                         twin_unavailable)
from .stepwise import StepMixin
from .structure import INPUT, Structure, model_structure
from .sums import membrane_sums
from .table import Recording, TableMixin
from .terms import ANN_TERMS, SNN_TERMS, cumulative_mean


def run_order(x: torch.Tensor):
    """The order a probed batch runs in: step-major on the CPU where `qnoise.stepping` would choose by itself
    (``"auto"``), so that a table never depends on T or on what ran before. Folding T into the batch (`plan`'s
    choice for small networks, once a network has run) makes each layer one matrix product of T x B rows, whose
    rounding depends on T: a sweep's T cells shared from its longest run differed from their own runs (2.6e-10 in
    the first layer's propagated error), and the first batch (run before the network was known to be small)
    from the later ones. A mode the caller set (`stepping.mode`, ``QNOISE_STEP_MAJOR``) is kept."""
    if stepping.current_mode() == "auto" and x.device.type in stepping.DEVICES:
        return stepping.mode("step")
    return contextlib.nullcontext()


class Probe(StepMixin, TableMixin):
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
        recycle_large_allocations()  # freed step tensors reused, not page-faulted in anew (qnoise.allocator)
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
            with run_order(x):
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
            if self._fused is None:  # decided once, from the model and the first batch's shape, not from T
                values = sum(self.structure.neuron_size.values()) + math.prod(x.shape[2:])
                self._fused = resolve_compile(self.compile, B * values, x.device.type)
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
                binary, other = input_synops(x, fan[0], self._fused)  # samples of binary events, the others
                widths = synapse_widths(self.model, self.structure)
                for j, name in enumerate(fan[1]):
                    if widths[name].signs:  # binary/ternary weights: every operation is an accumulate
                        self.rec.add(self.rec.ops["ac"], name, binary[:, j] + other[:, j])
                    else:
                        self.rec.add(self.rec.ops["ac"], name, binary[:, j])
                        self.rec.add(self.rec.ops["mac"], name, other[:, j])

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

    def _add_sums(self, name: str, sums: LayerSums) -> None:
        self.rec.add(self.rec.errors, (name, "propagated"), sums.propagated)
        if sums.isolated is not None:
            self.rec.add(self.rec.errors, (name, "isolated"), sums.isolated)
        self.rec.add(self.rec.ref2, name, sums.reference)
        for j, syn in enumerate(self.structure.fanout.get(name, (None, []))[1]):
            self.rec.add(self.rec.ops["ac"], syn, sums.synops[:, j])

    def _add_spikes(self, name: str, spikes: torch.Tensor, synops: torch.Tensor) -> None:
        """A layer's spikes per step ``[T]`` and the synaptic operations they cause ``[T, M]`` (no reference)."""
        self.rec.add(self.rec.events, name, spikes)
        for j, syn in enumerate(self.structure.fanout.get(name, (None, []))[1]):
            self.rec.add(self.rec.ops["ac"], syn, synops[:, j])

    def _neuron_stats(self, name: str, neuron: IF, x: torch.Tensor, out: torch.Tensor) -> None:
        acts = self._batch["acts"]
        fan = self.structure.fanout.get(name, (None, []))[0]
        isolate = self.compare.isolate
        if isinstance(acts, AnnActivations):
            dtype = x.dtype
            A = acts.A[name].to(dtype)
            sums = ann_layer_sums(neuron, x, out, A, acts.z_hat[name].to(dtype), self.reference.activations[name],
                                  fan, isolate, self._fused, A if acts.z_hat[name] is acts.Z[name] else None)
        elif isinstance(acts, (SnnActivations, SameSnn)):
            own, ref = (out, out) if isinstance(acts, SameSnn) else (acts.out_own[name], acts.out_ref[name])
            sums = snn_layer_sums(out, own, ref, fan, isolate, self._fused,
                                  snn_thetas(neuron, self.reference.neurons[name], x))
        else:  # no reference: spikes and costs only
            sums = None
            self._add_spikes(name, *spike_counts(out.reshape(out.shape[0], out.shape[1], -1), fan, self._fused))
        if sums is not None:
            self._add_sums(name, sums)
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
        elif isinstance(acts, (SnnActivations, SameSnn)):
            ref = out if isinstance(acts, SameSnn) else acts.out_ref[name]
            keep("reference_rate", cumulative_mean(ref[:, :k]))
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
            pred = predicted_classes(out.detach())  # [T, B]: prediction of a t-step run
            y = None if self._labels is None else self._labels.to(dev).view(1, -1)
            if y is not None:
                check_classes(y, out.shape[-1])
            counts = rec.counts
            if acts is not None:
                # the float SNN's prediction after t steps, or the ANN's on its input (Tt = 1, or T cumulative)
                if isinstance(acts, SameSnn):  # the model is its own float SNN
                    ref_pred = pred
                elif isinstance(acts, (SnnActivations, SnnLockstep)):
                    ref_pred = predicted_classes(acts.output)
                else:
                    ref_pred = acts.output.argmax(-1)
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
