"""The probe: quantization noise of an SNN per layer and timestep, its decomposition, spikes and costs.

``analyze(model, data, ...)`` returns one long-form table (DESIGN.md, Results) with columns `COLUMNS`:
``model, dataset, weight_bits, state_bits, timesteps, rounding, neuron, reference, mode, layer, t, metric,
value``. ``reference`` says what the SNN is compared with (`qnoise.probe.references`): ``ann`` (the ANN twin
with float weights, default), ``ann-quantized`` (the twin with the SNN's quantized weights), ``source`` (the
quantized ANN a converted model came from), ``ann-given`` (an ANN the user passed) or ``snn`` (the same SNN
at full precision). ``mode`` is ``propagated`` (the SNN as it runs) or ``isolated`` (each layer fed the
reference's input through its own quantized weights: torch.ao's shadow comparison). ``layer`` is a neuron
layer's name, the readout's name, or ``"<output>"`` for run-level rows; ``t`` is the number of timesteps a
value is for (1..T: a run stopped after t steps), 0 where it does not depend on t.

Per neuron layer and t (both modes), with r the SNN rate and ref the reference's activation (the ANN's A, or
the float SNN's rate), terms k (`qnoise.probe.terms`): ``weight, prop, quant, seq`` against an ANN, ``own,
prop`` against the float SNN:

    sqnr_db, mse, nmse, cosine          of r(t) against ref (ref is the reference signal)
    err_k_mse, err_total_mse            mean square of each term, and of r - ref (mse == err_total_mse)
    err_k_mean, err_total_mean          signed means: the terms' add up to the total's
    err_k_contrib                       mean(e_k * e_total): each term's share of err_total_mse (they add up)
    firing_rate                         spikes per neuron per step over steps 1..t (|s|, so negative spikes of
                                        signed neurons count); sparsity = 1 - firing_rate
    membrane_sqnr_db                    (only with a quantized membrane) SQNR of the stored membrane against
                                        the value before quantization, over steps 1..t

A model with a neuron that has no ANN twin (`references.twin_unavailable`) gets no error rows against an
ANN; ``df.attrs["qnoise"]["note"]`` says why.

Per layer: ``weight_sqnr_db`` (quantized vs float weights), ``weight_bits``, ``params``, ``macs`` (dense MACs
per sample and step: the ANN's cost) and ``memory_bits`` at t = 0; per t ``synops`` = ``synops_ac`` +
``synops_mac`` (NeuroBench's effective synaptic operations per sample over steps 1..t: a spike reaching a
zero weight costs nothing) and ``energy_pj`` (`qnoise.probe.costs`: each operation priced at its operands'
bit widths, `qnoise.metrics.EnergyModel`).

Per run (``layer="<output>"``): per t ``accuracy`` (argmax of the readout summed over steps 1..t),
``agreement`` (share of samples where the SNN and the reference predict the same class), ``synops``,
``synops_ac``, ``synops_mac``, ``energy_pj``; ``ann_accuracy`` (the ANN reference's; per t with
``twin_input="cumulative"``) or ``float_snn_accuracy`` (the float SNN's, per t); ``source_accuracy`` (the
source ANN of a converted model, when it can be found); at t = 0 ``samples`` (the labeled samples every
accuracy row is a share of: its Wilson interval is `qnoise.accuracy.accuracy_interval`), ``ann_energy_pj``
(one dense pass of the reference ANN) and ``memory_bits`` (every stored quantity at its real width).
"""

from .analysis import analyze, configured
from .core import Probe
from .inputs import iter_batches
from .options import Compare, Count, Execution, Setting
from .references import AnnReference, SnnReference, ann_twin, float_snn, twin_unavailable
from .sensitivity import sensitivity
from .structure import INPUT, OUTPUT, model_structure
from .table import COLUMNS, MODES
from .terms import ANN_TERMS, SNN_TERMS, cumulative_mean, decompose_ann, decompose_snn

__all__ = ["ANN_TERMS", "COLUMNS", "INPUT", "MODES", "OUTPUT", "SNN_TERMS", "AnnReference", "Compare", "Count",
           "Execution", "Probe", "Setting", "SnnReference", "analyze", "ann_twin", "configured", "cumulative_mean",
           "decompose_ann", "decompose_snn", "float_snn", "iter_batches", "model_structure", "sensitivity",
           "twin_unavailable"]
