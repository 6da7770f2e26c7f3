"""Where the dashboard's data comes from: a folder holding checkpoints (``model.safetensors`` +
``config.json``), results tables (parquet, or a sweep run folder with a manifest) and, for the sample,
an evaluation batch and an index JSON. `state` wraps these in caches.

Everything is read through qnoise (`qnoise.io`); nothing is ever unpickled. The dashboard opens only the
sample folder, the folders named when it was started (``qnoise dashboard --data DIR``, passed on in
``$QNOISE_DASHBOARD_DATA``) and the session's own uploads (`allowed_roots`); anything else gets one message,
whether it exists or not. An upload lives in a temporary folder that is deleted when its browser session
ends (or the server stops).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SAMPLE_ENV = "QNOISE_SAMPLE_DIR"
DATA_ENV = "QNOISE_DASHBOARD_DATA"  # os.pathsep-separated folders that `qnoise dashboard --data` allows
RESULT_COLUMNS = ("weight_bits", "timesteps", "layer", "t", "metric", "value")
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
UPLOAD_NAMES = ("model.safetensors", "config.json")
_SKIP_DIRS = {".git", "__pycache__", ".venv", "node_modules", ".cache"}
# tensor names an evaluation batch holds (the same lists `state.eval_data` reads)
BATCH_INPUTS = ("x", "X", "inputs", "input", "data")
BATCH_LABELS = ("y", "labels", "label", "targets", "target")
STAMP_FILES = 10000  # a change marker looks at no more entries than this


def default_dir() -> Path:
    """The folder the dashboard opens on: ``$QNOISE_SAMPLE_DIR``, else the repository's ``sample_data/``."""
    env = os.environ.get(SAMPLE_ENV)
    return Path(env).expanduser() if env else REPO / "sample_data"


# ---------------------------------------------------------------- which folders may be opened

def allowed_roots() -> list[Path]:
    """The folders this dashboard may open: the sample folder, ``$QNOISE_DASHBOARD_DATA``'s folders and the
    current session's uploads (symlinks resolved)."""
    roots = [default_dir()]
    roots += [Path(p).expanduser() for p in os.environ.get(DATA_ENV, "").split(os.pathsep) if p.strip()]
    roots += session_uploads()
    out = []
    for r in roots:
        try:
            out.append(r.resolve())
        except (OSError, RuntimeError):
            continue
    return out


def is_allowed(path: str | Path) -> bool:
    """Whether ``path`` (symlinks and ``..`` resolved) lies inside one of `allowed_roots`."""
    try:
        p = Path(path).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    return any(p.is_relative_to(root) for root in allowed_roots())


def confine(path: str | Path) -> Path:
    """``path`` when `is_allowed`; otherwise ``ValueError``, with the same message whether it exists or not."""
    if not is_allowed(path):
        raise ValueError(f"{path} is outside the folders this dashboard may open (the sample folder, folders given "
                         f"with `qnoise dashboard --data DIR`, and this session's uploads)")
    return Path(path).expanduser()


@dataclass
class Catalog:
    """What a folder holds. Labels are paths relative to ``root`` ("." for the root itself)."""

    root: Path
    checkpoints: dict[str, Path] = field(default_factory=dict)
    results: dict[str, Path] = field(default_factory=dict)
    searches: dict[str, Path] = field(default_factory=dict)  # mixed-precision search tables (`qnoise search`)
    eval_batches: dict[str, Path] = field(default_factory=dict)
    index: dict = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.checkpoints or self.results or self.searches)


def is_checkpoint(path: Path) -> bool:
    cfg = path / "config.json"
    if not (cfg.is_file() and any(path.glob("*.safetensors"))):
        return False
    try:
        return json.loads(cfg.read_text()).get("format") == "qnoise-checkpoint"
    except (OSError, ValueError, AttributeError):
        return False


def _kind(path: Path) -> str:
    try:
        return str((json.loads((path / "config.json").read_text()).get("model") or {}).get("kind", "snn"))
    except (OSError, ValueError, AttributeError):
        return "snn"


