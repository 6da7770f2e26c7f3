"""Checkpoints (safetensors + JSON, never pickle); results tables are `qnoise.table_files`, atomic writes
and strict JSON `qnoise.files`.

A checkpoint is a directory::

    model.safetensors   the model's state dict (quantization parametrizations included)
    config.json         {"format": "qnoise-checkpoint", "version": 1,
                         "model": <model.qnoise_config: architecture, neuron, quantization>,
                         "dataset": {...}, "timesteps": T, "training": {...}, "history": [...],
                         "metrics": {...}, "versions": {...},
                         "tensors": {"file": "model.safetensors", "sha256": ..., "shapes": {key: shape}}}

Every file is written to a temporary name and moved into place with ``os.replace``; ``config.json`` is
written last and records the SHA-256 of the tensors, so a checkpoint cut off mid-save is detected on load.

Loading trusts nothing in the folder: ``tensors.file`` must name a file inside the checkpoint folder; the
dataset record's loader options are an allow-list (`qnoise.data.check_data_options`); the model config is
checked against the safetensors header (keys, shapes, dtypes) on the meta device before the model is built;
no tensor is cast unless the cast is exact (float16 -> float32, ...); NaN/Inf values, thresholds or clip
levels <= 0 and negative BatchNorm variances are refused (``allow_nonfinite=True`` loads them anyway, with a
warning, for inspection). JSON is written strictly: a non-finite float becomes ``null``, never ``NaN``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from .files import atomic_write_bytes, atomic_write_json, check_parent, file_inside, package_versions, read_json

FORMAT = "qnoise-checkpoint"
VERSION = 1
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> str:
    """Save tensors as safetensors, atomically; returns the file's SHA-256.

    ``metadata`` (any JSON-able dict) is stored as one key-sorted JSON string under the header key
    ``"qnoise"`` (safetensors keeps several keys in no fixed order, which would make the bytes vary);
    `read_tensor_metadata` returns it.
    """
    meta = None if metadata is None else {"qnoise": json.dumps(metadata, sort_keys=True)}
    data = st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=meta)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def read_tensor_metadata(path: str | Path) -> dict:
    """The ``metadata`` dict given to `save_tensors` (empty when there is none)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta["qnoise"]) if "qnoise" in meta else {}


def _sha_mismatch(path: Path) -> ValueError:
    return ValueError(f"{path} does not match the SHA-256 recorded in {path.parent / CONFIG_FILE}: the "
                      f"checkpoint was modified or cut off while saving; save it again")


def check_sha256(path: str | Path, sha256: str | None) -> None:
    """Raise ``ValueError`` unless the file's SHA-256 is ``sha256`` (read in chunks; None: no check)."""
    if sha256 is None:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise _sha_mismatch(Path(path))


