"""qnoise.data: digits, real N-MNIST files, synthetic files in each release format, splits, cache, bad files."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given

from qnoise.data import (
    DATASETS,
    BadEventFile,
    collate_time_first,
    dataset_tensors,
    events_to_frames,
    load_dataset,
)
from qnoise.data import formats
from qnoise.data.cache import FrameCache
from qnoise.data.digits import digits_arrays
from qnoise.data.events import check_events
from qnoise.data.split import held_out_count, split_indices, stratified_holdout

NMNIST_1K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nmnist-1k"


@pytest.fixture(scope="module")
def nmnist_root() -> Path:
    """The shared partial N-MNIST copy; skipped when absent, a failure when the env var CI is set."""
    if (NMNIST_1K / "NMNIST" / "Train").is_dir():
        return NMNIST_1K
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but the shared N-MNIST copy {NMNIST_1K} is missing")
    pytest.skip(f"shared N-MNIST copy not found at {NMNIST_1K} (the team's ../shared/data); set CI to fail instead")


def nmnist_events_from_bytes(path: Path) -> np.ndarray:
    """Independent N-MNIST decoder: 5-byte records -> [N, 3] (x, y, p), overflow records (y == 240) dropped."""
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, 5)
    raw = raw[raw[:, 1] != 240]
    return np.stack([raw[:, 0], raw[:, 1], raw[:, 2] >> 7], axis=1).astype(np.int64)


def nmnist_bytes(x, y, p, t) -> bytes:
    """Encode events in the N-MNIST format: x, y, then p (1 bit) and t (23 bits, us), big-endian."""
    x, y, p, t = (np.asarray(a, dtype=np.int64) for a in (x, y, p, t))
    rec = np.stack([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF], axis=1)
    return rec.astype(np.uint8).tobytes()


def random_events(rng, n, w, h, t_max=300_000):
    t = np.sort(rng.integers(0, t_max, n))
    return rng.integers(0, w, n), rng.integers(0, h, n), rng.integers(0, 2, n), t


# --------------------------------------------------------------------------------------------------- digits

def test_digits_splits_sizes_disjoint_and_deterministic():
    parts = {s: load_dataset("digits", s, timesteps=2) for s in ("train", "val", "test")}
    assert {s: len(d) for s, d in parts.items()} == {"train": 1150, "val": 288, "test": 359}
    idx = [set(d.indices.tolist()) for d in parts.values()]
    assert set.union(*idx) == set(range(1797)) and sum(map(len, idx)) == 1797
    again = load_dataset("digits", "val", timesteps=2)
    assert np.array_equal(again.indices, parts["val"].indices)
    other_seed = load_dataset("digits", "val", timesteps=2, seed=1)
    assert not np.array_equal(other_seed.indices, parts["val"].indices)
    counts = np.bincount(parts["test"].labels.numpy(), minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified


def test_digits_static_items_shapes_and_range():
    ds = load_dataset("digits", "train", timesteps=3)
    x, label = ds[5]
    assert x.shape == (3, 1, 8, 8) and x.dtype == torch.float32 and isinstance(label, int)
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10
    images, labels = digits_arrays()
    assert torch.equal(x[0], torch.from_numpy(images[ds.indices[5]])) and label == labels[ds.indices[5]]
    assert all(torch.equal(x[t], x[0]) for t in range(3))
    X, y = dataset_tensors(ds)
    assert X.shape == (1150, 3, 1, 8, 8) and y.shape == (1150,) and y.dtype == torch.long
    assert X.min() == 0 and X.max() == 1
    assert torch.equal(X[7], ds[7][0]) and y[7] == ds[7][1]


def test_digits_poisson_is_binary_deterministic_and_rate_coded():
    ds = load_dataset("digits", "test", timesteps=1000, encoding="poisson", limit=20)
    x, _ = ds[3]
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(x, ds[3][0])  # same index, same spikes
    # the same sample gets the same spikes whatever subset it is loaded in
    full = load_dataset("digits", "test", timesteps=1000, encoding="poisson")
    j = int(np.flatnonzero(full.indices == ds.indices[3])[0])
    assert torch.equal(full[j][0], x)
    X, _ = dataset_tensors(ds)
    err = (X.mean(dim=1) - ds.images).abs()
    assert err.max() < 0.08 and err.mean() < 0.015  # binomial std <= 0.016 per pixel at T = 1000


def test_digits_limit_is_class_balanced():
    ds = load_dataset("digits", "train", timesteps=1, limit=50)
    assert len(ds) == 50 and np.bincount(ds.labels.numpy(), minlength=10).tolist() == [5] * 10


@pytest.mark.parametrize("kwargs, words", [
    ({"name": "mnist"}, ["'mnist'", "digits", "nmnist", "shd"]),
    ({"name": "digits", "split": "validation"}, ["'validation'", "train", "val", "test"]),
    ({"name": "digits", "timesteps": 0}, ["timesteps", "0"]),
    ({"name": "digits", "timesteps": -3}, ["timesteps", "-3"]),
    ({"name": "digits", "timesteps": 2.5}, ["timesteps", "2.5"]),
    ({"name": "digits", "encoding": "rate"}, ["'rate'", "static", "poisson"]),
    ({"name": "nmnist", "encoding": "poisson"}, ["'poisson'", "digits"]),
    ({"name": "digits", "val_fraction": 1.0}, ["val_fraction"]),
    ({"name": "nmnist", "clip": 0}, ["clip", "> 0", "0"]),
    ({"name": "nmnist", "clip": -1}, ["clip", "-1"]),
    ({"name": "nmnist", "clip": float("nan")}, ["clip", "nan"]),
    ({"name": "nmnist", "duration_us": 0}, ["duration_us", "0"]),
    ({"name": "nmnist", "duration_us": -5}, ["duration_us", "-5"]),
])
def test_bad_arguments_name_the_value_and_the_choices(kwargs, words):
    with pytest.raises(ValueError) as err:
        load_dataset(**kwargs)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_collate_time_first():
    ds = load_dataset("digits", "val", timesteps=4, limit=10)
    loader = torch.utils.data.DataLoader(ds, batch_size=5, collate_fn=collate_time_first)
    x, y = next(iter(loader))
    assert x.shape == (4, 5, 1, 8, 8) and y.shape == (5,)
    assert torch.equal(x[:, 2], ds[2][0])


# ------------------------------------------------------------------------------------------ real N-MNIST

def test_nmnist_partial_copy_loads_offline_with_tonic_refusing_it(nmnist_root, monkeypatch, tmp_path):
    import tonic.datasets
    import tonic.download_utils

    probe = tonic.datasets.NMNIST.__new__(tonic.datasets.NMNIST)  # tonic's own check, without its __init__
    probe.location_on_system, probe.folder_name = str(nmnist_root / "NMNIST"), "Train"
    probe.filename = tonic.datasets.NMNIST.train_filename
    assert not probe._check_exists()  # tonic would download here

    def no_network(*args, **kwargs):
        raise AssertionError("qnoise tried to download")

    monkeypatch.setattr(tonic.download_utils, "download_url", no_network)
    monkeypatch.setattr(tonic.datasets, "NMNIST", no_network)
    ds = load_dataset("nmnist", "train", root=nmnist_root, timesteps=4, cache_dir=tmp_path)
    x, label = ds[0]
    assert x.shape == (4, 2, 34, 34) and x.dtype == torch.float32 and 0 <= label <= 9
    assert ds.input_shape == (2, 34, 34) and ds.num_classes == 10


def test_nmnist_split_800_200_disjoint_stratified_deterministic(nmnist_root, tmp_path):
    train = load_dataset("nmnist", "train", root=nmnist_root, cache_dir=tmp_path)
    val = load_dataset("nmnist", "val", root=nmnist_root, cache_dir=tmp_path)
    assert (len(train), len(val)) == (800, 200)
    tr, va = {r.path for r in train.recordings}, {r.path for r in val.recordings}
    assert not tr & va and tr | va == set((nmnist_root / "NMNIST" / "Train").glob("*/*.bin"))
    assert [r.path for r in load_dataset("nmnist", "val", root=nmnist_root).recordings] == \
        [r.path for r in val.recordings]
    per_class = np.bincount(val.targets, minlength=10)
    totals = np.array([97, 116, 99, 93, 105, 92, 94, 117, 87, 100])  # the copy's README
    assert np.all(np.abs(per_class - 0.2 * totals) < 1)
    assert all(r.label == int(r.path.parent.name) for r in train.recordings + val.recordings)


@pytest.mark.parametrize("timesteps", [1, 5, 8])
def test_nmnist_frames_count_every_event_of_the_file(nmnist_root, tmp_path, timesteps):
    ds = load_dataset("nmnist", "val", root=nmnist_root, timesteps=timesteps, cache_dir=tmp_path, limit=10)
    for i in range(len(ds)):
        x, label = ds[i]
        path = ds.recordings[i].path
        assert x.shape == (timesteps, 2, 34, 34) and label == int(path.parent.name)
        xyp = nmnist_events_from_bytes(path)
        assert x.sum().item() == len(xyp) == path.stat().st_size // 5
        per_pixel = np.zeros((2, 34, 34))
        np.add.at(per_pixel, (xyp[:, 2], xyp[:, 1], xyp[:, 0]), 1)
        assert np.array_equal(x.sum(0).numpy(), per_pixel)  # [p, y, x] counts match the bytes


def test_clip_caps_counts(nmnist_root, tmp_path):
    counts = load_dataset("nmnist", "val", root=nmnist_root, timesteps=2, cache_dir=tmp_path, limit=3)
    binary = load_dataset("nmnist", "val", root=nmnist_root, timesteps=2, cache_dir=tmp_path, limit=3, clip=1)
    x, b = counts[0][0], binary[0][0]
    assert x.max() > 1 and torch.equal(b, x.clamp(max=1)) and set(b.unique().tolist()) == {0.0, 1.0}


def test_nmnist_cache_hit_returns_identical_frames(nmnist_root, tmp_path, monkeypatch):
    ds = load_dataset("nmnist", "val", root=nmnist_root, timesteps=6, cache_dir=tmp_path, limit=5)
    first = [ds[i][0] for i in range(5)]
    files = sorted(tmp_path.rglob("*.npy"))
    assert len(files) == 5 and not list(tmp_path.rglob(".tmp-*"))
    for f in files:
        np.load(f, allow_pickle=False)

    def unreadable(rec):
        raise AssertionError("cache miss: the file was read again")

    again = load_dataset("nmnist", "val", root=nmnist_root, timesteps=6, cache_dir=tmp_path, limit=5)
    monkeypatch.setattr(again, "_read", unreadable)
    assert all(torch.equal(a, again[i][0]) for i, a in enumerate(first))
    other_t = load_dataset("nmnist", "val", root=nmnist_root, timesteps=3, cache_dir=tmp_path, limit=5)
    assert other_t[0][0].shape == (3, 2, 34, 34) and len(list(tmp_path.rglob("*.npy"))) == 6  # a new entry


def test_cache_misses_when_the_file_changes_and_survives_a_corrupt_entry(nmnist_root, tmp_path):
    src = next((nmnist_root / "NMNIST" / "Train" / "3").glob("*.bin"))
    copy = tmp_path / "NMNIST" / "Test" / "3" / src.name
    copy.parent.mkdir(parents=True)
    shutil.copy(src, copy)
    cache = tmp_path / "cache"
    ds = load_dataset("nmnist", "test", root=tmp_path, timesteps=2, cache_dir=cache)
    full = ds[0][0]
    copy.write_bytes(src.read_bytes()[: 5 * 100])  # fewer events: new size and mtime
    assert ds[0][0].sum() == 100 and full.sum() > 100
    entry = max(cache.rglob("*.npy"), key=lambda f: f.stat().st_mtime_ns)
    entry.write_bytes(b"not an npy file")
    assert ds[0][0].sum() == 100  # an unreadable entry is recomputed


def make_bad_nmnist_copy(nmnist_root: Path, dest: Path) -> dict[str, Path]:
    """A Test folder with 4 good real files and 4 bad ones; returns the bad ones by kind."""
    train = nmnist_root / "NMNIST" / "Train"
    good = [next((train / str(d)).glob("*.bin")) for d in range(4)]
    for f in good:
        (dest / "NMNIST" / "Test" / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dest / "NMNIST" / "Test" / f.parent.name / f.name)
    data = good[0].read_bytes()
    events = np.frombuffer(data, np.uint8).reshape(-1, 5).copy()
    swapped = events.copy()
    swapped[[10, 200]] = swapped[[200, 10]]  # timestamps go backwards
    outside = events.copy()
    outside[7, 0] = 40  # x = 40 on a 34-pixel sensor
    bad = {"truncated": data[:-2], "empty": b"", "backwards": swapped.tobytes(), "outside": outside.tobytes()}
    paths = {}
    for i, (kind, content) in enumerate(bad.items()):
        path = dest / "NMNIST" / "Test" / str(5 + i) / f"9999{i}.bin"
        path.parent.mkdir(parents=True)
        path.write_bytes(content)
        paths[kind] = path
    return paths


def test_bad_nmnist_files_raise_errors_naming_file_and_fault(nmnist_root, tmp_path):
    bad = make_bad_nmnist_copy(nmnist_root, tmp_path)
    ds = load_dataset("nmnist", "test", root=tmp_path, timesteps=4, cache_dir=tmp_path / "cache")
    assert len(ds) == 8
    expected = {"truncated": "not a multiple of the 5-byte", "empty": "empty file",
                "backwards": "timestamps decrease at event", "outside": "x=40 at event 7"}
    by_path = {r.path: i for i, r in enumerate(ds.recordings)}
    for kind, path in bad.items():
        with pytest.raises(BadEventFile) as err:
            ds[by_path[path]]
        assert str(path) in str(err.value) and expected[kind] in str(err.value), str(err.value)
        assert err.value.path == path


def test_skip_bad_drops_and_reports_bad_files(nmnist_root, tmp_path):
    bad = make_bad_nmnist_copy(nmnist_root, tmp_path)
    with pytest.warns(UserWarning, match="skipped 4 of 8"):
        ds = load_dataset("nmnist", "test", root=tmp_path, timesteps=4, cache_dir=tmp_path / "c", skip_bad=True)
    assert len(ds) == 4 and {p for p, _ in ds.skipped} == set(bad.values())
    assert all(ds[i][0].sum() > 0 for i in range(len(ds)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean split warns nothing
        load_dataset("nmnist", "val", root=NMNIST_1K, limit=20, cache_dir=tmp_path / "c", skip_bad=True)


def test_download_true_calls_tonic_then_reads_the_layout(tmp_path, monkeypatch):
    import tonic.datasets

    calls = []

    class FakeNMNIST:  # stands in for tonic's class: records the call and "extracts" one file
        def __init__(self, save_to, train=True):
            calls.append((save_to, train))
            path = Path(save_to) / "NMNIST" / "Test" / "7" / "00001.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(nmnist_bytes([1, 2], [3, 4], [0, 1], [10, 20]))

    monkeypatch.setattr(tonic.datasets, "NMNIST", FakeNMNIST)
    ds = load_dataset("nmnist", "test", root=tmp_path, timesteps=2, download=True, cache=False)
    assert calls == [(str(tmp_path), False)] and len(ds) == 1 and ds[0][1] == 7 and ds[0][0].sum() == 2


# ------------------------------------------------------------------------------ synthetic release formats

def test_sensor_sizes_and_classes_agree_with_tonic():
    import tonic.datasets as td

    assert formats.NMNIST.sensor_size == td.NMNIST.sensor_size
    assert formats.NMNIST.classes == tuple(td.NMNIST.classes)
    assert formats.DVSGESTURE.sensor_size == td.DVSGesture.sensor_size
    assert formats.DVSGESTURE.classes == tuple(td.DVSGesture.classes)
    assert formats.CIFAR10DVS.sensor_size == td.CIFAR10DVS.sensor_size
    assert formats.CIFAR10DVS.classes == tuple(td.CIFAR10DVS.classes)
    assert formats.SHD.sensor_size == td.SHD.sensor_size
    for source in formats.SOURCES.values():
        assert source.folder in dir(td)  # the folder is tonic's class name (its location_on_system)


def write_gesture_copy(root: Path, rng) -> dict[Path, np.ndarray]:
    """DVSGesture as tonic's release: ibmGesture{Train,Test}/user<NN>_<light>/<label>.npy, (x, y, p, t ms)."""
    written = {}
    for part, users in (("ibmGestureTrain", (1, 2, 3, 4, 5)), ("ibmGestureTest", (24,))):
        for user in users:
            folder = root / "DVSGesture" / part / f"user{user:02d}_fluorescent"
            folder.mkdir(parents=True)
            for label in range(11):
                x, y, p, t = random_events(rng, 50, 128, 128, t_max=6000)
                arr = np.stack([x, y, p, t], axis=1).astype(np.float64)
                np.save(folder / f"{label}.npy", arr)
                written[folder / f"{label}.npy"] = arr
    return written