def loads_cleanly(path: Path) -> bool:
    """Whether a checkpoint's config and tensor header agree (`qnoise.io.check_header`: no tensor is read),
    so a broken checkpoint is listed after the good ones and never chosen by default."""
    from qnoise.files import file_inside
    from qnoise.io import CONFIG_FILE, MODEL_FILE, check_header, read_checkpoint_config

    try:
        doc = read_checkpoint_config(path)
        file = file_inside(path, doc["tensors"].get("file", MODEL_FILE), "tensors.file")
        check_header(path / CONFIG_FILE, doc["model"], file)
    except Exception:  # noqa: BLE001 - any failure means: not clean
        return False
    return True


def is_eval_batch(path: Path) -> bool:
    """A safetensors file holding an input tensor and labels (header only); a checkpoint's tensors, e.g. a
    ``model.safetensors`` whose config is missing or broken, are not an evaluation batch."""
    from safetensors import safe_open

    if path.name == "model.safetensors":
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
    except Exception:  # noqa: BLE001 - unreadable: not a batch
        return False
    return bool(keys & set(BATCH_INPUTS)) and bool(keys & set(BATCH_LABELS))


GRIDS = "grids"
GRID_FORMAT = "qnoise-model-grids"  # `qnoise.train.sample_data.GRID_FORMAT`


def is_grid_folder(path: Path) -> bool:
    """A folder of model grids written beside checkpoints by `qnoise.train.sample_data.write_sample_grids`:
    each belongs to its checkpoint (read by `stored.shipped_grid`), so it is not listed as a results table."""
    try:
        return json.loads((path / "index.json").read_text()).get("format") == GRID_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


SEARCH_COLUMNS = ("label", "accuracy", "samples", "ci_low", "ci_high", "memory_bits", "energy_pj")


def is_search_table(path: Path) -> bool:
    """A table of configurations from a mixed-precision search (`qnoise.search`'s ``evaluations.parquet`` and
    fronts: one row per configuration, `SEARCH_COLUMNS`), read from its schema only; the Budget page takes it."""
    try:
        import pyarrow.parquet as pq

        names = set(pq.read_schema(path).names)
    except Exception:  # noqa: BLE001 - unreadable: reported where it is read
        return False
    return set(SEARCH_COLUMNS) <= names and "metric" not in names


def is_sweep_dir(path: Path) -> bool:
    return path.is_dir() and (path / "manifest.json").is_file() and any(path.rglob("*.parquet"))


def stamp(path: str | Path) -> float:
    """A change marker for cache keys: the newest modification time under ``path`` (folders included, so a
    deleted file changes it too), looking at no more than `STAMP_FILES` entries; 0 for a path that does not
    exist or may not be opened (nothing outside `allowed_roots` is walked)."""
    path = Path(path).expanduser()
    if not is_allowed(path):
        return 0.0
    try:
        if not path.is_dir():
            return path.stat().st_mtime
        times = [path.stat().st_mtime]
        for p in itertools.islice(path.rglob("*"), STAMP_FILES):
            try:
                times.append(p.stat().st_mtime)
            except OSError:  # removed while walking
                continue
        return max(times)
    except OSError:
        return 0.0


