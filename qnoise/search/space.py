"""What a mixed-precision search chooses from: per-layer weight bits, per-layer membrane bits, the model's
threshold bits, the rounding and the timesteps T; and the moves between configurations.

A `Candidate` is one full configuration (every layer's bits); `SearchSpace` lists each axis's choices, highest
precision first (32 = float everywhere in qnoise). A *move* lowers one axis by one step (what a greedy search
takes); *neighbours* differ from a candidate in one axis by one step either way (what the local refinement
tries).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field

from torch import nn

from ..neurons import spiking_neurons
from ..quant import ROUNDINGS, weight_layers

FLOAT = 32
DEFAULT_WEIGHT_BITS = (32, 8, 4, 2)
DEFAULT_STATE_BITS = (32, 8, 6)


@dataclass(frozen=True)
class Candidate:
    """One configuration: ``weights`` and ``states`` are ``((layer, bits), ...)`` in the model's layer order;
    ``thresholds`` the model's threshold bits (32: float); ``timesteps`` T; ``rounding`` of the weights."""

    weights: tuple[tuple[str, int], ...]
    states: tuple[tuple[str, int], ...]
    timesteps: int
    thresholds: int = FLOAT
    rounding: str = "nearest"

    @property
    def key(self) -> str:
        """A stable text key (the cache's): the configuration as sorted JSON."""
        return json.dumps(self.as_dict(), sort_keys=True)

    def as_dict(self) -> dict:
        return {"weights": dict(self.weights), "states": dict(self.states), "timesteps": self.timesteps,
                "thresholds": self.thresholds, "rounding": self.rounding}

    @classmethod
    def from_dict(cls, doc: dict) -> Candidate:
        return cls(tuple(doc["weights"].items()), tuple(doc["states"].items()), int(doc["timesteps"]),
                   int(doc.get("thresholds", FLOAT)), str(doc.get("rounding", "nearest")))

    def spec(self, method: str = "uniform") -> dict:
        """The quantization spec (`qnoise.models.apply_quantization`) that realises this configuration."""
        weights = dict(self.weights)
        states = dict(self.states)
        spec: dict = {"weights": None, "membrane": None, "thresholds": None}
        if any(b != FLOAT for b in weights.values()):
            spec["weights"] = {"bits": 8, "method": method, "rounding": self.rounding, "per_layer": weights}
        if any(b != FLOAT for b in states.values()):
            spec["membrane"] = {"bits": 8, "per_layer": states}
        if self.thresholds != FLOAT:
            spec["thresholds"] = {"bits": self.thresholds}
        return spec

    def replace(self, axis: str, name: str | None, bits: int) -> Candidate:
        """This candidate with one axis changed (``axis``: weights, states, timesteps, thresholds)."""
        if axis in ("weights", "states"):
            items = tuple((n, bits if n == name else b) for n, b in getattr(self, axis))
            return Candidate(**{**self.__dict__, axis: items})
        return Candidate(**{**self.__dict__, axis: bits})

    def label(self) -> str:
        """A short readable name: weight bits per layer / membrane bits per layer, T."""
        def bits(items):
            return "-".join("f" if b == FLOAT else str(b) for _, b in items)
        th = "" if self.thresholds == FLOAT else f" th{self.thresholds}"
        return f"W[{bits(self.weights)}] V[{bits(self.states)}] T{self.timesteps}{th}"


def _choices(name: str, values, low: int, where: str) -> tuple[int, ...]:
    vals = tuple(sorted({int(v) for v in values}, reverse=True))
    if not vals:
        raise ValueError(f"{where} {name}: no choice given")
    bad = [v for v in vals if not low <= v <= FLOAT]
    if bad:
        raise ValueError(f"{where} {name}: bits {bad} out of range {low}..{FLOAT} (32 = float)")
    return vals