def test_dvsgesture_release_layout(tmp_path):
    import tonic.datasets

    written = write_gesture_copy(tmp_path, np.random.default_rng(0))
    test = load_dataset("dvsgesture", "test", root=tmp_path, timesteps=4, cache=False)
    assert len(test) == 11 and test.num_classes == 11 and test.input_shape == (2, 128, 128)
    x, label = test[3]
    assert x.shape == (4, 2, 128, 128) and label == int(test.recordings[3].path.stem) and x.sum() == 50
    # the events qnoise reads equal those of tonic's own DVSGesture.__getitem__ on the same file
    tds = tonic.datasets.DVSGesture.__new__(tonic.datasets.DVSGesture)
    tds.data, tds.targets, tds.transform, tds.target_transform, tds.transforms = \
        [str(test.recordings[3].path)], [label], None, None, None
    import numpy.lib.recfunctions  # noqa: F401  (tonic's __getitem__ uses it without importing it)
    theirs, _ = tds[0]
    ours = formats.read_dvsgesture(test.recordings[3])
    assert all(np.array_equal(theirs[f], ours[f]) for f in ("x", "y", "p", "t"))
    train = load_dataset("dvsgesture", "train", root=tmp_path, timesteps=4, cache=False)
    val = load_dataset("dvsgesture", "val", root=tmp_path, timesteps=4, cache=False)
    assert (len(train), len(val)) == (44, 11)
    assert not {r.path for r in train.recordings} & {r.path for r in val.recordings}
    small = load_dataset("dvsgesture", "test", root=tmp_path, timesteps=2, downsample=4, cache=False)
    assert small.input_shape == (2, 32, 32) and small[0][0].shape == (2, 2, 32, 32) and small[0][0].sum() == 50
    assert len(written) == 66


