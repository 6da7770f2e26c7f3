"""Which implementation computes a neuron layer's sums: the fused CPU kernel, or the torch functions.

`layer_sums` returns, for one neuron layer and batch, the per-step `SUMS` of `qnoise.probe.functional` in
propagated and isolated mode, the twin's sum of A^2, and the synaptic operations the layer's spikes
cause. Two implementations compute the same numbers:

- on the CPU, `qnoise.probe.cpu_kernel` (numba): one pass over the layer, all steps of a chunk of neurons
  with the running sums in cache; the isolated neuron runs inside it (closed form or its dynamics);
- anywhere, the torch functions of `qnoise.probe.functional` over all steps at once (in batch chunks of
  ``TORCH_CHUNK_ELEMENTS`` values), with the neuron's own forward for isolated mode: the reference the
  CPU kernel is tested against, and the path on a GPU, where ``torch.compile`` can fuse it.

``compile="auto"`` (`resolve_compile`) uses the fused kernels for a model whose batch is big enough to
repay compiling them (``T * B`` times the neurons of all layers and the input values, at least
``COMPILE_MIN_ELEMENTS``: numba compiles once per installation, about 35 s, then loads its kernels from its
on-disk cache in about a second, and ``make setup`` compiles them; ``torch.compile`` compiles in every
process), so small models start instantly. The `Probe` decides once, on its first batch: the choice depends
on the model and the batch shape alone, so a run gives the same numbers in any process. If compilation
fails the probe warns once and stays eager. ``QNOISE_COMPILE=0`` / ``1`` in the environment overrides
``"auto"``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch

from .functional import ISO_GIVEN, isolated_sums, propagated_sums, reference_sums, step_counts

TORCH_FUNCTIONS = {"propagated": propagated_sums, "isolated": isolated_sums}
COMPILE_MIN_ELEMENTS = {"cpu": 1 << 20, "torch": 1 << 22}
# values per batch chunk on the torch path: its temporaries stay in a CPU's cache, or bounded on a GPU
TORCH_CHUNK_ELEMENTS = {"cpu": 1 << 19, "other": 1 << 24}
_compiled: dict = {}
_failed: set = set()  # implementations whose compilation failed ("cpu", "torch")


@dataclass
class LayerSums:
    """One layer's sums for one batch, float64: ``propagated [T, 9]`` and ``isolated [T, 9]`` (None when not
    computed), named by `qnoise.probe.functional.SUMS`; ``reference [T]`` (the sum of A^2 over the twin's step
    for step t); ``synops [T, M]`` (accumulates the spikes of step t cause in each of the M
    weight layers they reach, summed over the batch)."""

    propagated: torch.Tensor
    isolated: torch.Tensor | None
    reference: torch.Tensor
    synops: torch.Tensor


def resolve_compile(compile: bool | str, elements: int, device_type: str = "cpu") -> bool:
    """Whether to use the fused kernels (module docstring) for a batch of ``elements`` values in all, on a
    device of type ``device_type``."""
    if compile not in (True, False, "auto"):
        raise ValueError(f"compile={compile!r}: expected True, False or 'auto'")
    if compile != "auto":
        return compile
    env = os.environ.get("QNOISE_COMPILE")
    if env is not None:
        return env not in ("0", "false", "False", "")
    return elements >= COMPILE_MIN_ELEMENTS["cpu" if device_type == "cpu" else "torch"]


def _warn_failed(impl: str, err: Exception) -> None:
    _failed.add(impl)
    warnings.warn(f"qnoise probe: the fused {impl} kernel failed to compile ({type(err).__name__}: "
                  f"{str(err)[:200]}); using the eager kernel", RuntimeWarning, stacklevel=3)


def _torch_function(kind: str, fused: bool):
    """`TORCH_FUNCTIONS[kind]`, through ``torch.compile`` when asked and it works."""
    fn = TORCH_FUNCTIONS[kind]
    if not fused or "torch" in _failed:
        return fn
    if kind not in _compiled:
        _compiled[kind] = torch.compile(fn, dynamic=True)

    def run(*args):
        try:
            return _compiled[kind](*args)
        except Exception as err:  # compilation problems vary by platform; eager always works
            _warn_failed("torch", err)
            return fn(*args)
    return run


def input_synops(x: torch.Tensor, fanout: torch.Tensor, fused: bool = False) -> tuple[torch.Tensor, bool]:
    """``(ops [T, M], binary)`` for the data ``x [T, B, ...]``: the weights its nonzero values reach per step
    (summed over the batch, float64), and whether every value is 0, +1 or -1 (binary events). ``fused``: by
    the CPU kernel where ``x`` is on the CPU."""
    T, B = x.shape[:2]
    if fused and x.device.type == "cpu" and "cpu" not in _failed:
        try:
            from .cpu_kernel import input_sums

            return input_sums(x, fanout)
        except Exception as err:  # no numba, or it cannot compile here
            _warn_failed("cpu", err)
    active = (x != 0).reshape(T, B, -1).sum(1, dtype=torch.float64)
    binary = bool(((x == 0) | (x.abs() == 1)).all())
    return active @ fanout.to(active), binary


def isolated_input(Z: torch.Tensor, T: int) -> torch.Tensor:
    """Per-step input whose running mean is the twin's pre-activation: Z (static twin, ``Z [1, ...]``) or
    ``t Z(t) - (t-1) Z(t-1)`` (cumulative twin, ``Z [T, ...]``)."""
    if Z.shape[0] == 1:
        return Z.expand(T, *Z.shape[1:])
    total = Z * step_counts(T, Z)
    return torch.cat([total[:1], total[1:] - total[:-1]])


def isolated_output(neuron, Z: torch.Tensor, shape: tuple) -> torch.Tensor:
    """The neuron's own output ``[T, B, N]`` on the twin's input (`isolated_input`), run at ``shape``, the
    shape of its real input ``[T, B, ...]``. Its ``forward`` is called directly: the probe's hooks on the
    neuron must not see this run."""
    T, B = shape[:2]
    with torch.no_grad():
        return neuron.forward(isolated_input(Z, T).reshape(shape)).detach().reshape(T, B, -1)


def layer_sums(x: torch.Tensor, out: torch.Tensor, Z: torch.Tensor, A: torch.Tensor | None,
               theta: torch.Tensor, theta_n: torch.Tensor, fanout: torch.Tensor | None, iso: int, neuron,
               shape: tuple, fused: bool = False) -> LayerSums:
    """The sums of one neuron layer (module docstring), tensors flattened to ``[T, B, N]``.

    Args:
        x, out: the neuron's input and output. Z, A: the twin's pre-activation and activation
            ``[Tt, B, N]`` (A None: ``clamp(Z, 0, theta)``).
        theta: the threshold, 0-d (one per layer) or ``[N]`` (per channel, one value per element);
            ``theta_n``: one value per element ``[N]`` either way.
        fanout: ``[N, M]`` weights of each of M weight layers a spike of each neuron reaches, or None.
        iso: isolated mode (`qnoise.probe.functional.isolated_mode`), 0 for none.
        neuron: the `qnoise.neurons.IF` / `LIF` module; ``shape``: the shape of its input ``[T, B, ...]``.
        fused: use a fused kernel (the CPU kernel on the CPU, ``torch.compile`` elsewhere).
    """
    if fused and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and "cpu" not in _failed:
        try:
            from .cpu_kernel import layer_sums as cpu_layer_sums

            leaky = not (isinstance(neuron.beta, float) and neuron.beta == 1.0)
            out_iso = isolated_output(neuron, Z, shape) if iso == ISO_GIVEN else None
            prop, isol, ref, ops = cpu_layer_sums(x, out, Z, A, theta_n, fanout, iso, out_iso,
                                                  float(neuron.beta) if leaky else 1.0, neuron.v_init == "half",
                                                  bool(neuron.signed), neuron.reset == "zero")
            return LayerSums(prop, isol if iso else None, ref, ops)
        except Exception as err:  # no numba, or it cannot compile here
            _warn_failed("cpu", err)
    out_iso = isolated_output(neuron, Z, shape) if iso else None
    return _torch_sums(x, out, Z, A, theta, fanout, out_iso, fused and x.device.type != "cpu")


def _torch_sums(x, out, Z, A, theta, fanout, out_iso, fused) -> LayerSums:
    """`layer_sums` by the torch functions, over chunks of the batch."""
    T, B, N = x.shape
    chunk = TORCH_CHUNK_ELEMENTS["cpu" if x.device.type == "cpu" else "other"]
    step = max(1, chunk // (T * N))
    propagated = _torch_function("propagated", fused)
    isolated = _torch_function("isolated", fused)
    prop, isol = 0, 0
    for b in range(0, B, step):
        sl = slice(b, b + step)
        A_b = None if A is None else A[:, sl]
        prop = prop + propagated(x[:, sl], out[:, sl], Z[:, sl], A_b, theta)
        if out_iso is not None:
            isol = isol + isolated(Z[:, sl], A_b, theta, out_iso[:, sl])
    ref = reference_sums(Z, A, theta)[torch.clamp(torch.arange(T, device=x.device), max=Z.shape[0] - 1)]
    spikes = (out != 0).sum(1, dtype=torch.float64)  # [T, N]: nonzero outputs, negative spikes included
    ops = spikes @ fanout.to(spikes) if fanout is not None else spikes.new_zeros(T, 0)
    return LayerSums(prop, isol if out_iso is not None else None, ref, ops)
