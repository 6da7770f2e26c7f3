"""Error metrics, one definition each (torch.ao numeric-suite conventions; DESIGN.md, Noise).

For a reference ``x`` and an approximation ``y``::

    sqnr_db = 20 * log10(||x|| / ||x - y||)      (+inf when y == x; -inf when x == 0 != y)
    mse     = mean((x - y)^2)
    nmse    = ||x - y||^2 / ||x||^2
    cosine  = <x, y> / (||x|| ||y||)

Spikes and costs (DESIGN.md, Noise): `firing_rate` (spikes per neuron per step), NeuroBench effective synaptic
operations (`effective_ops`, `conv_fanout`), dense ANN MACs (`dense_macs`), the per-operation energies of
`EnergyModel` (bit-width dependent, 45 nm) and `memory_bits`. The ``*_from_*`` variants compute the same
definitions from running sums.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import warnings
from dataclasses import dataclass

import torch


def _pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape != y.shape:
        raise ValueError(f"reference and approximation differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    return x.detach().double().flatten(), y.detach().double().flatten()


def sqnr_db(x: torch.Tensor, y: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB: ``20 log10(||x|| / ||x - y||)``."""
    x, y = _pair(x, y)
    return sqnr_from_norms(float(x.norm()), float((x - y).norm()))


def sqnr_from_norms(signal_norm: float, noise_norm: float) -> float:
    """``20 log10(signal_norm / noise_norm)`` with the limits spelled out (+inf: no noise)."""
    if noise_norm == 0.0:
        return math.inf
    if signal_norm == 0.0:
        return -math.inf
    return 20.0 * math.log10(signal_norm / noise_norm)