def aedat2_bytes(x, y, p, t) -> bytes:
    """A DVS128 AER-DAT 2.0 file: '#' header lines, then big-endian (address, timestamp) uint32 pairs; jAER's
    address: bit 0 set for an OFF event (p = 0), x mirrored in bits 1..7, y in bits 8..14."""
    x, y, p = (np.asarray(a, dtype=np.uint32) for a in (x, y, p))
    address = ((127 - x) << 1) | (y << 8) | (1 - p)
    body = np.stack([address, np.asarray(t, dtype=np.uint32)], axis=1).astype(">u4").tobytes()
    return b"#!AER-DAT2.0\r\n# This is a raw AE data file\r\n# End Of ASCII Header\r\n" + body


def test_cifar10dvs_original_aedat_release(tmp_path):
    rng = np.random.default_rng(1)
    classes = formats.CIFAR10DVS.classes
    for c in classes:
        for k in range(5):
            path = tmp_path / "CIFAR10DVS" / c / f"cifar10_{c}_{k}.aedat"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(aedat2_bytes(*random_events(rng, 30, 128, 128)))
    parts = {s: load_dataset("cifar10dvs", s, root=tmp_path, timesteps=3, cache=False)
             for s in ("train", "val", "test")}
    assert [len(d) for d in parts.values()] == [32, 8, 10]  # test 20% of 50, val 20% of the other 40
    assert len(set().union(*({r.path for r in d.recordings} for d in parts.values()))) == 50
    ds = parts["test"]
    assert ds.num_classes == 10 and ds.input_shape == (2, 128, 128)
    x, label = ds[0]
    assert x.shape == (3, 2, 128, 128) and x.sum() == 30 and ds.recordings[0].path.parent.name == classes[label]
    one = tmp_path / "one" / "CIFAR10DVS" / "cat" / "a.aedat"
    one.parent.mkdir(parents=True)
    one.write_bytes(aedat2_bytes([5], [9], [1], [100]))
    frames = formats.read_cifar10dvs(formats.Recording(one, 3))
    assert (frames["x"][0], frames["y"][0], frames["p"][0], frames["t"][0]) == (5, 9, True, 100)
    raw = np.array([(9 << 8) | (10 << 1) | 0, 100, (9 << 8) | (10 << 1) | 1, 200], dtype=">u4").tobytes()
    one.write_bytes(b"#!AER-DAT2.0\r\n" + raw)  # bit 0 clear: ON (p = 1), set: OFF
    frames = formats.read_cifar10dvs(formats.Recording(one, 3))
    assert list(frames["p"]) == [1, 0] and list(frames["x"]) == [117, 117] and list(frames["y"]) == [9, 9]
    one.write_bytes(aedat2_bytes([5, 6], [9, 9], [1, 0], [100, 200])[:-3])
    with pytest.raises(BadEventFile, match="not a multiple of the 8-byte"):
        formats.read_cifar10dvs(formats.Recording(one, 3))


