"""Data a user brings (issue 11): .npz frames, folders of event recordings with labels, tensors given to train;
a checkpoint trained on them records ``user:<name>`` and still converts, evaluates and analyses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from qnoise.data import load_dataset
from qnoise.data.user import UserDataNeeded

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nmnist-1k" / "NMNIST" / "Train"
_EV = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])


def _events(rng, n=200, w=16, h=12):
    ev = np.zeros(n, dtype=_EV)
    ev["x"], ev["y"] = rng.integers(0, w, n), rng.integers(0, h, n)
    ev["t"], ev["p"] = np.sort(rng.integers(0, 10_000, n)), rng.integers(0, 2, n)
    return ev


def test_npz_frames_and_static_images(tmp_path):
    x = np.random.default_rng(0).random((60, 4, 2, 6, 6)).astype(np.float32)
    y = np.arange(60) % 3
    np.savez(tmp_path / "frames.npz", frames=x, labels=y)
    ds = load_dataset(str(tmp_path / "frames.npz"), "train", timesteps=4)
    assert ds[0][0].shape == (4, 2, 6, 6) and ds.num_classes == 3 and ds.name == "user:frames.npz"
    np.savez(tmp_path / "images.npz", images=x[:, 0], labels=y)
    item = load_dataset(str(tmp_path / "images.npz"), "test", timesteps=4)[0][0]
    assert item.shape == (4, 2, 6, 6) and all(torch.equal(item[t], item[0]) for t in range(4))  # repeated to T
    with pytest.raises(ValueError, match=r"frames.npz: frames holds T = 4 frames per sample, but T = 5"):
        load_dataset(str(tmp_path / "frames.npz"), "train", timesteps=5)  # frames cannot be re-binned
    (tmp_path / "corrupt.npz").write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match=r"corrupt.npz: not a readable .npz"):
        load_dataset(str(tmp_path / "corrupt.npz"), "train", timesteps=4)
    rare = np.r_[np.arange(40) % 2, [2]]  # class 2 has one sample: it lands in one split only
    np.savez(tmp_path / "rare.npz", images=np.zeros((41, 3), np.float32), labels=rare)
    counts = {split: load_dataset(str(tmp_path / "rare.npz"), split, timesteps=2).num_classes
              for split in ("train", "val", "test")}
    assert set(counts.values()) == {3}, counts
    np.savez(tmp_path / "bad.npz", pictures=x, labels=y)
    with pytest.raises(ValueError, match="must hold 'frames'"):
        load_dataset(str(tmp_path / "bad.npz"), "train")


def test_event_folder_with_class_subfolders_and_labels_csv(tmp_path):
    rng = np.random.default_rng(1)
    for c in range(3):
        (tmp_path / "ev" / f"class{c}").mkdir(parents=True)
        for i in range(10):
            np.save(tmp_path / "ev" / f"class{c}" / f"{i}.npy", _events(rng))
    ds = load_dataset(str(tmp_path / "ev"), "train", timesteps=5, cache_dir=tmp_path / "cache")
    x, label = ds[0]
    assert x.shape == (5, 2, 12, 16) and ds.classes == ("class0", "class1", "class2")
    assert float(x.sum()) == 200  # every event counted once
    # a labels file with [E, 4] arrays and a sensor.json
    flat = tmp_path / "flat"
    flat.mkdir()
    rows = ["file,label"]
    for i in range(12):
        ev = _events(rng)
        np.save(flat / f"r{i}.npy", np.stack([ev["x"], ev["y"], ev["t"], ev["p"]], 1))
        rows.append(f"r{i}.npy,{i % 2}")
    (flat / "labels.csv").write_text("\n".join(rows) + "\n")
    (flat / "sensor.json").write_text('{"sensor_size": [20, 20, 2]}')
    ds = load_dataset(str(flat), "test", timesteps=3, cache=False)
    assert ds[0][0].shape == (3, 2, 20, 20) and ds.num_classes == 2
    (flat / "labels.csv").write_text("file,label\n../outside.npy,0\n")
    with pytest.raises(FileNotFoundError, match="not a file inside"):
        load_dataset(str(flat), "test", timesteps=3, cache=False)


def test_nmnist_bin_folder_as_user_data(tmp_path):
    if not SHARED.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED} is missing")
        pytest.skip("shared N-MNIST subset not present")
    ds = load_dataset(str(SHARED), "val", timesteps=4, limit=20, cache_dir=tmp_path)
    assert ds[0][0].shape == (4, 2, 34, 34) and ds.num_classes == 10


def test_recorded_user_name_needs_the_path():
    with pytest.raises(UserDataNeeded, match="--data PATH"):
        load_dataset("user:mnist5k", "test")


def test_train_takes_tensors_and_datasets_and_the_checkpoint_still_works(tmp_path):
    from qnoise.io import load_checkpoint
    from qnoise.train import TrainConfig, convert_checkpoint, train

    g = torch.Generator().manual_seed(0)
    X = torch.rand(90, 3, 12, generator=g)
    y = torch.arange(90) % 3
    for c in range(3):
        X[y == c, :, 4 * c:4 * c + 4] += 1.0
    cfg = dict(model="mlp", epochs=1, timesteps=3, progress=False, model_options={"hidden": [16]})
    m = train(TrainConfig(**cfg), tmp_path / "direct", data={"train": (X[:60], y[:60]), "test": (X[60:], y[60:])})
    assert m.qnoise_checkpoint["dataset"]["name"] == "user:data"
    assert "test_accuracy" in m.qnoise_checkpoint["metrics"]
    np.savez(tmp_path / "mine.npz", frames=X.numpy(), labels=y.numpy())
    ds = load_dataset(str(tmp_path / "mine.npz"), "train", timesteps=3)
    m = train(TrainConfig(**cfg), tmp_path / "from_dataset", data=ds)
    assert m.qnoise_checkpoint["dataset"]["name"] == "user:mine.npz"
    # an ANN trained on the user's data converts without it (nothing to fine-tune), and evaluates / analyses with it
    ann = train(TrainConfig(**{**cfg, "mode": "ann", "act_bits": 2, "dataset": str(tmp_path / "mine.npz")}),
                tmp_path / "ann")
    assert ann.qnoise_checkpoint["dataset"]["name"] == "user:mine.npz"
    with pytest.warns(UserWarning, match="own data"):
        convert_checkpoint(tmp_path / "ann", tmp_path / "snn", progress=False)
    assert load_checkpoint(tmp_path / "snn").qnoise_checkpoint["dataset"]["name"] == "user:mine.npz"
    cli = [sys.executable, "-m", "qnoise.cli"]
    r = subprocess.run([*cli, "evaluate", "--checkpoint", str(tmp_path / "snn")], capture_output=True, text=True)
    assert r.returncode == 2 and "--data PATH" in r.stderr
    r = subprocess.run([*cli, "evaluate", "--checkpoint", str(tmp_path / "snn"), "--data", str(tmp_path / "mine.npz")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*cli, "analyze", "--checkpoint", str(tmp_path / "snn"), "--data", str(tmp_path / "mine.npz"),
                        "--weight-bits", "4", "--limit", "16"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_given_data_is_checked():
    from qnoise.train.given import given_splits

    with pytest.raises(ValueError, match="do not fit"):
        given_splits((torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)), "x")
    with pytest.raises(ValueError, match="integers"):
        given_splits((torch.zeros(4, 2, 3), torch.zeros(4)), "x")
    with pytest.raises(ValueError, match="splits must be"):
        given_splits({"training": (torch.zeros(4, 2, 3), torch.zeros(4, dtype=torch.long))}, "x")
    with pytest.raises(ValueError, match=r"labels hold 1099511627776; labels must be class indices 0..99999"):
        given_splits((torch.zeros(4, 2, 3), torch.tensor([0, 1, 2, 2**40])), "x")  # an output unit per class


def test_given_tensors_run_at_the_configured_timesteps():
    """A static X given as X.unsqueeze(1) is repeated to the run's T (it trained one step while the checkpoint
    said T); frames of another T are refused, as are splits of different input shapes."""
    from qnoise.train.given import given_splits

    y = torch.arange(12) % 3
    (train, _, _) = given_splits((torch.rand(12, 1, 6), y), "user:t", 5)
    assert train[0].shape == (12, 5, 6) and torch.equal(train[0][:, 4], train[0][:, 0])
    with pytest.raises(ValueError, match=r"user:t/train: X holds T = 3 steps per sample, but .* T = 5"):
        given_splits((torch.rand(12, 3, 6), y), "user:t", 5)
    with pytest.raises(ValueError, match="input shapes differ"):
        given_splits({"train": (torch.rand(12, 5, 6), y), "val": (torch.rand(12, 5, 7), y)}, "user:t", 5)


def test_labels_csv_rows_are_checked(tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / "ev"
    folder.mkdir()
    for i in range(4):
        np.save(folder / f"{i}.npy", _events(rng))
    (folder / "labels.csv").write_text("file,label\n0.npy,0\n1.npy,1\n0.npy,1\n")
    with pytest.raises(ValueError, match=r"labels.csv line 4: 0.npy is listed twice"):
        load_dataset(str(folder), "train", timesteps=2, cache=False)
    (folder / "notes.txt").write_text("mine")
    (folder / "labels.csv").write_text("file,label\n0.npy,0\nnotes.txt,1\n")
    with pytest.raises(ValueError, match=r"labels.csv line 3: notes.txt is not a recording"):
        load_dataset(str(folder), "train", timesteps=2, cache=False)


def test_a_torch_device_is_checked_like_its_name():
    from qnoise.device import resolve_device

    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="asked for CUDA"):
            resolve_device(torch.device("cuda"))


def test_an_npz_over_the_memory_budget_is_refused_before_its_frames_are_read(tmp_path, monkeypatch):
    """The frames' size comes from the array's header: a file too large for the budget is refused naming the file
    and the array, and its frames are never read (counted on numpy's NpzFile)."""
    x = np.zeros((200, 4, 2, 16, 16), np.uint8)  # 409,600 bytes stored; as float32 the split is 4x its share
    np.savez_compressed(tmp_path / "big.npz", frames=x, labels=np.arange(200) % 2)
    read = []
    original = np.lib.npyio.NpzFile.__getitem__
    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", lambda self, key: read.append(key) or original(self, key))
    monkeypatch.setenv("QNOISE_MAX_GIB", str(0.5 * 2**20 / 2**30))  # 0.5 MiB
    with pytest.raises(ValueError, match=r"big.npz: reading frames \[200, 4, 2, 16, 16\] uint8 and its train split"):
        load_dataset(str(tmp_path / "big.npz"), "train", timesteps=4)
    assert "frames" not in read and "labels" in read
    monkeypatch.setenv("QNOISE_MAX_GIB", str(2 * 2**20 / 2**30))  # 0.4 MiB stored + 128 samples as float32: 1.4 MiB
    ds = load_dataset(str(tmp_path / "big.npz"), "train", timesteps=4)
    assert len(ds) == 128 and "frames" in read


def test_npz_keys_members_and_suffixes(tmp_path):
    y = np.arange(12) % 2
    np.savez(tmp_path / "x.npz", x=np.zeros((12, 3, 4), np.float32), labels=y)
    with pytest.raises(ValueError, match=r"x.npz holds an array 'x': name it 'frames' \[N, T, ...\].*or 'images'"):
        load_dataset(str(tmp_path / "x.npz"), "train", timesteps=3)
    np.savez(tmp_path / "cut.npz", frames=np.zeros((12, 3, 4), np.float32), labels=y)
    data = (tmp_path / "cut.npz").read_bytes()
    member = data.index(b"frames.npy")  # the frames' local header: cut the file inside that member's data
    (tmp_path / "cut.npz").write_bytes(data[:member + 200])
    with pytest.raises(ValueError, match=r"cut.npz: not a readable .npz"):
        load_dataset(str(tmp_path / "cut.npz"), "train", timesteps=3)
    np.savez(tmp_path / "words.npz", images=np.zeros((12, 4), np.float32), labels=np.array(["a", "b"] * 6))
    with pytest.raises(ValueError, match=r"words.npz: labels must be integers 0..K-1 of shape \[N\], got dtype <U1"):
        load_dataset(str(tmp_path / "words.npz"), "train", timesteps=3)
    with open(tmp_path / "UPPER.NPZ", "wb") as f:  # np.savez would append .npz to the name
        np.savez(f, images=np.zeros((12, 4), np.float32), labels=y)
    assert len(load_dataset(str(tmp_path / "UPPER.NPZ"), "train", timesteps=3)) > 0
    rng = np.random.default_rng(4)
    for c in range(2):  # recordings whose suffix is upper case (a camera's or an OS's habit) are recordings
        (tmp_path / "ev" / f"c{c}").mkdir(parents=True)
        for i in range(5):
            with open(tmp_path / "ev" / f"c{c}" / f"{i}.NPY", "wb") as f:
                np.save(f, _events(rng))
    ds = load_dataset(str(tmp_path / "ev"), "train", timesteps=2, cache=False)
    assert len(ds) > 0 and ds[0][0].shape == (2, 2, 12, 16)


def test_labels_that_are_not_class_indices_are_refused_naming_the_data():
    from qnoise.probe import analyze
    from qnoise.models import build_model
    from qnoise.train.given import given_splits

    X = torch.rand(6, 2, 5)
    for labels in (["cat", "dog"] * 3, np.array(["cat", "dog"] * 3), [0.0, 1.0] * 3):
        with pytest.raises(ValueError, match=r"user:t/train: labels must be class indices 0..K-1 \(got "):
            given_splits((X, labels), "user:t", 2)

    class Named(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return X[i], ("cat", "dog")[i % 2]

    with pytest.raises(ValueError, match=r"user:t/train: labels must be class indices 0..K-1 \(got 'cat' \(str\)\)"):
        given_splits(Named(), "user:t", 2)
    model = build_model("mlp", (5,), 2).eval()
    with pytest.raises(ValueError, match=r"Named items 0..5: labels must be class indices"):
        analyze(model, Named(), progress=False)
    with pytest.raises(ValueError, match=r"\(X, y\): y: labels must be class indices"):
        analyze(model, (X, ["cat", "dog"] * 3), progress=False)
    train = given_splits((X, [True, False] * 3), "user:t", 2)[0]  # bools and numpy integers are indices
    assert train[1].tolist() == [1, 0] * 3
    assert given_splits((X, np.arange(6) % 2), "user:t", 2)[0][1].dtype == torch.long


def _labelled_folder(folder, n=8, rng=None):
    """``folder`` holding n ``.npy`` recordings ``0.npy`` .. (labels written by the test)."""
    rng = rng or np.random.default_rng(5)
    folder.mkdir(parents=True)
    for i in range(n):
        np.save(folder / f"{i}.npy", _events(rng))
    return folder


def test_float_events_must_hold_whole_numbers(tmp_path):
    """[E, 4] float events holding 3.0 are read; times in seconds or x = 3.7 were cast to integers silently
    (every event in bin 0): refused, naming the file and the field."""
    from qnoise.data.formats import Recording
    from qnoise.data.user import read_npy_events

    rng = np.random.default_rng(6)
    folder = tmp_path / "ev"
    folder.mkdir()
    for i in range(8):
        ev = _events(rng)
        np.save(folder / f"{i}.npy", np.stack([ev["x"], ev["y"], ev["t"], ev["p"]], 1).astype(np.float64))
    (folder / "labels.csv").write_text("".join(f"{i}.npy,{i % 2}\n" for i in range(8)))
    ds = load_dataset(str(folder), "train", timesteps=4, cache=False)
    assert float(ds[0][0].sum()) == 200 and ds[0][0].shape == (4, 2, 12, 16)
    seconds = np.load(folder / "3.npy")
    seconds[:, 2] /= 1e6
    np.save(folder / "3.npy", seconds)
    with pytest.raises(ValueError, match=r"3.npy: field t holds .*, not a whole number"):
        load_dataset(str(folder), "train", timesteps=4, cache=False)
    ev = np.zeros(3, dtype=[("x", float), ("y", float), ("t", float), ("p", float)])
    ev["x"] = [1.0, 3.7, 2.0]
    np.save(tmp_path / "odd.npy", ev)
    with pytest.raises(ValueError, match=r"odd.npy: field x holds 3.7, not a whole number"):
        read_npy_events(Recording(tmp_path / "odd.npy", 0))


def test_a_builtin_name_is_never_a_local_folder(tmp_path, monkeypatch):
    """A folder named like a built-in dataset in the working directory does not shadow it ("digits" was read as
    the user's empty folder); ``./digits`` still means the folder, and checkpoints record each as such."""
    from qnoise.data.digits import DigitsDataset
    from qnoise.train.splits import dataset_record

    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits").mkdir()
    (tmp_path / "nmnist").mkdir()
    assert isinstance(load_dataset("digits", "train", timesteps=2, limit=10), DigitsDataset)
    with pytest.raises(FileNotFoundError, match=r"N-MNIST not found: .*elsewhere"):
        load_dataset("nmnist", "train", root=tmp_path / "elsewhere")
    assert dataset_record("digits", 2, None, {}, "static")["name"] == "digits"
    _labelled_folder(tmp_path / "digits" / "a", 3)
    _labelled_folder(tmp_path / "digits" / "b", 3)
    for path in ("./digits", str(tmp_path / "digits"), Path("digits")):
        ds = load_dataset(path, "train", timesteps=2, cache=False)
        assert ds.name == "user:digits" and ds.classes == ("a", "b")
        assert dataset_record(path, 2, None, {}, "sequence")["name"] == "user:digits"


def test_sensor_json_is_checked(tmp_path):
    """A sensor.json that is a list crashed (AttributeError), bad JSON was reported without the file, and true was
    taken as width 1: each is refused naming sensor.json."""
    folder = _labelled_folder(tmp_path / "ev")
    (folder / "labels.csv").write_text("".join(f"{i}.npy,{i % 2}\n" for i in range(8)))
    bad_size = r"sensor.json: sensor_size must be \[W, H, P\] of positive integers .*got "
    for text, message in (("[34, 34, 2]", r"sensor.json must hold a JSON object, got list"),
                          ("{not json", r"sensor.json is not valid JSON"),
                          ('{"sensor_size": [true, 34, 2]}', bad_size + r"\[True, 34, 2\]"),
                          ('{"size": [34, 34, 2]}', bad_size + "None")):
        (folder / "sensor.json").write_text(text)
        with pytest.raises(ValueError, match=message):
            load_dataset(str(folder), "train", timesteps=2, cache=False)
    (folder / "sensor.json").write_text('{"sensor_size": [20, 20, 2]}')
    assert load_dataset(str(folder), "train", timesteps=2, cache=False)[0][0].shape == (2, 2, 20, 20)


def test_labels_above_the_class_bound_are_refused(tmp_path):
    """A class name is made for every index up to the largest label, so a stray 2**40 hung the loader: labels
    must be below MAX_CLASSES (named with the file and the value); MAX_CLASSES - 1 itself is taken."""
    from qnoise.data import user

    MAX_CLASSES = 100_000  # documented; a literal here so that the test runs (and fails) on code without the bound
    assert getattr(user, "MAX_CLASSES", MAX_CLASSES) == MAX_CLASSES
    images = np.zeros((4, 3), np.float32)
    np.savez(tmp_path / "top.npz", images=images, labels=np.array([0, 1, 0, MAX_CLASSES - 1]))
    assert load_dataset(str(tmp_path / "top.npz"), "train", timesteps=2).num_classes == MAX_CLASSES
    for big in (MAX_CLASSES, 2**40):
        np.savez(tmp_path / "big.npz", images=images, labels=np.array([0, 1, 0, big]))
        with pytest.raises(ValueError, match=rf"big.npz: labels holds the label {big}; labels must be class "
                                             rf"indices 0..{MAX_CLASSES - 1}"):
            load_dataset(str(tmp_path / "big.npz"), "train", timesteps=2)
    folder = _labelled_folder(tmp_path / "ev")
    rows = "".join(f"{i}.npy,{i % 2}\n" for i in range(1, 8))
    for big in (str(MAX_CLASSES), str(10**8), "9" * 5000):
        (folder / "labels.csv").write_text(f"file,label\n0.npy,{big}\n{rows}")
        with pytest.raises(ValueError, match=rf"labels.csv line 2: label {big[:20]} is too large"):
            load_dataset(str(folder), "train", timesteps=2, cache=False)


def test_a_headerless_labels_csv_checks_its_first_row(tmp_path):
    """The first row is a header only when it is not a recording: '0.npy,zero' was dropped silently as one."""
    folder = _labelled_folder(tmp_path / "ev")
    rows = "".join(f"{i}.npy,{i % 2}\n" for i in range(1, 8))
    (folder / "labels.csv").write_text(f"0.npy,zero\n{rows}")
    with pytest.raises(ValueError, match=r"labels.csv line 1: expected 'file,label' with an integer label"):
        load_dataset(str(folder), "train", timesteps=2, cache=False)
    (folder / "labels.csv").write_text(f"\nname,class\n0.npy,0\n{rows}")  # a header after a blank line
    assert load_dataset(str(folder), "train", timesteps=2, cache=False).num_classes == 2
    (folder / "labels.csv").write_text(f"gone.npy,0\n{rows}")  # a first row with an integer label is a row
    with pytest.raises(FileNotFoundError, match=r"labels.csv: 'gone.npy' is not a file inside"):
        load_dataset(str(folder), "train", timesteps=2, cache=False)


def test_labels_must_be_ascii_digits(tmp_path):
    """'²' passed str.isdigit() then failed in int() naming nothing; '٣' (Arabic-Indic 3) was taken as 3."""
    folder = _labelled_folder(tmp_path / "ev")
    rows = "".join(f"{i}.npy,{i % 2}\n" for i in range(1, 8))
    for label in ("²", "٣", "-1", "1.0"):
        (folder / "labels.csv").write_text(f"file,label\n{rows}0.npy,{label}\n")
        with pytest.raises(ValueError, match=r"labels.csv line 9: expected 'file,label' with an integer label "
                                             r"\(digits 0-9\)"):
            load_dataset(str(folder), "train", timesteps=2, cache=False)


def test_an_empty_class_subfolder_is_refused(tmp_path):
    """Every subfolder is a class: an empty one (a stray __MACOSX, a failed copy) added a class silently."""
    rng = np.random.default_rng(7)
    for c in ("a", "b"):
        _labelled_folder(tmp_path / "ev" / c, 3, rng)
    (tmp_path / "ev" / "c").mkdir()
    with pytest.raises(ValueError, match=r"ev: class subfolder 'c' holds no recordings"):
        load_dataset(str(tmp_path / "ev"), "train", timesteps=2, cache=False)
    (tmp_path / "ev" / "c").rmdir()
    assert load_dataset(str(tmp_path / "ev"), "train", timesteps=2, cache=False).classes == ("a", "b")
