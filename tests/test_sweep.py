"""Sweeps (qnoise.sweep): one parquet per cell, resumable after a kill, local processes or Ray; and the
analyze / sweep / report commands."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from qnoise.cli import main as cli
from qnoise.sweep import CELLS_DIR, MANIFEST, load_sweep, make_cells, sweep

REPO = Path(__file__).resolve().parents[1]
CONFIG = ["weight_bits", "state_bits", "timesteps", "rounding", "neuron"]

JOB = textwrap.dedent('''
    """A small sweep, the same model and data every time it runs ($JOB_SAMPLES samples, 64 by default)."""
    import os
    import sys

    import torch
    from torch import nn

    from qnoise import IF, MultiStep
    from qnoise.sweep import sweep


    def model():
        torch.manual_seed(0)
        return nn.Sequential(MultiStep(nn.Conv2d(2, 4, 3, padding=1)), IF(v_init="half"),
                             MultiStep(nn.AvgPool2d(2)), MultiStep(nn.Flatten(), nn.Linear(64, 16)),
                             IF(v_init="half"), MultiStep(nn.Linear(16, 5))).eval()


    def data():
        n = int(os.environ.get("JOB_SAMPLES", 64))
        g = torch.Generator().manual_seed(1)
        return torch.rand(n, 1, 2, 8, 8, generator=g), torch.randint(0, 5, (n,), generator=g)


    GRID = dict(weight_bits=[2, 3, 4, 5, 6, 8, 32], timesteps=[4, 8, 16], rounding=["nearest", "truncate"])


    def job(out, workers=1):
        return sweep(model(), data(), out=out, workers=workers, batch_size=16, progress=False, **GRID)


    if __name__ == "__main__":
        job(sys.argv[1], *(int(a) for a in sys.argv[2:]))
''')


@pytest.fixture
def job(tmp_path):
    path = tmp_path / "sweepjob.py"
    path.write_text(JOB)
    spec = importlib.util.spec_from_file_location("sweepjob", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


def _cells(out: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / CELLS_DIR).glob("*.parquet")}


def _check_complete(df: pd.DataFrame, n_cells: int) -> None:
    assert df.groupby(CONFIG, dropna=False).ngroups == n_cells
    assert not df.duplicated([*CONFIG, "layer", "t", "metric", "mode"]).any()


def test_sweep_writes_one_file_per_cell_and_resumes(tmp_path):
    sys.path.insert(0, str(tmp_path))
    out = tmp_path / "run"
    from torch import nn

    from qnoise import IF, MultiStep

    torch.manual_seed(0)
    model = nn.Sequential(MultiStep(nn.Linear(12, 8)), IF(v_init="half"), MultiStep(nn.Linear(8, 3))).eval()
    X, y = torch.rand(20, 1, 12), torch.randint(0, 3, (20,))
    grid = dict(weight_bits=[2, 32], timesteps=[2, 4], state_bits=[None, 6])
    df = sweep(model, (X, y), out=out, workers=1, progress=False, **grid)
    _check_complete(df, 8)
    manifest = json.loads((out / MANIFEST).read_text())
    assert len(manifest["cells"]) == 8
    assert all((out / c["file"]).exists() for c in manifest["cells"])
    files = _cells(out)
    again = sweep(model, (X, y), out=out, workers=1, progress=False, **grid)
    assert _cells(out) == files  # nothing recomputed or rewritten
    pd.testing.assert_frame_equal(again.reset_index(drop=True), df.reset_index(drop=True))
    # a wider grid over the same model and data extends the folder
    more = sweep(model, (X, y), out=out, workers=1, progress=False, weight_bits=[2, 4, 32], timesteps=[2, 4],
                 state_bits=[None, 6])
    _check_complete(more, 12)
    assert len(json.loads((out / MANIFEST).read_text())["cells"]) == 12
    _check_complete(load_sweep(out), 12)
    # the same folder with other analysis options is refused
    with pytest.raises(ValueError, match="different"):
        sweep(model, (X, y), out=out, workers=1, progress=False, reference="ann-quantized", **grid)
    with pytest.raises(ValueError, match="different"):
        sweep(model, (X * 2, y), out=out, workers=1, progress=False, **grid)


def test_a_probed_batch_runs_step_major_whatever_t_and_history(monkeypatch):
    """A small network that has run before was probed folded (T x B rows per matrix product), whose rounding
    depends on T: on the digits sample at 8-bit weights a sweep's T = 3 cell, taken from its T = 15 run, differed
    from the same cell of a resumed sweep (2.6e-10 in the first layer's propagated error). A probed batch on the
    CPU now runs step-major (per-step products of B rows), unless the caller set an order."""
    from qnoise import stepping
    from qnoise.io import load_checkpoint
    from qnoise.probe import analyze
    from qnoise.samples import sample_checkpoint

    model = load_checkpoint(sample_checkpoint())
    x = torch.rand(15, 64, 1, 8, 8)
    with torch.no_grad():
        model(x)  # now known to be small
        assert stepping.plan(model, x) == "fold"  # a plain forward still folds
    orders = []
    real = stepping.plan
    def spy(m, v):
        order = real(m, v)
        if m is model:  # not the twin's or other references' plans
            orders.append(order)
        return order

    monkeypatch.setattr(stepping, "plan", spy)
    analyze(model, None, weight_bits=8, timesteps=15, limit=64, progress=False)
    assert orders and set(orders) == {"step"}
    orders.clear()
    with stepping.mode("fold"):  # an order the caller chose is kept
        analyze(model, None, weight_bits=8, timesteps=15, limit=64, progress=False)
    assert "fold" in orders


def test_the_users_own_data_is_known_by_its_files_not_by_the_path_typed(tmp_path, monkeypatch):
    """The run folder recorded the path as typed: other data under the same relative path was resumed into the
    same folder (its cells mixed with the first data's), and the same file by its absolute path was refused."""
    from torch import nn

    from qnoise import IF, MultiStep

    torch.manual_seed(0)
    model = nn.Sequential(MultiStep(nn.Linear(12, 8)), IF(v_init="half"), MultiStep(nn.Linear(8, 3))).eval()
    rng = np.random.default_rng(0)
    for where in ("a", "b"):
        (tmp_path / where).mkdir()
        np.savez(tmp_path / where / "data.npz", images=rng.random((20, 12), dtype=np.float32),
                 labels=np.arange(20) % 3)
    out = tmp_path / "run"
    monkeypatch.chdir(tmp_path / "a")
    sweep(model, "data.npz", out=out, workers=1, progress=False, weight_bits=[2], timesteps=[2], split="test")
    sweep(model, str(tmp_path / "a" / "data.npz"), out=out, workers=1, progress=False, weight_bits=[2, 4],
          timesteps=[2], split="test")  # the same file by another path: extends the folder
    assert len(json.loads((out / MANIFEST).read_text())["cells"]) == 2
    monkeypatch.chdir(tmp_path / "b")
    with pytest.raises(ValueError, match="holds a sweep of a different data"):
        sweep(model, "data.npz", out=out, workers=1, progress=False, weight_bits=[2, 4, 8], timesteps=[2],
              split="test")


@pytest.mark.parametrize("options", [{}, {"reference": "snn"}, {"reference": "ann-quantized", "isolate": False},
                                     {"twin_input": "cumulative"}])
def test_cells_over_t_of_static_frames_are_one_run_and_each_is_its_own_run(tmp_path, options, monkeypatch):
    """An image repeated to T: the cells that differ only in T are one run at the longest T, whose first steps
    give the shorter cells' tables; each equals the cell analysed alone, bit for bit (signed neurons, membrane
    bits and per-step data included). Event data of one T per call is not shared."""
    from qnoise.models import build_model
    from qnoise.probe import analyze
    from qnoise.probe import analysis as analysis_module

    torch.manual_seed(0)
    model = build_model("cnn", (2, 10, 10), 3, channels=[4, 6], hidden=16).eval()
    X, y = torch.rand(18, 1, 2, 10, 10) * 2, torch.arange(18) % 3
    grid = dict(weight_bits=[3, 32], timesteps=[2, 7, 4], neuron=["if", "signed"], state_bits=[None, 6])
    runs = []
    original = analysis_module.Probe.step
    monkeypatch.setattr(analysis_module.Probe, "step", lambda self, x, *a: runs.append(x.shape[0]) or
                        original(self, x, *a))
    df = sweep(model, (X, y), out=tmp_path / "run", workers=1, batch_size=8, progress=False, **grid, **options)
    assert runs == [7] * 8 * 3  # 8 runs at the longest T (3 batches each) for 24 cells
    cells = make_cells(grid["weight_bits"], grid["timesteps"], "nearest", grid["state_bits"], grid["neuron"])
    assert len(df) == sum(len(pd.read_parquet(tmp_path / "run" / CELLS_DIR / f"{c['id']}.parquet")) for c in cells)
    for c in cells:
        cell = pd.read_parquet(tmp_path / "run" / CELLS_DIR / f"{c['id']}.parquet")
        alone = analyze(model, (X, y), batch_size=8, weight_bits=c["weight_bits"], timesteps=c["timesteps"],
                        neuron=c["neuron"], state_bits=c["state_bits"], **options)
        assert cell.drop(columns="value").equals(alone.drop(columns="value")), c["id"]
        assert cell["value"].fillna(-1).equals(alone["value"].fillna(-1)), c["id"]
    runs.clear()
    events = {T: ((torch.rand(18, T, 2, 10, 10) < 0.3).float(), y) for T in (2, 4)}
    sweep(model, events.get, weight_bits=[3], timesteps=[2, 4], workers=1, batch_size=8, progress=False)
    assert runs == [4] * 3 + [2] * 3 or runs == [2] * 3 + [4] * 3  # a factory's frames differ per T: not shared


def test_killed_sweep_loses_nothing_and_duplicates_nothing(job, tmp_path):
    path, module = job
    out = tmp_path / "killed"
    n_cells = len(make_cells(**module.GRID, state_bits=None, neuron=None))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(path), str(out)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 90
        while len(list((out / CELLS_DIR).glob("*.parquet"))) < 3:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "the sweep wrote no cell in 90 s"
            time.sleep(0.02)
        time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = _cells(out)
    assert 3 <= len(done) < n_cells, "the kill must land mid-way"
    for name in done:  # every visible table is whole
        pd.read_parquet(out / CELLS_DIR / name)
    df = module.job(out)
    _check_complete(df, n_cells)
    after = _cells(out)
    assert len(after) == n_cells
    assert {k: after[k] for k in done} == done  # finished cells were not redone
    _check_complete(load_sweep(out), n_cells)


def test_parallel_processes_match_serial(job, tmp_path):
    _, module = job
    grid = dict(weight_bits=[2, 32], timesteps=[4, 8])
    serial = sweep(module.model(), module.data(), out=tmp_path / "a", workers=1, progress=False, **grid)
    parallel = sweep(module.model(), module.data(), out=tmp_path / "b", workers=2, progress=False, **grid)
    key = [*CONFIG, "layer", "t", "metric", "mode"]
    a = serial.sort_values(key).reset_index(drop=True)
    b = parallel.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_ray_executor(job, tmp_path):
    if importlib.util.find_spec("ray") is None:
        msg = "Ray is not installed (pip install 'qnoise[ray]'; the test extra includes it)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {msg}")
        pytest.skip(msg)
    _, module = job
    grid = dict(weight_bits=[2, 32], timesteps=[4])
    serial = sweep(module.model(), module.data(), workers=1, progress=False, **grid)
    df = sweep(module.model(), module.data(), out=tmp_path / "ray", executor="ray", workers=2, progress=False,
               **grid)
    _check_complete(df, 2)
    assert np.allclose(np.sort(df.value.to_numpy()), np.sort(serial.value.to_numpy()), equal_nan=True)


# ------------------------------------------------------------------------------------------------ commands

@pytest.fixture
def checkpoint(tmp_path):
    from qnoise.io import save_checkpoint
    from qnoise.models import build_model

    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, neuron={"v_init": "half"}, hidden=[32])
    return save_checkpoint(model, tmp_path / "ckpt", dataset={"name": "digits"}, timesteps=4)