def test_cifar10dvs_aedat4_needs_the_aedat_package(tmp_path):
    pytest.importorskip("tonic")
    try:
        import aedat  # noqa: F401
        pytest.skip("aedat is installed; the missing-package message cannot be shown")
    except ImportError:
        pass
    path = tmp_path / "CIFAR10DVS" / "dog" / "x.aedat4"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"#!AER-DAT4.0\r\n")
    ds = load_dataset("cifar10dvs", "test", root=tmp_path, timesteps=2, cache=False, test_fraction=0.5)
    with pytest.raises(ImportError, match="pip install aedat"):
        ds[0]


def test_ncaltech101_release_layout(tmp_path):
    rng = np.random.default_rng(2)
    names = ["accordion", "airplanes", "BACKGROUND_Google"]
    for name in names:
        for k in range(5):
            x, y, p, t = random_events(rng, 40, 200, 150)
            path = tmp_path / "NCALTECH101" / "Caltech101" / name / f"image_{k + 1:04d}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(nmnist_bytes(x + 20, y + 10, p, t))  # offsets: tonic shifts to the minimum
    ds = load_dataset("ncaltech101", "test", root=tmp_path, timesteps=2, cache=False)
    assert ds.classes == tuple(sorted(names)) and ds.num_classes == 3 and ds.input_shape == (2, 180, 240)
    assert len(ds) == 3  # 20% of 15, one per class
    x, label = ds[0]
    assert x.shape == (2, 2, 180, 240) and x.sum() == 40 and ds.recordings[0].path.parent.name == ds.classes[label]
    assert x.sum(dim=(0, 1, 2)).nonzero().min() == 0  # shifted to start at x = 0