def load_tensors(path: str | Path, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Load a safetensors file (CPU); with ``sha256``, check the file is the one that was recorded."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    data = path.read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise _sha_mismatch(path)
    try:
        return st_load(data)
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err


# ---------------------------------------------------------------- checkpoints

def save_checkpoint(model: nn.Module, path: str | Path, *, dataset: dict | None = None,
                    timesteps: int | None = None, training: dict | None = None, history: list | None = None,
                    metrics: dict | None = None, extra: dict | None = None, input_shape=None) -> Path:
    """Save ``model`` to the checkpoint directory ``path``; returns ``path``.

    ``model`` is a `qnoise.models.Network`, a module graph (`qnoise.models.graph.GraphNet`, e.g. from
    `qnoise.interop`) or an ``nn.Sequential`` of qnoise modules (saved as a graph; give ``input_shape``). A graph's
    weights are saved at the values the model computes with (quantized values when it is quantized), with its
    module graph as JSON (``model.graph``: node specs and edges; no code).

    ``dataset``/``training``/``metrics``/``extra`` are JSON-able dicts stored as given; ``timesteps`` is
    the T the model is meant to run with.
    """
    config = getattr(model, "qnoise_config", None)
    if not isinstance(config, dict):
        from .models.graph import as_graph

        try:  # an nn.Sequential of qnoise modules is saved as a module graph
            model = as_graph(model, input_shape)
        except ValueError as err:
            raise ValueError(f"{type(model).__name__} has no qnoise_config and cannot be saved as a module graph: "
                             f"{err}") from err
        config = model.qnoise_config
    state = graph_state(model) if config.get("arch") == GRAPH_ARCH else model.state_dict()
    if config.get("arch") != GRAPH_ARCH:
        _check_rebuilds(model, config, state)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    sha = save_tensors(path / MODEL_FILE, state)
    doc = {"format": FORMAT, "version": VERSION, "model": config, "dataset": dataset, "timesteps": timesteps,
           "training": training, "history": list(history or []), "metrics": dict(metrics or {}),
           "versions": package_versions(), **(extra or {}),
           "tensors": {"file": MODEL_FILE, "sha256": sha,
                       "shapes": {k: list(v.shape) for k, v in state.items()}}}
    atomic_write_json(path / CONFIG_FILE, doc)
    return path


GRAPH_ARCH = "graph"


def _check_rebuilds(model: nn.Module, config: dict, state: dict[str, torch.Tensor]) -> None:
    """Refuse, before writing, a model its ``qnoise_config`` does not rebuild: e.g. weights quantized with
    `qnoise.quant.quantize_weights`, which the config does not record, so `load_checkpoint` refused the files."""
    from .models import build_model

    try:
        built = set(build_model(**config).state_dict())
    except (TypeError, ValueError, RuntimeError, KeyError) as err:
        raise ValueError(f"{type(model).__name__}'s qnoise_config does not describe a qnoise model: {err}") from err
    missing, extra = sorted(built - set(state)), sorted(set(state) - built)
    if missing or extra:
        first = (extra or missing)[0]
        raise ValueError(f"{type(model).__name__}'s qnoise_config does not rebuild it ({len(extra)} tensor(s) it "
                         f"does not describe, e.g. '{first}'; {len(missing)} it describes missing): quantize with "
                         f"qnoise.models.apply_quantization, which records the quantization in the config, so a "
                         f"checkpoint can rebuild the model")


def graph_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A graph model's state dict under plain names, each weight at the value the model computes with (a
    quantizer's output; the quantizer's own state is not kept)."""
    state = {}
    for key, value in model.state_dict().items():
        plain = _plain_key(key)
        if plain is None:
            continue
        if plain != key:
            owner, _, name = plain.rpartition(".")
            value = getattr(model.get_submodule(owner), name)
        state[plain] = value.detach()
    return state


def _shapes_of(model_config: dict):
    if isinstance(model_config, dict) and model_config.get("arch") == GRAPH_ARCH:
        from .models.graph import graph_state_shapes

        return graph_state_shapes(model_config)
    from .models import state_shapes

    return state_shapes(model_config)


def _build(model_config: dict) -> nn.Module:
    if isinstance(model_config, dict) and model_config.get("arch") == GRAPH_ARCH:
        from .models.graph import graph_from_config

        return graph_from_config(model_config)
    from .models import model_from_config

    return model_from_config(model_config)


def read_checkpoint_config(path: str | Path) -> dict:
    """The validated ``config.json`` of a checkpoint directory."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {path} is not a directory (expected {MODEL_FILE} + {CONFIG_FILE})")
    cfg_path = path / CONFIG_FILE
    doc = read_json(cfg_path)
    if doc.get("format") != FORMAT:
        raise ValueError(f"{cfg_path}: 'format' is {doc.get('format')!r}, expected {FORMAT!r}")
    if doc.get("version") != VERSION:
        raise ValueError(f"{cfg_path}: checkpoint version {doc.get('version')!r} is not supported "
                         f"(this qnoise reads version {VERSION})")
    for key in ("model", "tensors"):
        if not isinstance(doc.get(key), dict):
            raise ValueError(f"{cfg_path}: missing or invalid '{key}' section")
    _check_record(cfg_path, doc)
    return doc


