"""Issue 13's wrong pictures, each under Streamlit's AppTest: controls that follow the model and persist across
pages, shared scales in Explore, Overview's float/T/sample counts/units, Layer noise's "float" and sensitivity in
points, Spikes' levels and subset, Diagnose's band on the layer the hints name, Budget's KiB and intervals, Learn's
temperature, a sweep folder that keeps its model, and the page report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from test_dashboard_app import assert_clean, make_checkpoint, open_app, specs
from test_dashboard_app import _env, grid_cache  # noqa: F401  (autouse: each test sets its own folder)

from streamlit.testing.v1 import AppTest  # noqa: E402  (test_dashboard_app skips without streamlit)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory) -> Path:
    """Two SNNs with different T (4 and 7): switching between them must switch T."""
    root = tmp_path_factory.mktemp("two")
    make_checkpoint(root / "a-mlp-t4", timesteps=4)
    make_checkpoint(root / "b-mlp-t7", timesteps=7, hidden=(600, 24))
    return root


def figure(at: AppTest, needle: str) -> dict:
    """The first plotly figure whose spec mentions ``needle``, as a dict."""
    for s in specs(at):
        if needle in s:
            return json.loads(s)
    raise AssertionError(f"no figure mentions {needle!r}: {[json.loads(s)['layout'].get('title') for s in specs(at)]}")


def arr(value) -> np.ndarray:
    """A plotly JSON array: a list, or a typed array ``{"dtype", "bdata", "shape"}`` (plotly >= 6)."""
    if isinstance(value, dict) and "bdata" in value:
        import base64

        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return out.reshape([int(n) for n in str(shape).split(",")]) if shape else out
    return np.asarray(value, dtype=float)


def title(fig: dict) -> str:
    return (fig["layout"].get("title") or {}).get("text", "")


def test_t_follows_the_model_on_every_page(two_models):
    """digits-snn-3bit (T = 7) was analysed at the previous model's T = 3: T now resets to each model's own."""
    at = open_app(two_models, "layer_noise")
    assert_clean(at)
    assert at.sidebar.selectbox(key="checkpoint_label").value == "a-mlp-t4"
    assert at.select_slider(key="cfg_t").value == 4
    heat = figure(at, "per layer and timestep")
    assert heat["data"][0]["x"] == [1, 2, 3, 4]
    at.sidebar.selectbox(key="checkpoint_label").set_value("b-mlp-t7").run()
    assert_clean(at)
    assert at.select_slider(key="cfg_t").value == 7
    assert figure(at, "per layer and timestep")["data"][0]["x"] == list(range(1, 8))
    at.switch_page("views/explore.py").run()
    assert_clean(at)
    assert at.select_slider(key="exA_t").value == 7 and at.select_slider(key="exB_t").value == 7
    at.sidebar.selectbox(key="checkpoint_label").set_value("a-mlp-t4").run()
    assert at.select_slider(key="exA_t").value == 4
    at.switch_page("views/spikes.py").run()
    assert at.select_slider(key="cfg_t").value == 4


def test_controls_persist_across_pages(two_models):
    at = open_app(two_models, "layer_noise")
    at.selectbox(key="cfg_w").set_value(2).run()
    at.selectbox(key="ln_metric").set_value("cosine").run()
    at.switch_page("views/spikes.py").run()
    assert_clean(at)
    assert at.selectbox(key="cfg_w").value == 2  # one configuration across Layer noise, Spikes, Diagnose
    at.switch_page("views/learn.py").run()  # a page that draws none of them
    at.switch_page("views/layer_noise.py").run()
    assert at.selectbox(key="cfg_w").value == 2 and at.selectbox(key="ln_metric").value == "cosine"
    assert "W 2-bit" in title(figure(at, "per layer and timestep"))


def test_at_timestep_follows_t(two_models):
    at = open_app(two_models, "layer_noise")
    assert at.select_slider(key="ln_at_t").value == 4
    at.select_slider(key="ln_at_t").set_value(2).run()
    assert at.select_slider(key="ln_at_t").value == 2
    at.select_slider(key="cfg_t").set_value(8).run()
    assert_clean(at)
    slider = at.select_slider(key="ln_at_t")
    assert slider.value == 8 and slider.options[-1] == "8"
    assert "t = 8" in title(figure(at, "Error terms per layer"))


def test_explore_shares_one_colour_scale_and_shows_the_difference(two_models):
    at = open_app(two_models, "explore")
    assert_clean(at)
    heats = [f for f in map(json.loads, specs(at)) if f["data"][0].get("type") == "heatmap"]
    assert len(heats) == 3
    (ha, hb, diff) = heats
    assert (ha["data"][0]["zmin"], ha["data"][0]["zmax"]) == (hb["data"][0]["zmin"], hb["data"][0]["zmax"])
    za, zb = (arr(h["data"][0]["z"]).astype(float) for h in (ha, hb))
    finite = np.isfinite(za) & np.isfinite(zb)
    assert ha["data"][0]["zmin"] <= min(za[finite].min(), zb[finite].min())
    assert ha["data"][0]["zmax"] >= max(za[finite].max(), zb[finite].max())
    assert "Difference B − A" in title(diff) and diff["data"][0]["zmid"] == 0
    assert np.allclose(arr(diff["data"][0]["z"]).astype(float)[finite], (zb - za)[finite])


def test_overview_float_own_t_sample_counts_and_units(tmp_path):
    make_checkpoint(tmp_path / "mlp-t7", timesteps=7)
    at = open_app(tmp_path)
    assert_clean(at)
    acc = figure(at, "Accuracy vs timesteps")
    names = [t["name"] for t in acc["data"]]
    assert names[0] == "SNN, float weights" and not any("32" in n for n in names)
    assert acc["layout"]["xaxis"]["tickvals"] == [1, 2, 4, 7, 8, 16]  # the model's own T is in the grid
    assert all(t["error_y"]["array"] for t in acc["data"] if t["name"].startswith("SNN"))  # 95% intervals
    assert "256 samples" in acc["layout"]["yaxis"]["title"]["text"]
    captions = " ".join(c.value for c in at.caption)
    assert "359 samples" in captions and "256" in captions  # the card's and the grid's counts, both said
    cost = figure(at, "Energy and memory")
    assert re.search(r"energy \((nJ|µJ)\)", cost["layout"]["yaxis"]["title"]["text"])
    assert "W float T7" in cost["data"][0]["x"] and not any("W32" in x for x in cost["data"][0]["x"])
    metrics = {m.label: m.value for m in at.metric}
    assert "test accuracy (359 samples)" in metrics
    assert figure(at, "Accuracy per class")["data"][0]["error_y"]["array"]


def test_layer_noise_float_weights_and_sensitivity_in_points(two_models):
    at = open_app(two_models, "layer_noise")
    bars = figure(at, "weight SQNR (dB) per layer")
    texts = [a["text"] for a in bars["layout"]["annotations"]]
    assert texts[:-1] == ["float"] * (len(texts) - 1) and "no weight noise" in texts[-1]  # not a row of "inf"
    assert at.selectbox(key="ln_sens_bits").value == 4  # weights as trained: the bits used are named
    at.button(key="ln_sens_go").click().run()
    assert_clean(at)
    sens = figure(at, "Per-layer sensitivity")
    assert sens["layout"]["yaxis"]["title"]["text"] == "accuracy drop (points)"
    heads = [a["text"] for a in sens["layout"]["annotations"]]
    assert any("4 bits" in h for h in heads) and "weights at 4 bits" in title(sens)
    at.selectbox(key="ln_sens_bits").set_value(2).run()
    assert "2 bits" in " ".join(a["text"] for a in figure(at, "Per-layer sensitivity")["layout"]["annotations"])


def test_spikes_levels_only_when_few_and_the_raster_says_it_is_a_subset(two_models):
    at = open_app(two_models, "spikes")
    at.sidebar.selectbox(key="checkpoint_label").set_value("b-mlp-t7").run()
    assert_clean(at)
    raster = figure(at, "Spike raster")
    assert raster["layout"]["yaxis"]["title"]["text"] == "neuron (first 512 of 600 neurons shown)"
    assert raster["layout"]["xaxis"]["tickvals"] == list(range(1, 8))  # whole timesteps
    at.selectbox(key="cfg_s").set_value(8).run()
    assert_clean(at)
    hist = figure(at, "Membrane potentials")
    red = [s for s in hist["layout"].get("shapes", []) if "228,87,86" in s["line"]["color"]]
    assert not red and any("too dense to draw" in (t.get("name") or "") for t in hist["data"])
    at.selectbox(key="cfg_s").set_value(4).run()
    hist = figure(at, "Membrane potentials")
    assert [s for s in hist["layout"].get("shapes", []) if "228,87,86" in s["line"]["color"]]  # few: drawn
    assert any("threshold θ" in (t.get("name") or "") for t in hist["data"])
    assert any("clipping range" in (t.get("name") or "") for t in hist["data"])
    assert figure(at, "Input currents")


def test_diagnose_band_is_on_the_layer_the_hints_name(two_models):
    at = open_app(two_models, "diagnose")
    at.selectbox(key="cfg_w").set_value(2).run()
    assert_clean(at)
    hints = " ".join(m.value for m in at.markdown)
    named = re.search(r"The noise is born in layer (\S+):", hints)
    profile = figure(at, "Where the noise is born")
    bands = [a["text"] for a in profile["layout"].get("annotations", []) if "born here" in a["text"]]
    if named:
        assert bands == [f"noise born here: {named.group(1)}"]
    else:
        assert not bands
    assert "within 1 point" not in hints or "points behind" not in hints


def test_budget_kib_labels_and_intervals(two_models):
    at = open_app(two_models, "budget")
    assert_clean(at)
    fig = figure(at, "Accuracy vs memory (KiB)")
    assert fig["layout"]["xaxis"]["title"]["text"] == "memory (KiB)"
    points = fig["data"][0]
    assert points["mode"] == "markers+text" and "W2 T4" in points["customdata"] and any(points["text"])
    assert points["error_y"]["array"]  # each accuracy with its 95% interval
    assert any("95% Wilson interval" in c.value for c in at.caption)
    assert any("Best within memory" in s.value and "samples" in s.value for s in at.success)
    at.radio(key="bg_mode").set_value("cheapest within a tolerance").run()
    assert_clean(at)
    assert any(b.proto.label.startswith("Chosen configuration") for b in at.get("download_button"))
    at.slider(key="bg_tol").set_value(0.5).run()
    assert any("inside the best accuracy's own interval" in w.value for w in at.warning)


def test_learn_calls_the_sigmoid_temperature_temperature(two_models):
    at = open_app(two_models, "learn")
    fig = figure(at, "Sum-of-sigmoids")
    assert all(t["name"].startswith("temperature") for t in fig["data"][:-1])
    assert not any(re.match(r"T = ", t["name"]) for t in fig["data"])


@pytest.fixture(scope="module")
def sweep_root(tmp_path_factory) -> Path:
    """A checkpoint and a real `qnoise.sweep` run folder over it (its manifest records the checkpoint)."""
    import qnoise

    root = tmp_path_factory.mktemp("sweep-root")
    ckpt = make_checkpoint(root / "models" / "tiny-mlp")
    qnoise.sweep(str(ckpt), "digits", weight_bits=[2, 32], timesteps=[2, 4], out=root / "runs" / "sweep",
                 limit=32, workers=1, progress=False)
    return root


def test_a_sweep_folder_keeps_its_model(sweep_root):
    """The sweep records its checkpoint: Layer noise and Diagnose use it instead of saying "needs a model"."""
    at = open_app(sweep_root)
    at.sidebar.text_input(key="folder").set_value(str(sweep_root / "runs" / "sweep")).run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="checkpoint_label").value == "from the sweep: tiny-mlp"
    assert "32 samples" in " ".join(c.value for c in at.caption)  # the sweep's limit is its sample count
    for page in ("layer_noise", "diagnose"):
        at.switch_page(f"views/{page}.py").run()
        assert_clean(at)
        assert not any("needs a model" in w.value for w in at.warning)
        assert len(specs(at)) >= 3


def test_a_sweep_whose_model_is_outside_says_how_to_open_it(sweep_root, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(sweep_root / "runs" / "sweep", tmp_path / "sweep")
    at = open_app(tmp_path)
    assert_clean(at)
    assert any("outside the folders" in c.value and "--data" in c.value for c in at.sidebar.caption)


def test_report_names_model_data_configuration_and_version(two_models):
    from dashboard import ui

    import qnoise

    at = open_app(two_models, "layer_noise")
    report = at.session_state["_report"]
    assert report["page"] == "Layer noise"
    page = ui.report_html(report).decode()
    for fact in ("a-mlp-t4", "W as trained, T 4", "256 samples", "qnoise version", qnoise.__version__):
        assert fact in page
    assert page.count("Plotly.newPlot") >= 4 and "<table" in page
    tables = [item for _, item in report["items"] if hasattr(item, "columns")]
    assert tables and all({"model", "configuration"} <= set(t.columns) for t in tables)  # exports say what they are
    labels = [b.proto.label for b in at.sidebar.get("download_button")]
    assert "Report of this page (HTML)" in labels


def test_compare_runs_overlays_two_models(two_models):
    at = open_app(two_models, "compare")
    assert_clean(at)
    fig = figure(at, "runs overlaid")
    runs = {t["name"].split(":")[0] for t in fig["data"]}
    assert runs == {"a-mlp-t4", "b-mlp-t7"}


def test_budget_takes_a_search_table(tmp_path):
    """A mixed-precision search's table (`qnoise search`: one row per per-layer configuration, with its interval)
    feeds the Budget page in place of the model's grid; it is not mistaken for a results table."""
    import pandas as pd

    from qnoise.table_files import write_parquet_atomic

    make_checkpoint(tmp_path / "m")
    rows = [("W8 everywhere", 8, 0.97, 8192 * 40), ("W4 fc1, W8 rest", 4, 0.96, 8192 * 25),
            ("W2 fc1, W4 rest", 2, 0.90, 8192 * 12)]
    table = pd.DataFrame([{"label": lab, "w:fc1": w, "timesteps": 4, "rounding": "nearest", "accuracy": a,
                           "samples": 256, "ci_low": a - 0.03, "ci_high": min(1.0, a + 0.02), "memory_bits": m,
                           "memory_kib": m / 8192, "energy_pj": 1e5 * w, "energy_nj": 100.0 * w, "on_path": True,
                           "key": lab} for lab, w, a, m in rows])
    write_parquet_atomic(table, tmp_path / "search" / "evaluations.parquet", {"budget": {"memory_kib": 30}})
    at = open_app(tmp_path, "budget")
    assert_clean(at)
    at.radio(key="bg_source").set_value("search: search/evaluations.parquet").run()
    assert_clean(at)
    at.number_input(key="bg_mem_kib").set_value(30.0).run()
    fig = figure(at, "Accuracy vs memory (KiB)")
    assert set(fig["data"][0]["customdata"]) == {r[0] for r in rows}
    assert any("W4 fc1, W8 rest" in s.value and "256 samples" in s.value for s in at.success)
    assert not [s for s in at.sidebar.selectbox if s.key == "results_label"]  # not a results table
    bars = figure(at, "The chosen configuration per layer")  # the choice per layer: a bar per layer of bits
    assert bars["data"][0]["x"] == ["fc1"] and list(bars["data"][0]["y"]) == [4]