def mse(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean squared error ``mean((x - y)^2)``."""
    x, y = _pair(x, y)
    return float(((x - y) ** 2).mean())


def nmse(x: torch.Tensor, y: torch.Tensor) -> float:
    """Normalised MSE ``||x - y||^2 / ||x||^2`` (nan when x == 0)."""
    x, y = _pair(x, y)
    den = float((x**2).sum())
    return float(((x - y) ** 2).sum()) / den if den else math.nan


def cosine(x: torch.Tensor, y: torch.Tensor) -> float:
    """Cosine similarity ``<x, y> / (||x|| ||y||)`` (nan when either is zero)."""
    x, y = _pair(x, y)
    den = float(x.norm() * y.norm())
    return float((x * y).sum()) / den if den else math.nan


def cosine_from_sums(xy: float, xx: float, yy: float) -> float:
    """`cosine` from running sums ``<x, y>``, ``||x||^2`` and ``||y||^2`` (nan when either norm is 0)."""
    den = math.sqrt(xx * yy)
    return xy / den if den else math.nan


def predicted_classes(out: torch.Tensor) -> torch.Tensor:
    """``[T, B]``: the class an SNN predicts for each sample after t = 1..T steps, the argmax over classes of
    its readout ``out [T, B, C]`` summed over steps 1..t in step order (``out.cumsum(0)``). Every accuracy in
    qnoise (the probe's per-t rows, evaluation, `qnoise.accuracy.predictions`) is taken from this one sum, so
    a readout tied up to float rounding is decided alike everywhere."""
    return out.cumsum(0).argmax(-1)


def predicted_class(out: torch.Tensor) -> torch.Tensor:
    """``[B]``: the class predicted after all T steps of ``out [T, B, C]`` (`predicted_classes` at t = T)."""
    return predicted_classes(out)[-1]


def wilson_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of an accuracy ``correct / total``: with ``p = correct/total`` and z the normal
    quantile of ``(1 + confidence)/2``, ``(p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)``.
    Unlike the normal approximation it stays inside [0, 1] and is sound at 0% and 100%."""
    if total <= 0:
        return (math.nan, math.nan)
    if not 0 <= correct <= total:
        raise ValueError(f"correct must lie in 0..total, got {correct} of {total}")
    z = statistics.NormalDist().inv_cdf((1 + confidence) / 2)
    p, n = correct / total, total
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo = 0.0 if correct == 0 else max(0.0, centre - half)  # exact at the edges (the formula gives 0 or 1
    hi = 1.0 if correct == total else min(1.0, centre + half)  # up to float rounding there)
    return (lo, hi)


# ------------------------------------------------------------------------------------------------ spikes

def firing_rate(spikes: torch.Tensor) -> float:
    """Spikes per neuron per timestep: ``mean(|s|)`` over a ``[T, B, ...]`` spike tensor.

    ``s`` in {0, 1}, or {-1, 0, 1} for signed neurons (a negative spike is an event too); an output that
    carries the threshold (``theta * s``) is counted by its sign, ``|sign(out)|``. Sparsity is ``1 - rate``.
    """
    return float(spikes.detach().sign().abs().double().mean())


def firing_rate_from_counts(events: float, neurons: int, steps: int) -> float:
    """`firing_rate` from a running count: ``events / (neurons * steps)`` (neurons summed over samples)."""
    den = neurons * steps
    return events / den if den else math.nan


# ------------------------------------------------------------------------------------------------ costs
# Synaptic operations follow NeuroBench: only inputs that are nonzero cost anything ("effective" ops), each
# one operation per weight it reaches (its fan-out). An operation is an accumulate (AC) when the input is a
# spike event (binary, signed, or a spike carrying its threshold: theta folds into the weights it reaches)
# or when the weight is binary/ternary (a sign flip, no multiply); it is a multiply-accumulate (MAC) when an
# analog or multi-level value (a data frame of event counts, a pixel) meets a multi-bit weight.

FLOAT_BITS = 32  # a width of 32 bits means a float32 value everywhere in qnoise (weights, membranes, data)


@dataclass(frozen=True)
class EnergyModel:
    """Energy per operation in pJ, 45 nm CMOS (Horowitz, "Computing's energy problem", ISSCC 2014, Fig. 1.1).

    Measured points: integer add 0.03 pJ (8 bit) and 0.1 pJ (32 bit); integer multiply 0.2 pJ (8 bit) and
    3.1 pJ (32 bit); float32 add 0.9 pJ and multiply 3.7 pJ; an 8 KB SRAM read of 64 bits 10 pJ. Integer
    widths between and beyond the two points follow the power law through them, ``E(b) = E_8 (b/8)^k`` with
    ``k = log(E_32/E_8) / log 4`` (0.87 for add, 1.98 for multiply: an adder grows with its width, a
    multiplier with its square). A width of 32 bits is a float32 operand (`FLOAT_BITS`).

    ``memory_access`` adds the cost of moving operands, in the manner of Lemaire et al. (ICONIP 2022): each
    synaptic operation reads its weight, each neuron reads and writes its membrane once per step, and an
    ANN reads each weight and input activation of a MAC; every bit moved costs ``sram_pj_per_bit``. Every
    constant can be overridden (``dataclasses.replace(EnergyModel(), float_add=...)``).
    """

    int_add_8: float = 0.03
    int_add_32: float = 0.1
    int_mult_8: float = 0.2
    int_mult_32: float = 3.1
    float_add: float = 0.9
    float_mult: float = 3.7
    sram_pj_per_bit: float = 10.0 / 64
    memory_access: bool = False

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name != "memory_access" and not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"EnergyModel.{f.name} must be a finite number >= 0 (pJ), got {v!r}")
        if not (0 < self.int_add_8 <= self.int_add_32 and 0 < self.int_mult_8 <= self.int_mult_32):
            raise ValueError("EnergyModel: the 8-bit integer costs must be > 0 and at most the 32-bit ones")

    @staticmethod
    def _power_law(e8: float, e32: float, bits: int) -> float:
        return e8 * (bits / 8.0) ** (math.log(e32 / e8) / math.log(4.0))

    def add_pj(self, bits: int) -> float:
        """One addition of ``bits``-bit integers (float32 at 32 bits)."""
        return self.float_add if bits >= FLOAT_BITS else self._power_law(self.int_add_8, self.int_add_32, bits)

    def mult_pj(self, bits: int) -> float:
        """One multiplication of ``bits``-bit integers (float32 at 32 bits)."""
        return self.float_mult if bits >= FLOAT_BITS else self._power_law(self.int_mult_8, self.int_mult_32, bits)

    def ac_pj(self, weight_bits: int, acc_bits: int) -> float:
        """An accumulate: a weight added to an accumulator (a membrane). Integer at the wider of the two when
        both are integers, else a float32 add."""
        return self.add_pj(max(weight_bits, acc_bits))

    def mac_pj(self, weight_bits: int, input_bits: int, acc_bits: int) -> float:
        """A multiply-accumulate: ``input * weight`` (integer at the wider operand when both are integers,
        else float32), then the accumulate (`ac_pj`)."""
        return self.mult_pj(max(weight_bits, input_bits)) + self.ac_pj(weight_bits, acc_bits)

    def bits_moved_pj(self, bits: float) -> float:
        """Moving ``bits`` bits to or from SRAM (0 unless ``memory_access``)."""
        return bits * self.sram_pj_per_bit if self.memory_access else 0.0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def effective_ops(inputs: torch.Tensor, fanout: torch.Tensor) -> float:
    """NeuroBench effective synaptic ops: ``sum_p [inputs(p) != 0] * fanout(p)``.

    ``inputs`` is ``[..., *shape]``: leading dims (time, batch) are summed; ``fanout`` has ``shape``: how
    many weights input position ``p`` reaches (C_out * k*k inside a stride-1 conv, fewer at a padded
    border; ``out_features`` for a linear layer).
    """
    active = (inputs.detach() != 0).to(torch.float64)
    lead = active.dim() - fanout.dim()
    if lead < 0 or tuple(active.shape[lead:]) != tuple(fanout.shape):
        raise ValueError(f"inputs {tuple(inputs.shape)} do not end with the fan-out shape {tuple(fanout.shape)}")
    return float((active.sum(tuple(range(lead))) * fanout.to(torch.float64)).sum()) if lead else \
        float((active * fanout.to(torch.float64)).sum())


def conv_fanout(conv: torch.nn.Module, input_hw: tuple[int, ...]) -> torch.Tensor:
    """Fan-out map ``[C_in, *input_hw]`` of a Conv{1,2,3}d: for each input position, the number of
    (output, weight) pairs it takes part in: ``(C_out / groups) * #(output positions whose window covers it)``,
    a border value read again through reflect, replicate or circular padding counted each time it is read.

    Counted as the gradient of the sum of the conv's outputs with every weight 1 (float64, no bias), so every
    padding the conv has ("same" with an even kernel pads one more on the far side; the padding modes) is the
    conv's own."""
    kind = torch.nn.utils.parametrize.type_before_parametrizations(conv)  # a quantized conv: its plain class
    probe = kind(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                       conv.dilation, conv.groups, bias=False, padding_mode=conv.padding_mode, dtype=torch.float64)
    with torch.no_grad():
        probe.weight.fill_(1.0)
    x = torch.zeros(1, conv.in_channels, *input_hw, dtype=torch.float64, requires_grad=True)
    with torch.enable_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using padding='same' with even kernel")  # torch's, on the copy
        probe(x).sum().backward()
    return x.grad[0].detach()


def dense_macs(module: torch.nn.Module, output_shape: tuple[int, ...]) -> int:
    """Dense multiply-accumulates of one Conv/Linear call producing ``output_shape`` (batch included):
    conv ``#outputs * (C_in / groups) * prod(kernel)``, linear ``#outputs * in_features`` — every
    input x weight product, zeros and padding included (what an ANN computes)."""
    outputs = math.prod(output_shape)
    if isinstance(module, torch.nn.Linear):
        return outputs * module.in_features
    if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
        return outputs * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    raise TypeError(f"dense_macs counts Conv/Linear layers, got {type(module).__name__}")


def memory_bits(parts) -> int:
    """Model memory in bits: ``sum(count * bits)`` over ``(count, bits)`` pairs, every stored quantity at its
    real width (`qnoise.probe.costs` lists them: weights, scales, biases, thresholds, membranes...)."""
    return int(sum(int(n) * int(b) for n, b in parts))


def weight_sqnr_db(float_weights: list[torch.Tensor], quantized_weights: list[torch.Tensor]) -> float:
    """`sqnr_db` of quantized vs float weights pooled over several tensors (the layers feeding one neuron):
    ``20 log10(sqrt(sum ||w||^2) / sqrt(sum ||w - q||^2))``."""
    if len(float_weights) != len(quantized_weights):
        raise ValueError("float and quantized weight lists differ in length")
    sig = sum(float(w.detach().double().pow(2).sum()) for w in float_weights)
    noise = sum(float((w.detach().double() - q.detach().double()).pow(2).sum())
                for w, q in zip(float_weights, quantized_weights, strict=True))
    return sqnr_from_norms(math.sqrt(sig), math.sqrt(noise))