INPUT_MODES = ("sequence", "static")
# dataset-record keys that would decide where data is read, fetched or cached: never taken from a file
_CALLER_ONLY = ("root", "data_root", "download", "cache_dir")


def _check_record(cfg_path: Path, doc: dict) -> None:
    """Validate what loading and feeding act on: ``timesteps`` and the ``dataset`` record (its loader options
    are an allow-list, `qnoise.data.check_data_options`)."""
    from .data import RECORDABLE_OPTIONS, check_data_options
    from .limits import check_timesteps

    if doc.get("timesteps") is not None:
        check_timesteps(doc["timesteps"], f"{cfg_path}: timesteps")
    record = doc.get("dataset")
    if record is None:
        return
    if not isinstance(record, dict):
        raise ValueError(f"{cfg_path}: 'dataset' must be an object (name, timesteps, options, ...), got "
                         f"{record!r:.100}")
    for key in _CALLER_ONLY:
        if key in record:
            raise ValueError(f"{cfg_path}: dataset.{key} is not allowed in a checkpoint (where data is read, "
                             f"downloaded or cached is the caller's choice, e.g. --data-root)")
    if record.get("name") is not None and not isinstance(record["name"], str):
        raise ValueError(f"{cfg_path}: dataset.name must be a string, got {record['name']!r:.100}")
    if record.get("timesteps") is not None:
        check_timesteps(record["timesteps"], f"{cfg_path}: dataset.timesteps")
    if record.get("input_mode") is not None and record["input_mode"] not in INPUT_MODES:
        raise ValueError(f"{cfg_path}: dataset.input_mode {record['input_mode']!r} is not one of {INPUT_MODES}")
    check_data_options(record.get("options"), f"{cfg_path}: dataset.options")
    check_data_options({k: v for k, v in record.items() if k in RECORDABLE_OPTIONS}, f"{cfg_path}: dataset")


_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}
# casts that keep every value exactly: (saved dtype, dtype the model holds)
_EXACT_CASTS = {(torch.float16, torch.float32), (torch.bfloat16, torch.float32), (torch.float16, torch.float64),
                (torch.bfloat16, torch.float64), (torch.float32, torch.float64)}


def tensor_header(file: str | Path) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """``{key: (shape, dtype)}`` of a safetensors file, read from its header only (no tensor data)."""
    from safetensors import safe_open

    file = Path(file)
    out = {}
    try:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                view = f.get_slice(key)
                out[key] = (tuple(view.get_shape()), view.get_dtype())
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"{file} is not a readable safetensors file: {err}") from err
    for key, (shape, dtype) in out.items():
        if dtype not in _DTYPES:
            raise ValueError(f"{file}: tensor '{key}' has dtype {dtype}, which qnoise models do not hold")
        out[key] = (shape, _DTYPES[dtype])
    return out


def _plain_key(key: str) -> str | None:
    """``fc1.parametrizations.weight.original`` -> ``fc1.weight``; a quantizer's own state -> None."""
    m = re.fullmatch(r"(.*)\.parametrizations\.([^.]+)\.original", key)
    if m:
        return f"{m[1]}.{m[2]}"
    return None if ".parametrizations." in key else key


def _dtype_problem(key: str, file: Path, saved: torch.dtype, wanted: torch.dtype) -> str | None:
    if saved == wanted or (saved, wanted) in _EXACT_CASTS:
        return None
    return (f"key '{key}' is {str(saved).removeprefix('torch.')} in {file.name} but the model holds "
            f"{str(wanted).removeprefix('torch.')}: qnoise does not cast it (values would change silently)")


def _raise_problems(file: Path, problems: list[str], what: str = "does not match its config") -> None:
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise ValueError(f"checkpoint {file.parent} {what}:\n  " + "\n  ".join(shown))