def scan(path: str | Path, max_depth: int = 4) -> Catalog:
    """Find checkpoints, results tables and evaluation batches under ``path``.

    Raises ``FileNotFoundError`` when ``path`` does not exist and ``ValueError`` when it holds nothing the
    dashboard can show.
    """
    root = confine(path)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist")
    cat = Catalog(root=root.resolve())
    if root.is_file():
        if root.suffix == ".parquet":
            cat.results[root.name] = root
            cat.root = root.parent.resolve()
            return cat
        raise ValueError(f"{root} is a file; choose a folder (checkpoint, sweep run, sample data) or a .parquet table")
    for name in ("index.json", "sample_index.json", "manifest.json"):
        f = root / name
        if f.is_file() and name != "manifest.json":
            try:
                cat.index = json.loads(f.read_text())
            except ValueError as err:
                raise ValueError(f"{f} is not valid JSON: {err}") from err
            break

    def label(p: Path) -> str:
        rel = p.relative_to(root)
        return "." if str(rel) == "." else str(rel)

    def walk(d: Path, depth: int) -> None:
        if is_checkpoint(d):
            cat.checkpoints[label(d)] = d
            return
        if is_sweep_dir(d):
            cat.results[label(d)] = d
            return
        for p in sorted(d.iterdir()):
            if p.is_symlink() and not is_allowed(p):  # a link out of the allowed folders is not followed
                continue
            if p.is_file() and p.suffix == ".parquet":
                (cat.searches if is_search_table(p) else cat.results)[label(p)] = p
            elif p.is_file() and p.suffix == ".safetensors" and is_eval_batch(p):
                cat.eval_batches[label(p)] = p
            elif p.is_dir() and depth < max_depth and p.name not in _SKIP_DIRS and not p.name.startswith(".") \
                    and not is_grid_folder(p):
                walk(p, depth + 1)

    walk(root, 0)
    clean = {lab: loads_cleanly(p) for lab, p in cat.checkpoints.items()}
    cat.checkpoints = dict(sorted(cat.checkpoints.items(),
                                  key=lambda kv: (not clean[kv[0]], _kind(kv[1]) != "snn", kv[0])))
    if cat.empty:
        raise ValueError(f"{root} holds no qnoise checkpoint (model.safetensors + config.json) and no results table "
                         f"(.parquet or a sweep run folder with manifest.json)")
    return cat


