"""Every dashboard page under Streamlit's AppTest: it renders without exceptions or error messages, and a
control change changes what it draws. Runs on a tiny checkpoint made here (fast), plus the bundled
sample when `sample_data/` holds it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from dashboard_fixtures import sweep_frame, write_sweep_dir

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "dashboard" / "app.py")
SAMPLE = Path(os.environ.get("QNOISE_TEST_SAMPLE_DIR", REPO / "sample_data"))  # another copy, for trying
TIMEOUT = 120


def make_checkpoint(path: Path, timesteps: int = 4, hidden=(32, 24)) -> Path:
    from qnoise.io import save_checkpoint
    from qnoise.models import build_model

    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, neuron={"v_init": "half"}, hidden=list(hidden))
    return save_checkpoint(model, path, dataset={"name": "digits"}, timesteps=timesteps,
                           metrics={"test_accuracy": 0.5, "test_samples": 359})


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A folder like the sample: one SNN checkpoint and a sweep run over it (synthetic numbers)."""
    root = tmp_path_factory.mktemp("dash")
    make_checkpoint(root / "tiny-mlp")
    write_sweep_dir(root / "sweep", sweep_frame(model="tiny-mlp", weight_bits=(2, 4, 8), timesteps=(2, 4)))
    return root


@pytest.fixture(scope="session")
def bare_dir(tmp_path_factory) -> Path:
    """A single checkpoint and no sweep: the Overview analyses a small grid itself."""
    root = tmp_path_factory.mktemp("bare")
    return make_checkpoint(root / "tiny-mlp")


def open_app(folder: Path, page: str | None = None, monkeypatch=None) -> AppTest:
    os.environ["QNOISE_SAMPLE_DIR"] = str(folder)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(f"views/{page}.py")
        at.run()
    return at


def specs(at: AppTest) -> list[str]:
    return [c.proto.spec for c in at.get("plotly_chart")]


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.fixture(scope="session")
def grid_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("grid-cache")


@pytest.fixture(autouse=True)
def _env(grid_cache, monkeypatch):
    """Each test sets the folder the app opens on; analysed grids go to a temporary cache."""
    monkeypatch.setenv("QNOISE_DASHBOARD_CACHE", str(grid_cache))
    monkeypatch.delenv("QNOISE_SAMPLE_DIR", raising=False)
    yield


# page, widget kind, widget key, new value, minimum number of figures
CHANGES = [
    ("overview", "selectbox", "ov_heat_metric", "agreement", 3),
    ("layer_noise", "selectbox", "ln_metric", "err_seq_mse", 4),
    ("spikes", "selectbox", "sp_layer", "act2", 5),
    ("explore", "selectbox", "exA_w", 4, 6),
    ("diagnose", "select_slider", "cfg_t", 8, 3),
    ("compare", "selectbox", "cmp_metric", "agreement", 2),
    ("budget", "selectbox", "bg_cost", "energy_pj", 1),
    ("learn", "slider", "learn_x", 0.9, 3),
]


@pytest.mark.parametrize("page, kind, key, value, n_figs", CHANGES, ids=[c[0] for c in CHANGES])
def test_page_renders_and_responds(data_dir, page, kind, key, value, n_figs):
    at = open_app(data_dir, None if page == "overview" else page)
    assert_clean(at)
    before = specs(at)
    assert len(before) >= n_figs
    getattr(at, kind)(key=key).set_value(value).run()
    assert_clean(at)
    after = specs(at)
    assert len(after) >= n_figs
    assert before != after, f"changing {key} on {page} changed no figure"


def test_overview_analyses_a_grid_without_a_sweep(bare_dir, grid_cache):
    at = open_app(bare_dir.parent)
    assert_clean(at)
    heat = [s for s in specs(at) if '"heatmap"' in s]
    assert heat, "the bits x timesteps heatmap is drawn from the grid analysed here"
    assert "2-bit" in heat[0] and "float" in heat[0]
    (kept,) = grid_cache.glob("grid-tiny-mlp-*.parquet")  # kept on disk: the next start is instant
    assert set(pd.read_parquet(kept)["timesteps"]) == {1, 2, 4, 8, 16}
    again = open_app(bare_dir.parent)
    assert_clean(again)
    assert [s for s in specs(again) if '"heatmap"' in s] == heat