@dataclass(frozen=True)
class SearchSpace:
    """Each axis's choices, highest precision first: ``weights`` ``{layer: (bits, ...)}``, ``states``
    ``{neuron: (bits, ...)}``, ``timesteps``, ``thresholds`` (the model's shared threshold grid) and
    ``rounding`` (of every weight quantizer)."""

    weights: dict = field(default_factory=dict)
    states: dict = field(default_factory=dict)
    timesteps: tuple[int, ...] = ()
    thresholds: tuple[int, ...] = (FLOAT,)
    rounding: tuple[str, ...] = ("nearest",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", {n: _choices(n, v, 1, "weight bits of") for n, v in self.weights.items()})
        object.__setattr__(self, "states", {n: _choices(n, v, 2, "membrane bits of") for n, v in self.states.items()})
        object.__setattr__(self, "timesteps", tuple(sorted({int(t) for t in self.timesteps}, reverse=True)))
        object.__setattr__(self, "thresholds", _choices("thresholds", self.thresholds, 1, "threshold bits"))
        if not self.timesteps or min(self.timesteps) < 1:
            raise ValueError(f"timesteps must be a non-empty list of T >= 1, got {self.timesteps}")
        bad = [r for r in self.rounding if r not in ROUNDINGS]
        if bad or not self.rounding:
            raise ValueError(f"rounding must be some of {ROUNDINGS}, got {self.rounding}")

    @classmethod
    def for_model(cls, model: nn.Module, timesteps, weight_bits=DEFAULT_WEIGHT_BITS, state_bits=DEFAULT_STATE_BITS,
                  threshold_bits=(FLOAT,), rounding=("nearest",), fixed: dict | None = None) -> SearchSpace:
        """The same choices for every weight layer and every neuron of ``model``; ``fixed`` pins some layers
        (``{layer: bits}``, e.g. the readout at 8 bits)."""
        fixed = dict(fixed or {})
        layers = [name for name, _ in weight_layers(model)]
        neurons = [name for name, _ in spiking_neurons(model)]
        unknown = sorted(set(fixed) - set(layers) - set(neurons))
        if unknown:
            raise ValueError(f"fixed names {unknown} are neither weight layers {layers} nor neurons {neurons}")
        ts = [timesteps] if isinstance(timesteps, int) else list(timesteps)
        return cls({n: (fixed[n],) if n in fixed else tuple(weight_bits) for n in layers},
                   {n: (fixed[n],) if n in fixed else tuple(state_bits) for n in neurons},
                   tuple(ts), tuple(threshold_bits), tuple(rounding))

    def check(self, model: nn.Module) -> None:
        """Refuse a space whose layer names are not the model's."""
        layers = [name for name, _ in weight_layers(model)]
        neurons = [name for name, _ in spiking_neurons(model)]
        if list(self.weights) != layers or list(self.states) != neurons:
            raise ValueError(f"the search space names layers {list(self.weights)} and neurons {list(self.states)}; "
                             f"the model has {layers} and {neurons}")

    @property
    def size(self) -> int:
        """How many configurations the space holds."""
        return math.prod(len(v) for v in [*self.weights.values(), *self.states.values(), self.timesteps,
                                          self.thresholds, self.rounding])

    def top(self, rounding: str | None = None) -> Candidate:
        """The highest-precision configuration (every axis at its first choice)."""
        return Candidate(tuple((n, v[0]) for n, v in self.weights.items()),
                         tuple((n, v[0]) for n, v in self.states.items()), self.timesteps[0], self.thresholds[0],
                         rounding or self.rounding[0])

    def axes(self) -> list[tuple[str, str | None, tuple]]:
        """``(axis, name, choices)`` for every axis that has a choice to make."""
        out = [("weights", n, v) for n, v in self.weights.items()] + [("states", n, v) for n, v in self.states.items()]
        out += [("timesteps", None, self.timesteps), ("thresholds", None, self.thresholds)]
        return [a for a in out if len(a[2]) > 1]

    @staticmethod
    def _value(c: Candidate, axis: str, name: str | None) -> int:
        return dict(getattr(c, axis))[name] if axis in ("weights", "states") else getattr(c, axis)

    def moves(self, c: Candidate) -> list[tuple[str, str | None, Candidate]]:
        """``(axis, name, candidate)`` for every one-step lowering of one axis."""
        out = []
        for axis, name, choices in self.axes():
            i = choices.index(self._value(c, axis, name))
            if i + 1 < len(choices):
                out.append((axis, name, c.replace(axis, name, choices[i + 1])))
        return out

    def neighbours(self, c: Candidate) -> list[Candidate]:
        """Every candidate one step away on one axis (either way), and with another rounding."""
        out = []
        for axis, name, choices in self.axes():
            i = choices.index(self._value(c, axis, name))
            out += [c.replace(axis, name, choices[j]) for j in (i - 1, i + 1) if 0 <= j < len(choices)]
        out += [Candidate(**{**c.__dict__, "rounding": r}) for r in self.rounding if r != c.rounding]
        return out

    def enumerate(self) -> list[Candidate]:
        """Every configuration (for an exhaustive search)."""
        names_w, names_s = list(self.weights), list(self.states)
        out = []
        for combo in itertools.product(*self.weights.values(), *self.states.values(), self.timesteps,
                                       self.thresholds, self.rounding):
            w = combo[:len(names_w)]
            s = combo[len(names_w):len(names_w) + len(names_s)]
            T, th, r = combo[-3:]
            out.append(Candidate(tuple(zip(names_w, w, strict=True)), tuple(zip(names_s, s, strict=True)), T, th, r))
        return out

    def as_dict(self) -> dict:
        return {"weights": {k: list(v) for k, v in self.weights.items()},
                "states": {k: list(v) for k, v in self.states.items()}, "timesteps": list(self.timesteps),
                "thresholds": list(self.thresholds), "rounding": list(self.rounding)}