def write_shd(path: Path, samples: list[tuple[np.ndarray, np.ndarray, int]]) -> None:
    """An SHD HDF5 file: vlen spikes/times (s) and spikes/units, labels, extra/keys."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (len(samples),), dtype=h5py.vlen_dtype(np.float32))
        units = f.create_dataset("spikes/units", (len(samples),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (t, u, _) in enumerate(samples):
            times[i], units[i] = t, u
        f["labels"] = np.array([label for *_, label in samples], dtype=np.uint16)
        f["extra/keys"] = np.array([f"word-{k}".encode() for k in range(20)])


def test_shd_release_layout(tmp_path):
    import tonic.datasets

    rng = np.random.default_rng(3)

    def sample(label):
        n = int(rng.integers(5, 60))
        return np.sort(rng.uniform(0, 0.8, n)).astype(np.float32), rng.integers(0, 700, n).astype(np.uint16), label

    write_shd(tmp_path / "SHD" / "shd_train.h5", [sample(k % 20) for k in range(60)])
    test_samples = [sample(k % 20) for k in range(20)]
    write_shd(tmp_path / "SHD" / "shd_test.h5", test_samples)
    ds = load_dataset("shd", "test", root=tmp_path, timesteps=10, cache_dir=tmp_path / "cache")
    assert len(ds) == 20 and ds.input_shape == (700,) and ds.num_classes == 20 and ds.classes[3] == "word-3"
    for i in (0, 7):
        x, label = ds[i]
        assert x.shape == (10, 700) and label == test_samples[i][2] and x.sum() == len(test_samples[i][0])
        assert np.array_equal(x.sum(0).numpy(), np.bincount(test_samples[i][1], minlength=700))
    tds = tonic.datasets.SHD.__new__(tonic.datasets.SHD)  # tonic's reader on the same file agrees
    tds.location_on_system, tds.data_filename = str(tmp_path / "SHD"), "shd_test.h5"
    tds.transform = tds.target_transform = None
    theirs, target = tds[7]
    ours = formats.read_shd(ds.recordings[7])
    assert target == ds[7][1] and all(np.array_equal(theirs[f], ours[f]) for f in ("t", "x", "p"))
    train = load_dataset("shd", "train", root=tmp_path, timesteps=10, cache=False)
    assert len(train) == 48 and len(load_dataset("shd", "val", root=tmp_path, timesteps=10, cache=False)) == 12


@pytest.mark.parametrize("name, expected", [
    ("nmnist", "NMNIST/Train/<digit>/<index>.bin"),
    ("dvsgesture", "DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy"),
    ("cifar10dvs", "CIFAR10DVS/<class>/*.aedat4"),
    ("ncaltech101", "NCALTECH101/Caltech101/<class>/image_<NNNN>.bin"),
    ("shd", "SHD/shd_train.h5"),
])
def test_missing_root_names_path_layout_and_data_root(tmp_path, name, expected):
    with pytest.raises(FileNotFoundError) as err:
        load_dataset(name, "train", root=tmp_path / "nowhere")
    message = str(err.value)
    # the CLI cannot pass download=True: the message names what it can pass (issue 11)
    assert str(tmp_path / "nowhere") in message and expected in message and "--data-root" in message
    assert "download=True" not in message


def test_missing_test_split_is_a_clear_error(nmnist_root):
    with pytest.raises(FileNotFoundError, match=r"test split not found: .*NMNIST/Test.*--data-root"):
        load_dataset("nmnist", "test", root=nmnist_root)


def test_dataset_names_listed():
    assert DATASETS == ("digits", "nmnist", "dvsgesture", "cifar10dvs", "ncaltech101", "shd")


# ------------------------------------------------------------------------------------- framing and splits

def structured(x, y, p, t) -> np.ndarray:
    """Events as tonic's N-MNIST structured array (x, y, t, p)."""
    events = np.zeros(len(x), dtype=[("x", int), ("y", int), ("t", int), ("p", int)])
    events["x"], events["y"], events["t"], events["p"] = x, y, t, p
    return events