def check_header(cfg_path: Path, model_config: dict, file: Path) -> dict:
    """Compare the model ``model_config`` would build (its state dict without quantization, on the meta device:
    no memory) with the tensor file's header, before anything is allocated: every key, shape and dtype must
    agree, so a small config cannot ask for a model larger than its tensor file. Returns the header."""
    header = tensor_header(file)
    try:
        expected = _shapes_of(model_config)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{cfg_path}: 'model' does not describe a qnoise model: {err}") from err
    saved = {}
    for key, value in header.items():
        plain = _plain_key(key)
        if plain is not None:
            saved[plain] = (key, *value)
    problems = [f"key '{k}' is missing from {file.name} (config.json builds it, shape {expected[k][0]})"
                for k in sorted(set(expected) - set(saved))]
    problems += [f"key '{saved[k][0]}' in {file.name} (shape {saved[k][1]}) is not part of the model config.json "
                 f"builds" for k in sorted(set(saved) - set(expected))]
    for k in sorted(set(saved) & set(expected)):
        key, shape, dtype = saved[k]
        if shape != expected[k][0]:
            problems.append(f"key '{key}' has shape {shape} in {file.name} but config.json builds {expected[k][0]}")
        elif (p := _dtype_problem(key, file, dtype, expected[k][1])) is not None:
            problems.append(p)
    _raise_problems(file, problems)
    return header


def value_problems(model: nn.Module, tensors: dict[str, torch.Tensor]) -> list[str]:
    """Values that make a model compute wrong numbers without an error: NaN/Inf anywhere, thresholds and
    clip levels <= 0 (silently floored to 1e-3 / 1e-4 when run), negative BatchNorm variances."""
    from .neurons import IF
    from .quant import LearnableClip

    problems = []
    for key, t in tensors.items():
        if t.is_floating_point():
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                problems.append(f"tensor '{key}' holds {bad} non-finite value(s) (NaN or Inf) of {t.numel()}")
    checks = {IF: ("raw_threshold", "threshold"), LearnableClip: ("alpha", "clip level alpha")}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and f"{prefix}running_var" in tensors:
            t = tensors[f"{prefix}running_var"]
            if bad := int((t < 0).sum()):
                problems.append(f"tensor '{prefix}running_var' holds {bad} negative variance(s) of {t.numel()}")
        for kind, (attr, what) in checks.items():
            if not isinstance(module, kind):
                continue
            key = next((k for k in (f"{prefix}{attr}", f"{prefix}parametrizations.{attr}.original")
                        if k in tensors), None)
            if key is not None and (bad := int((tensors[key] <= 0).sum())):
                problems.append(f"{what} '{key}' holds {bad} value(s) <= 0 of {tensors[key].numel()} (it must be "
                                f"> 0)")
    return problems


