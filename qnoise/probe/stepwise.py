"""The probe in a step-major run (`qnoise.stepping`): each layer's sums accumulate step by step.

`StepMixin` is the part of `qnoise.probe.Probe` that takes one step ``[B, ...]`` per neuron hook. At the
first step the neuron's pre-hook opens the layer's stream (`_open_stream`): the CPU kernel's `AnnStream` or
`SnnStream` where the sums have a closed form and no whole tensor is asked for (an `AnnStream` then steps the
neuron itself, in the same pass, as the run's observer), else the steps are gathered into ``[T, B, ...]`` and
the layer-major sums run at the end, the same numbers. Against the float SNN, when the reference was not
given, the float SNN runs in lockstep with the model (`qnoise.probe.references.SnnLockstep`). The root's
forward hook closes every stream (`_close_streams`).
"""

from __future__ import annotations

import torch

from .. import stepmode, stepping
from ..neurons import IF
from .kernel import AnnStream, SnnStream, fused_cpu, kernel_failed, snn_thetas
from .references import AnnActivations, SameSnn, SnnActivations, SnnLockstep, SnnReference
from .terms import rate_rule


class StepMixin:
    """Step-major accumulation for `qnoise.probe.Probe` (module docstring); uses the probe's ``_batch``,
    ``_streams``, ``reference``, ``structure``, ``compare``, ``count``, ``neurons``, ``_fused``, ``_given``,
    ``_kept``, ``rec``, ``_neuron_stats`` and ``_add_sums``."""

    def _drop_batch(self) -> None:
        """Forget a batch (done, or abandoned by an exception): a lockstep reference's hooks go too."""
        if self._batch is not None and isinstance(self._batch["acts"], SnnLockstep):
            self._batch["acts"].close()
        self._batch = None
        self._streams = {}

    def _lockstep(self, x: torch.Tensor) -> bool:
        """Whether the float SNN runs in lockstep with this batch's forward: it will be step-major, the reference
        is the float SNN, is not the model itself (`SameSnn`) and was not given, and every layer's sums stream
        (the CPU kernel; no kept tensors, no quantized membrane: those gather whole tensors)."""
        return (isinstance(self.reference, SnnReference) and not self.reference.own_is_ref and self._given is None
                and self._fused and fused_cpu(x) and not kernel_failed("cpu") and self.count.keep_tensors == 0
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

    def _neuron_step(self, name: str, neuron: IF, t: int, x: torch.Tensor, out: torch.Tensor) -> None:
        """One step of a step-major run: the layer's stream (opened by the pre-hook) takes it."""
        if name not in self._streams:
            self._streams[name] = self._open_stream(name, neuron, x)
        kind, stream = self._streams[name]
        if kind == "ann":
            stream.step(x, out)
        elif kind == "spikes":
            stream.step(out)
        elif kind == "snn":
            acts = self._batch["acts"]
            if isinstance(acts, SnnLockstep):
                acts.advance(t)
                stream.step(out, acts.own[name], acts.ref[name])
            elif isinstance(acts, SameSnn):
                stream.step(out, out, out)
            else:
                stream.step(out, acts.out_own[name][t], acts.out_ref[name][t])
        else:  # gathered for the layer-major sums at the end
            stream[0][t], stream[1][t] = x, out

    def _open_stream(self, name: str, neuron: IF, x: torch.Tensor) -> tuple[str, object]:
        """How a layer's sums accumulate in a step-major run: step by step in the CPU kernel (``"ann"``,
        ``"snn"``; ``"spikes"`` without a reference) where the sums have a closed form and no full tensor is
        asked for; otherwise the steps are
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
            if streamable and isinstance(acts, (SnnActivations, SnnLockstep, SameSnn)):
                thetas = snn_thetas(neuron, self.reference.neurons[name], x.unsqueeze(0))
                return "snn", SnnStream(x, T, fan, self.compare.isolate, thetas)
            if streamable and acts is None:  # no reference: spikes and synaptic operations only
                from .cpu_kernel import SpikeSteps

                return "spikes", SpikeSteps(T, x[0].numel(), fan)
        except Exception as err:  # no numba, or it cannot compile here  # noqa: BLE001
            kernel_failed("cpu", err)
        return "gather", (x.new_empty(T, *x.shape), x.new_empty(T, *x.shape))

    def _close_streams(self) -> None:
        """The end of a step-major run: every layer's sums recorded."""
        for name, (kind, stream) in self._streams.items():
            neuron = self.neurons[name]
            if kind == "gather":
                self._neuron_stats(name, neuron, *stream)
            elif kind == "spikes":
                self._add_spikes(name, *stream.result())
                self.rec.elements[name] = self.structure.neuron_size[name]
            else:
                self._add_sums(name, stream.result())
                self.rec.elements[name] = self.structure.neuron_size[name]
        self._streams = {}