@given(st.integers(1, 300), st.integers(1, 12), st.integers(0, 2**32 - 1), st.integers(1, 10**7))
def test_frames_keep_every_event(n, timesteps, seed, t_max):
    rng = np.random.default_rng(seed)
    x, y, p, t = random_events(rng, n, 34, 34, t_max)
    frames = events_to_frames(structured(x, y, p, t), (34, 34, 2), timesteps)
    assert frames.shape == (timesteps, 2, 34, 34) and frames.sum() == n
    expected = np.zeros((2, 34, 34), dtype=int)
    np.add.at(expected, (p, y, x), 1)
    assert np.array_equal(frames.sum(0), expected)
    # events land in time order: the first event in bin 0, the last in bin T-1 (or earlier if all share a time)
    assert frames[0].sum() >= 1


@given(st.integers(1, 200), st.integers(1, 8), st.integers(0, 2**32 - 1), st.integers(1, 10**6))
def test_frames_with_fixed_duration_drop_only_later_events(n, timesteps, seed, duration_us):
    rng = np.random.default_rng(seed)
    x, y, p, t = random_events(rng, n, 34, 34, 10**6)
    frames = events_to_frames(structured(x, y, p, t), (34, 34, 2), timesteps, duration_us=duration_us)
    width = -(-duration_us // timesteps)
    assert frames.shape[0] == timesteps and frames.sum() == np.sum(t < t[0] + timesteps * width)


def test_check_events_reports_each_fault():
    ok = structured([1, 2], [3, 4], [0, 1], [10, 20])
    check_events(ok, (34, 34, 2), "f.bin")
    cases = [(ok[:0], "no events"), (structured([1, 2], [3, 4], [0, 1], [20, 10]), "timestamps decrease"),
             (structured([1, 34], [3, 4], [0, 1], [1, 2]), "x=34"),
             (structured([1, 2], [-1, 4], [0, 1], [1, 2]), "y=-1"),
             (structured([1, 2], [3, 4], [0, 2], [1, 2]), "p=2")]
    for events, words in cases:
        with pytest.raises(BadEventFile, match=words) as err:
            check_events(events, (34, 34, 2), "f.bin")
        assert "f.bin" in str(err.value)


@given(st.lists(st.integers(0, 5), min_size=1, max_size=300), st.floats(0.0, 0.9), st.integers(0, 10**6))
def test_stratified_holdout_properties(labels, fraction, seed):
    labels = np.array(labels)
    kept, held = stratified_holdout(labels, fraction, np.random.default_rng(seed))
    assert len(held) == held_out_count(len(labels), fraction)
    assert not set(kept) & set(held) and len(kept) + len(held) == len(labels)
    for c in np.unique(labels):
        share = np.sum(labels[held] == c)
        assert abs(share - fraction * np.sum(labels == c)) < 1 + 1e-9
    again = stratified_holdout(labels, fraction, np.random.default_rng(seed))
    assert np.array_equal(again[1], held)


@given(st.lists(st.integers(0, 3), min_size=3, max_size=200), st.integers(0, 100))
def test_three_way_split_partitions_the_samples(labels, seed):
    kw = {"has_test": False, "val_fraction": 0.2, "test_fraction": 0.2, "seed": seed}
    parts = [split_indices(labels, s, **kw) for s in ("train", "val", "test")]
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(labels)))