def _check_tensors(file: Path, tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Compare saved tensors with the state dict the config builds; raise naming every difference."""
    problems = []
    for key in sorted(set(expected) - set(tensors)):
        problems.append(f"key '{key}' is missing from {file.name} (config.json builds it, shape "
                        f"{tuple(expected[key].shape)})")
    for key in sorted(set(tensors) - set(expected)):
        problems.append(f"key '{key}' in {file.name} (shape {tuple(tensors[key].shape)}) is not part of the "
                        f"model config.json builds")
    for key in sorted(set(tensors) & set(expected)):
        if tensors[key].shape != expected[key].shape:
            problems.append(f"key '{key}' has shape {tuple(tensors[key].shape)} in {file.name} but config.json "
                            f"builds {tuple(expected[key].shape)}")
        elif (p := _dtype_problem(key, file, tensors[key].dtype, expected[key].dtype)) is not None:
            problems.append(p)
    _raise_problems(file, problems)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", *,
                    allow_nonfinite: bool = False) -> nn.Module:
    """Rebuild the model of a checkpoint directory and load its tensors; returns it in eval mode.

    The full ``config.json`` is attached as ``model.qnoise_checkpoint``. Raises ``ValueError`` naming the
    file and key of any mismatch between the config and the tensors (checked against the file's header
    before the model is built), of a tensor whose dtype would need an inexact cast, and of values that give
    wrong results silently (`value_problems`: NaN/Inf, thresholds <= 0, ...). ``allow_nonfinite=True`` loads
    such values anyway, with a warning, for inspection. Only files inside ``path`` are read.
    """
    from .device import resolve_device

    path = Path(path)
    doc = read_checkpoint_config(path)
    cfg_path = path / CONFIG_FILE
    file = file_inside(path, doc["tensors"].get("file", MODEL_FILE), f"{cfg_path}: tensors.file")
    sha = doc["tensors"].get("sha256")
    check_sha256(file, sha)  # first: a file cut off while saving gets that message, not a header error
    check_header(cfg_path, doc["model"], file)
    try:
        model = _build(doc["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{cfg_path}: 'model' does not describe a qnoise model: {err}") from err
    load_checked(model, file, sha, allow_nonfinite, "pass allow_nonfinite=True (--allow-nonfinite) to load it "
                                                     "anyway, for inspection")
    model.qnoise_checkpoint = doc
    return model.to(resolve_device(device)).eval()


def load_checked(model: nn.Module, file: Path, sha: str | None, allow_nonfinite: bool = False,
                 remedy: str = "") -> None:
    """Load the safetensors ``file`` into ``model`` after the checks `load_checkpoint` makes: its SHA-256, every
    key and shape of ``model``'s state (`_check_tensors`, naming the file and key), a dtype that casts exactly,
    and values that would give wrong results silently (`value_problems`; ``allow_nonfinite`` loads them with a
    warning). ``remedy`` ends the message of a refusal."""
    tensors = load_tensors(file, sha)
    expected = model.state_dict()
    _check_tensors(file, tensors, expected)
    problems = value_problems(model, tensors)
    if problems and not allow_nonfinite:
        _raise_problems(file, problems + ([remedy] if remedy else []),
                        "holds values that would give wrong results silently")
    if problems:
        warnings.warn(f"{file} loaded with allow_nonfinite=True: " + "; ".join(problems), stacklevel=3)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})


# ---------------------------------------------------------------- outputs, checked before the work

def check_output_folder(path: str | Path, flag: str = "--out", source: str | Path | None = None) -> Path:
    """Refuse, before any work, a checkpoint output that saving would fail on or that would overwrite
    something else: an existing file, a folder holding other files (and no qnoise checkpoint), a folder whose
    ``config.json`` is not a qnoise checkpoint, an unwritable place, or the ``source`` checkpoint itself.
    A folder holding a qnoise checkpoint (or a training run's ``last/``) is accepted: it is replaced or resumed.
    """
    path = Path(path)
    if source is not None and path.exists() and path.resolve() == Path(source).resolve():
        raise ValueError(f"{flag} {path} is the checkpoint being read; choose another folder")
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is an existing file; a checkpoint is a folder: choose a new folder name")
    if path.is_dir():
        for name in (MODEL_FILE, CONFIG_FILE):
            if (path / name).exists() and not (path / name).is_file():
                raise ValueError(f"{flag} {path}: {path / name} exists and is not a file")
        if (path / CONFIG_FILE).is_file():
            try:
                doc = json.loads((path / CONFIG_FILE).read_text())
            except (OSError, UnicodeDecodeError, ValueError):
                doc = None
            if not (isinstance(doc, dict) and doc.get("format") == FORMAT):
                raise ValueError(f"{flag} {path} holds a {CONFIG_FILE} that is not a qnoise checkpoint; choose a new "
                                 f"or empty folder")
        else:
            others = sorted(p.name for p in path.iterdir()
                            if p.name not in (MODEL_FILE, "last") and not p.name.startswith("."))
            if others:
                shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
                raise ValueError(f"{flag} {path} is a folder holding other files ({shown}) and no qnoise "
                                 f"checkpoint; choose a new or empty folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"{flag} {path} is not writable")
        return path
    check_parent(path, flag)
    return path
