"""The probe: quantization noise of an SNN per layer and timestep, its decomposition, spikes and costs.

``analyze(model, data, ...)`` returns one long-form table (DESIGN.md, Results) with columns
``model, dataset, weight_bits, state_bits, timesteps, rounding, neuron, layer, t, metric, value`` plus
``mode`` (``"propagated"``: the SNN as it runs; ``"isolated"``: each neuron layer fed the ANN twin's input).
``layer`` is a neuron layer's name, the readout's name, or ``"<output>"`` for run-level rows; ``t`` is the
number of timesteps the value is for (1..T: a run stopped after t steps), 0 where it does not depend on t.

Metrics per neuron layer and t (both modes), with r the SNN rate and A the twin's activation
(`qnoise.probe.functional`, `qnoise.metrics`):

    sqnr_db, mse, nmse, cosine          of r(t) against A (A is the reference)
    err_{quant,seq,prop,total}_mse      mean squared component of r - A (quantization, sequential,
                                        propagated, total); mse == err_total_mse
    err_{quant,seq,prop,total}_mean     signed mean; quant + seq + prop == total
    firing_rate                         spikes per neuron per step over steps 1..t (|s|, so negative
                                        spikes of signed neurons count); sparsity = 1 - firing_rate
    membrane_sqnr_db                    (only with a quantized membrane) SQNR of the stored membrane against
                                        the value before quantization, over steps 1..t

Per layer (t = 0 unless noted; the weight layers feeding the neuron, or the readout):
``weight_sqnr_db`` (quantized vs float weights, pooled over the layer's weight tensors), ``weight_bits``
(the width; a size-weighted mean if the layer's tensors differ), ``params`` (weights + biases), ``macs``
(dense MACs per sample and step: the ANN's cost), and per t ``synops`` = ``synops_ac`` + ``synops_mac``
(effective synaptic operations per sample over steps 1..t, NeuroBench-style; see `qnoise.probe.structure`).

Per run (``layer="<output>"``): per t ``accuracy`` (argmax of the readout averaged over steps 1..t),
``agreement`` (share of samples where SNN and ANN twin predict the same class), ``synops``, ``synops_ac``,
``synops_mac``, ``energy_pj`` (per sample: 4.6 pJ per MAC + 0.9 pJ per accumulate, overridable); at t = 0
``ann_accuracy`` (per t with ``twin_input="cumulative"``), ``ann_energy_pj`` (one dense ANN pass; binary/
ternary weights count as accumulates) and ``memory_bits`` (`qnoise.metrics.memory_bits`).

Synaptic-operation rules: an event of a neuron costs one accumulate per weight it reaches (a threshold it
carries, per layer or per channel, and its sign fold into those weights; average pooling folds into the
next weight layer). The data's nonzero values cost one MAC per weight reached, or one accumulate if the data
is binary ({0, +-1}) or the weights are binary/ternary.
"""

from .analysis import analyze, configured, iter_batches
from .core import COLUMNS, MODES, Probe
from .functional import clamp_activation, cumulative_mean, decompose
from .sensitivity import sensitivity
from .structure import INPUT, OUTPUT, model_structure
from .twin import TwinActivations, ann_twin

__all__ = ["COLUMNS", "INPUT", "MODES", "OUTPUT", "Probe", "TwinActivations", "analyze", "ann_twin",
           "clamp_activation", "configured", "cumulative_mean", "decompose", "iter_batches", "model_structure",
           "sensitivity"]