def test_a_bad_folder_shows_a_message_and_the_app_keeps_running(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("QNOISE_DASHBOARD_DATA", str(tmp_path))  # allowed, as `qnoise dashboard --data` does
    at = open_app(data_dir)
    at.sidebar.text_input(key="folder").set_value(str(tmp_path / "nowhere")).run()
    assert not at.exception
    assert any("does not exist" in e.value for e in at.error)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hello")
    at.sidebar.text_input(key="folder").set_value(str(tmp_path / "junk")).run()
    assert not at.exception
    assert any("holds no qnoise checkpoint" in e.value for e in at.error)
    at.switch_page("views/learn.py").run()  # pages that need no data still work
    assert not at.exception and len(specs(at)) >= 3


def test_a_corrupt_results_table_is_a_message(tmp_path, data_dir):
    make_checkpoint(tmp_path / "m")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    at = open_app(tmp_path)
    assert not at.exception
    assert any("not a readable parquet" in e.value for e in at.error)


def test_upload_validation(tmp_path, data_dir):
    from dashboard import sources

    ckpt = data_dir / "tiny-mlp"
    good = {n: (ckpt / n).read_bytes() for n in sources.UPLOAD_NAMES}
    folder = sources.save_upload(good, parent=tmp_path)
    assert (folder / "model.safetensors").is_file()
    with pytest.raises(ValueError, match="missing"):
        sources.save_upload({"config.json": good["config.json"]}, parent=tmp_path)
    with pytest.raises(ValueError, match="unexpected"):
        sources.save_upload({**good, "model.pt": b"\x80\x04pickle"}, parent=tmp_path)
    with pytest.raises(ValueError, match="limit"):
        sources.save_upload(good, max_bytes=100, parent=tmp_path)
    with pytest.raises(ValueError, match="not valid JSON"):
        sources.save_upload({**good, "config.json": b"{nope"}, parent=tmp_path)
    cfg = json.loads(good["config.json"])
    cfg["model"]["hidden"] = [16, 24]  # shapes no longer match the tensors
    with pytest.raises(ValueError, match="not a valid qnoise checkpoint"):
        sources.save_upload({**good, "config.json": json.dumps(cfg).encode()}, parent=tmp_path)
    with pytest.raises(ValueError, match="not a valid"):
        sources.save_upload({**good, "model.safetensors": b"garbage"}, parent=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # rejected uploads leave nothing behind


def test_sessions_keep_their_own_controls(data_dir):
    a = open_app(data_dir, "learn")
    b = open_app(data_dir, "learn")
    a.slider(key="learn_t").set_value(3).run()
    b.run()
    assert a.slider(key="learn_t").value == 3 and b.slider(key="learn_t").value == 7


@pytest.mark.skipif(not (SAMPLE / "index.json").is_file(), reason="sample_data/ not generated yet "
                    "(`qnoise sample-data`)")
def test_opens_on_the_bundled_sample(monkeypatch):
    """No folder set: the app opens on sample_data/ and analyses its first SNN (Layer noise: one analysis;
    the Overview's grid is covered on the tiny model above)."""
    if SAMPLE != REPO / "sample_data":
        monkeypatch.setenv("QNOISE_SAMPLE_DIR", str(SAMPLE))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page("views/layer_noise.py")
    at.run()
    assert_clean(at)
    assert "digits-snn" in at.sidebar.selectbox(key="checkpoint_label").value
    assert str(SAMPLE) in at.sidebar.text_input(key="folder").value
    before = specs(at)
    assert any('"heatmap"' in s for s in before)
    at.selectbox(key="cfg_w").set_value(2).run()
    assert_clean(at)
    assert specs(at) != before


def test_models_are_loaded_once_and_shared(data_dir):
    from dashboard import state

    a, lock_a = state.load_model(data_dir / "tiny-mlp")
    b, lock_b = state.load_model(str(data_dir / "tiny-mlp"))
    assert a is b and lock_a is lock_b
    assert not any(p.requires_grad for p in a.parameters())  # shared read-only


def test_upload_in_the_sidebar(data_dir, tmp_path):
    """A valid upload becomes the chosen model; an invalid one is a message and changes nothing."""
    ckpt = data_dir / "tiny-mlp"
    at = open_app(data_dir, "layer_noise")
    at.sidebar.file_uploader(key="upload_files").set_value(
        [("config.json", b"{broken", "application/json"),
         ("model.safetensors", (ckpt / "model.safetensors").read_bytes(), "application/octet-stream")]).run()
    at.sidebar.button(key="upload_go").click().run()
    assert not at.exception
    assert any("Upload rejected" in e.value and "not valid JSON" in e.value for e in at.error)
    assert at.sidebar.selectbox(key="checkpoint_label").value == "tiny-mlp"
    at.sidebar.file_uploader(key="upload_files").set_value(
        [("config.json", (ckpt / "config.json").read_bytes(), "application/json"),
         ("model.safetensors", (ckpt / "model.safetensors").read_bytes(), "application/octet-stream")]).run()
    at.sidebar.button(key="upload_go").click().run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="checkpoint_label").value == "uploaded: 1"
    assert any('"heatmap"' in s for s in specs(at))


def test_layer_noise_compares_a_model_without_an_ann_twin_with_the_float_snn(tmp_path):
    """A LIF model has no ANN twin: the page compares it with the float SNN instead, and says so and why."""
    from qnoise.io import save_checkpoint
    from qnoise.models import build_model

    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, neuron={"type": "lif", "v_init": "half"}, hidden=[16])
    save_checkpoint(model, tmp_path / "lif-mlp", dataset={"name": "digits"}, timesteps=4)
    at = open_app(tmp_path, "layer_noise")
    assert not at.exception, [e.value for e in at.exception]
    assert any("no ANN twin" in i.value and "reference='snn'" in i.value for i in at.info), [i.value for i in at.info]
    assert not at.error, [e.value for e in at.error]  # the terms against the float SNN are drawn