def test_overview_draws_one_configuration_of_a_table_that_varies_more(tmp_path):
    """A sweep over membrane bits too (accuracy 0.9 at float, 0.1 at 4 bits): the Overview picks one membrane
    width (a selectbox) and draws its accuracies, never their 0.5 average."""
    import pandas as pd
    from dashboard_fixtures import analysis_frame, write_sweep_dir

    frames = []
    for state_bits, acc in ((None, 0.9), (4, 0.1)):
        for w in (2, 4):
            for t in (2, 4):
                part = analysis_frame(w, t, state_bits=state_bits, model="tiny-mlp")
                part.loc[(part.layer == "<output>") & (part.metric == "accuracy"), "value"] = acc
                frames.append(part)
    make_checkpoint(tmp_path / "tiny-mlp")
    write_sweep_dir(tmp_path / "sweep", pd.concat(frames, ignore_index=True))
    at = open_app(tmp_path)
    assert_clean(at)

    def accuracies() -> set[float]:
        fig = figure(at, "Accuracy vs timesteps")
        return {round(float(y), 6) for trace in fig["data"] if "SNN" in trace.get("name", "") for y in arr(trace["y"])}

    box = at.selectbox(key="ov_state_bits")
    assert sorted(box.options) == ["32", "4"]
    first = accuracies()
    box.set_value("4" if box.value == "32" else "32").run()
    assert_clean(at)
    assert {first.pop(), accuracies().pop()} == {0.9, 0.1}