def test_frame_cache_writes_atomically_and_never_pickles(tmp_path):
    cache = FrameCache(tmp_path, "toy")
    f = tmp_path / "events.bin"
    f.write_bytes(b"12345")
    key = cache.key(f, "events.bin", None, {"timesteps": 2})
    assert cache.get(key, (2, 3)) is None
    cache.put(key, np.arange(6).reshape(2, 3))
    assert cache.get(key, (2, 3)).tolist() == [[0, 1, 2], [3, 4, 5]] and cache.get(key, (3, 2)) is None
    assert cache.key(f, "events.bin", None, {"timesteps": 3}) != key
    assert [p.name for p in cache.path(key).parent.iterdir()] == [f"{key}.npy"]
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    shutil.copy(obj, cache.path(key))
    assert cache.get(key, (1,)) is None  # a pickled array is refused, not unpickled


def test_recorded_options_refuse_caps_and_windows_that_are_not_positive():
    from qnoise.data import check_data_options

    assert check_data_options({"clip": 1, "duration_us": 150000.5}) == {"clip": 1, "duration_us": 150000.5}
    for key, value in (("clip", 0), ("clip", -2.0), ("duration_us", float("inf"))):
        with pytest.raises(ValueError, match=f"checkpoint: {key} must be a finite number > 0"):
            check_data_options({key: value}, "checkpoint")