def test_cli_analyze_sweep_report(checkpoint, tmp_path, capsys):
    table = tmp_path / "one.parquet"
    assert cli(["analyze", "--checkpoint", str(checkpoint), "--weight-bits", "4", "--timesteps", "4",
                "--limit", "32", "--out", str(table)]) == 0
    df = pd.read_parquet(table)
    assert set(df.weight_bits) == {4} and set(df.timesteps) == {4} and set(df.dataset) == {"digits"}
    assert (tmp_path / "one.parquet.json").exists()
    run = tmp_path / "run"
    assert cli(["sweep", "--checkpoint", str(checkpoint), "--dataset", "digits", "--weight-bits", "2,32",
                "--timesteps", "2,4", "--limit", "32", "--workers", "1", "--out", str(run)]) == 0
    assert len(list((run / CELLS_DIR).glob("*.parquet"))) == 4
    assert "T=4" in capsys.readouterr().out
    assert cli(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    assert "Plotly.newPlot" in html and "<script src=\"http" not in html  # plotly inlined: opens offline
    acc = pd.read_csv(run / "tables" / "accuracy.csv")
    assert list(acc.columns) == ["weight_bits", "T=2", "T=4"]
    assert cli(["report", str(table)]) == 0
    assert (tmp_path / "one" / "report.html").exists()


def test_cli_errors_are_messages(tmp_path, capsys):
    assert cli(["analyze", "--checkpoint", str(tmp_path / "missing")]) == 2
    assert "error" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ hardening

def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start(path: Path, out: Path, *args: str, samples: int = 64) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "JOB_SAMPLES": str(samples)}
    return subprocess.Popen([sys.executable, str(path), str(out), *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _wait_for(cond, proc: subprocess.Popen, what: str, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while not cond():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, f"{what} did not happen in {timeout} s"
        time.sleep(0.05)


def test_two_sweeps_in_one_folder_one_is_refused_and_nothing_mixes(job, tmp_path):
    """Issue 12: two sweeps started together in one folder with different options both ran and mixed their
    cells. The folder's lock refuses the second, naming the first's process; the manifest stays the first's."""
    path, module = job
    out = tmp_path / "shared"
    first = _start(path, out)
    try:
        _wait_for(lambda: (out / ".lock").is_file() and "pid" in (out / ".lock").read_text()
                  and (out / MANIFEST).is_file(), first, "the lock and the manifest")  # killed after both
        with pytest.raises(RuntimeError, match=rf"in use by another sweep \(pid {first.pid}"):
            sweep(module.model(), module.data(), out=out, workers=1, progress=False, limit=50,
                  weight_bits=[2, 4], timesteps=[4])
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["identity"]["data"]["limit"] is None
    assert len(manifest["cells"]) == len(make_cells(**module.GRID, state_bits=None, neuron=None))
    df = module.job(out)  # the lock died with its holder: the first sweep resumes
    assert set(df.timesteps) == {4, 8, 16}


def test_workers_exit_when_the_sweep_process_is_killed(job, tmp_path):
    """Issue 12: a sweep whose main process was killed left its workers running (about 1 GB). They watch
    their parent and exit within seconds."""
    if not Path("/proc").is_dir():
        pytest.skip("needs Linux /proc to find the worker processes")
    path, _ = job
    out = tmp_path / "orphans"
    parent = _start(path, out, "2", samples=4000)  # two worker processes, each task long enough to outlive it
    try:
        _wait_for(lambda: (out / CELLS_DIR).is_dir() and any((out / CELLS_DIR).glob("*.parquet")), parent,
                  "a first cell")  # the workers are computing their tasks now
        workers = [p for p in _children(parent.pid) if _alive(p)]
        assert len(workers) >= 2
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.time() + 10
    while any(_alive(p) for p in workers) and time.time() < deadline:
        time.sleep(0.1)
    left = [p for p in workers if _alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"worker processes {left} outlived the sweep by 10 s"


def test_a_damaged_cell_file_is_computed_again(tmp_path):
    """Issue 12: an empty or corrupt cell file stopped the sweep with 'Could not open Parquet input source'."""
    from torch import nn

    from qnoise import IF, MultiStep

    torch.manual_seed(0)
    model = nn.Sequential(MultiStep(nn.Linear(12, 8)), IF(v_init="half"), MultiStep(nn.Linear(8, 3))).eval()
    X, y = torch.rand(20, 1, 12), torch.randint(0, 3, (20,))
    grid = dict(weight_bits=[2, 32], timesteps=[2, 4])
    out = tmp_path / "run"
    first = sweep(model, (X, y), out=out, workers=1, progress=False, **grid)
    files = sorted((out / CELLS_DIR).glob("*.parquet"))
    files[0].write_bytes(b"")
    files[1].write_bytes(b"PAR1 this is not a table")
    with pytest.warns(RuntimeWarning, match="computing it again"):
        again = sweep(model, (X, y), out=out, workers=1, progress=False, **grid)
    pd.testing.assert_frame_equal(again, first)
    assert len(load_sweep(out)) == len(first)


def test_the_manifest_is_the_one_list_of_cells(tmp_path):
    from torch import nn

    from qnoise import IF, MultiStep

    torch.manual_seed(0)
    model = nn.Sequential(MultiStep(nn.Linear(12, 8)), IF(v_init="half"), MultiStep(nn.Linear(8, 3))).eval()
    X, y = torch.rand(20, 1, 12), torch.randint(0, 3, (20,))
    out = tmp_path / "run"
    df = sweep(model, (X, y), out=out, workers=1, progress=False, weight_bits=[2, 4], timesteps=[2])
    stray = sweep(model, (X * 3, y), workers=1, progress=False, weight_bits=[8], timesteps=[2])
    stray.to_parquet(out / CELLS_DIR / "w8-T2-nearest-smodel-model.parquet")  # not listed in the manifest
    assert len(load_sweep(out)) == len(df)


@pytest.mark.parametrize("grid,message", [
    (dict(weight_bits=[4], timesteps=[0, 4]), "timesteps"),
    (dict(weight_bits=[4, 8, 4], timesteps=[4]), "repeats weight_bits value"),
    (dict(weight_bits=[0], timesteps=[4]), "weight_bits"),
])
def test_bad_grids_are_refused_before_any_work(tmp_path, grid, message):
    from torch import nn

    from qnoise import IF, MultiStep

    model = nn.Sequential(MultiStep(nn.Linear(4, 3)), IF(), MultiStep(nn.Linear(3, 2))).eval()
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        sweep(model, (torch.rand(4, 1, 4), torch.zeros(4, dtype=torch.long)), out=out, progress=False, **grid)
    assert not out.exists()