def check_results(df: pd.DataFrame, where: str = "the table") -> pd.DataFrame:
    """Raise ``ValueError`` unless ``df`` has the tidy schema's core columns."""
    missing = [c for c in RESULT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{where} is not a qnoise results table: missing column(s) {missing}")
    return df


def _gone(path: Path) -> FileNotFoundError:
    return FileNotFoundError(f"the results table {path} no longer exists (deleted or moved after the folder was "
                             f"opened); choose another table, or open the folder again")


def read_results(path: str | Path) -> pd.DataFrame:
    """A results table: one parquet file, or every finished cell of a sweep run folder, concatenated.
    A table deleted after its folder was opened gets a message saying so."""
    path = confine(path)
    if path.is_file():
        try:
            df = pd.read_parquet(path)
        except FileNotFoundError as err:  # deleted between the check and the read
            raise _gone(path) from err
        except Exception as err:  # pyarrow raises several types for a bad file
            raise ValueError(f"{path} is not a readable parquet table: {err}") from err
        return check_results(df, str(path))
    if not path.is_dir():
        raise _gone(path)
    try:  # the sweep's own reader, when qnoise has one: it knows which cells are finished
        from qnoise import sweep as _sweep

        reader = getattr(_sweep, "load_results", None) or getattr(_sweep, "read_sweep", None)
    except ImportError:
        reader = None
    if reader is not None:
        try:
            return check_results(reader(path), str(path))
        except FileNotFoundError as err:
            raise _gone(path) from err
    files = sorted(p for p in path.rglob("*.parquet") if not p.name.startswith("."))
    if not files:
        raise ValueError(f"{path} holds no .parquet table")
    frames = []
    for f in files:
        try:
            frames.append(pd.read_parquet(f))
        except FileNotFoundError as err:
            raise _gone(f) from err
        except Exception as err:
            raise ValueError(f"{f} is not a readable parquet table: {err}") from err
    return check_results(pd.concat(frames, ignore_index=True), str(path))


# ---------------------------------------------------------------- uploads, deleted with their session

_UPLOADS: dict[Path, tuple[weakref.ref | None, weakref.finalize]] = {}  # folder -> (owner, its cleanup)
_UPLOADS_LOCK = threading.Lock()


class Owner:
    """What an upload's lifetime is tied to: one per browser session, kept in its session state (so it is
    collected with the session), and one for uploads made outside a session (lives until the process exits)."""


_PROCESS = Owner()
SESSION_KEY = "_qnoise_upload_owner"


def current_session() -> Owner | None:
    """The running Streamlit session's `Owner` (made on first use, held in its session state), or None outside
    a Streamlit script run."""
    try:
        from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

        ctx = get_script_run_ctx(suppress_warning=True)
        if ctx is None:
            return None
        state = ctx.session_state
        if SESSION_KEY not in state:
            state[SESSION_KEY] = Owner()
        return state[SESSION_KEY]
    except Exception:  # noqa: BLE001 - no Streamlit, or another version's layout
        return None


def _remove_upload(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    with _UPLOADS_LOCK:
        _UPLOADS.pop(folder, None)


def register_upload(folder: str | Path, owner=None) -> Path:
    """Delete ``folder`` when ``owner`` is garbage collected (default: the current Streamlit session, so the
    upload goes when its session ends; outside a session, when the process exits). Returns the folder."""
    folder = Path(folder).resolve()
    owner = owner if owner is not None else current_session()
    target = owner if owner is not None else _PROCESS
    cleanup = weakref.finalize(target, _remove_upload, folder)  # also runs at interpreter exit
    with _UPLOADS_LOCK:
        _UPLOADS[folder] = (weakref.ref(owner) if owner is not None else None, cleanup)
    return folder


def session_uploads(owner=None) -> list[Path]:
    """Upload folders of ``owner`` (default: the current session) that still exist."""
    owner = owner if owner is not None else current_session()
    with _UPLOADS_LOCK:
        items = list(_UPLOADS.items())
    return [f for f, (ref, _) in items if (ref() if ref is not None else None) is owner and f.is_dir()]


def save_upload(files: dict[str, bytes], max_bytes: int = MAX_UPLOAD_BYTES, parent: str | Path | None = None,
                owner=None) -> Path:
    """Write an uploaded checkpoint (``{"model.safetensors": bytes, "config.json": bytes}``) to a new
    temporary folder and validate it with `qnoise.io.load_checkpoint` (safetensors: no code is run).
    Returns the folder, which is deleted when ``owner`` (default: the current Streamlit session) ends
    (`register_upload`); raises ``ValueError`` with a clear message (and removes the folder) otherwise."""
    from qnoise.io import load_checkpoint

    limit = f"{max_bytes / 2**20:.0f} MiB"
    names = sorted(files)
    wrong = [n for n in names if n not in UPLOAD_NAMES]
    if wrong:
        raise ValueError(f"unexpected file(s) {wrong}: upload exactly {list(UPLOAD_NAMES)}")
    too_big = [f"{n} is {len(b) / 2**20:.1f} MiB" for n, b in sorted(files.items()) if len(b) > max_bytes]
    if too_big:
        raise ValueError(f"{', '.join(too_big)}; the limit is {limit}")
    lacking = [n for n in UPLOAD_NAMES if n not in files]
    if lacking:
        raise ValueError(f"missing {lacking}: a checkpoint is {list(UPLOAD_NAMES)} (the browser does not send a file "
                         f"over the {limit} limit)")
    total = sum(len(b) for b in files.values())
    if total > max_bytes:
        raise ValueError(f"the upload is {total / 2**20:.1f} MiB; the limit is {limit}")
    try:
        json.loads(files["config.json"].decode())
    except (UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"config.json is not valid JSON: {err}") from err
    folder = Path(tempfile.mkdtemp(prefix="qnoise-upload-", dir=parent))
    try:
        for name, data in files.items():
            (folder / name).write_bytes(data)
        load_checkpoint(folder)
    except Exception as err:
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(err, (ValueError, FileNotFoundError, KeyError, TypeError)):
            raise ValueError(f"not a valid qnoise checkpoint: {err}") from err
        raise ValueError(f"could not load the checkpoint: {type(err).__name__}: {err}") from err
    return register_upload(folder, owner)
