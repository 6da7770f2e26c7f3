"""The dashboard in a real browser: `streamlit run` on a free localhost port, headless Chromium through
Playwright. It waits for the first figure, changes controls, checks that figures changed and that the browser
console stayed free of errors; switching model makes T follow; Explore's heatmaps share one scale; a sweep folder
opens Layer noise with the checkpoint it records; the page report downloads as one HTML file; and every page is
saved as a screenshot under test-artifacts/ (on the bundled sample, when it is there).

Skips when no Chromium is found, unless the environment variable CI is set (then it fails): `.ci/run`
installs Debian's chromium.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from dashboard_fixtures import sweep_frame, write_sweep_dir

from dashboard import serve

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
PAGES = [("Overview", ""), ("Layer noise", "layer_noise"), ("Spikes", "spikes"), ("Explore", "explore"),
         ("Diagnose ANN vs SNN", "diagnose"), ("Compare runs", "compare"), ("Budget", "budget"), ("Learn", "learn")]


def _chromium() -> str:
    path = serve.find_chromium()
    if path is None:
        msg = "no Chromium found (/usr/bin/chromium: `apt-get install chromium`; or set QNOISE_CHROMIUM)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {msg}")
        pytest.skip(msg)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI is set but the playwright package is missing (pip install -e '.[test]')")
        pytest.skip("the playwright package is not installed")
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Two SNNs with different T, a synthetic sweep table over the first, and a real sweep run folder whose
    manifest records the first's checkpoint."""
    import qnoise
    from test_dashboard_app import make_checkpoint

    root = tmp_path_factory.mktemp("browser")
    make_checkpoint(root / "tiny-mlp")
    make_checkpoint(root / "wide-mlp-t7", timesteps=7, hidden=(48, 24))
    write_sweep_dir(root / "sweep", sweep_frame(model="tiny-mlp", weight_bits=(2, 4, 8), timesteps=(2, 4, 8)))
    qnoise.sweep(str(root / "tiny-mlp"), "digits", weight_bits=[2, 32], timesteps=[2, 4], limit=32, workers=1,
                 out=root / "runs" / "real-sweep", progress=False)
    return root


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=serve.CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _serve(folder, tmp_path, monkeypatch, log: str):
    ARTIFACTS.mkdir(exist_ok=True)
    monkeypatch.setenv("QNOISE_DASHBOARD_CACHE", str(tmp_path / "grid-cache"))
    return serve.server(folder, log=ARTIFACTS / log)


@pytest.fixture
def app(data_dir, tmp_path, monkeypatch):
    with _serve(data_dir, tmp_path, monkeypatch, "streamlit.log") as url:  # always terminated
        yield url


def console_watch(page) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    return problems


def go(page, title: str, slug: str, figures: int = 1) -> list[str]:
    page.get_by_role("link", name=title, exact=True).click()
    if slug:
        page.wait_for_url(f"**/{slug}")
    return serve.wait_figures(page, figures)


def plotly(page, title_start: str) -> dict:
    """The first figure whose title starts with ``title_start``: its data's x, zmin and zmax, as plotly holds them."""
    js = ("(t) => { for (const el of document.querySelectorAll('.js-plotly-plot')) {"
          " const text = ((el.layout || {}).title || {}).text || '';"
          " if (text.startsWith(t)) return JSON.stringify({title: text, data: el.data.map(d => ({x: d.x ? Array.from(d.x)"
          " : null, zmin: d.zmin, zmax: d.zmax, name: d.name}))}); } return null; }")
    found = page.evaluate(js, title_start)
    assert found, f"no figure titled {title_start!r}"
    return json.loads(found)


def test_overview_redraws_on_a_control_change(browser, app):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    problems = console_watch(page)
    page.goto(app)
    before = serve.wait_figures(page, 3)
    serve.choose(page, "Heatmap metric", "SNN/reference agreement")
    after = serve.wait_changed(page, before)
    assert len(after) == len(before) and after != before
    assert "SNN/reference agreement" in " ".join(after)
    assert not page.get_by_test_id("stException").count(), "a traceback was shown"
    # a second browser session keeps its own controls (and reuses the cached results)
    other = browser.new_context().new_page()
    other_problems = console_watch(other)
    other.goto(app)
    theirs = serve.wait_figures(other, 3)
    assert "SNN accuracy: weight bits x timesteps" in " ".join(theirs)
    assert other.get_by_role("combobox", name="Heatmap metric", exact=True).input_value() == "SNN accuracy"
    assert page.get_by_role("combobox", name="Heatmap metric", exact=True).input_value() == "SNN/reference agreement"
    other.context.close()
    assert problems == [] and other_problems == []
    page.close()


def test_switching_model_makes_t_follow_and_explore_shares_its_scale(browser, app):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    problems = console_watch(page)
    page.goto(app)  # (a deep link makes Streamlit probe <page>/_stcore/... first: 404s in the console)
    serve.wait_figures(page, 3)
    go(page, "Layer noise", "layer_noise", 4)
    assert plotly(page, "SQNR (dB) per layer and timestep")["data"][0]["x"] == [1, 2, 3, 4]
    before = serve.figures(page)
    serve.choose(page, "Model (checkpoint)", "wide-mlp-t7")
    serve.wait_changed(page, before)
    assert plotly(page, "SQNR (dB) per layer and timestep")["data"][0]["x"] == list(range(1, 8))  # T = 7 now
    go(page, "Explore", "explore", 6)
    a = plotly(page, "SQNR (dB) per layer and timestep")["data"][0]
    heats = page.evaluate("() => Array.from(document.querySelectorAll('.js-plotly-plot')).filter(el => "
                          "el.data[0].type === 'heatmap').map(el => [el.data[0].zmin, el.data[0].zmax, "
                          "el.layout.title.text])")
    assert len(heats) == 3 and heats[0][:2] == heats[1][:2] and heats[0][0] is not None
    assert heats[2][2].startswith("Difference B − A") and heats[2][0] == -heats[2][1]
    assert a["x"] == list(range(1, 8))
    before = serve.figures(page)
    serve.choose(page, "Per-layer metric", "cosine similarity")
    assert serve.wait_changed(page, before) != before
    go(page, "Learn", "learn", 3)
    assert not page.get_by_test_id("stException").count()
    assert problems == []
    page.close()


def test_a_sweep_folder_opens_layer_noise(browser, app, data_dir):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    problems = console_watch(page)
    page.goto(app)
    serve.wait_figures(page, 3)
    box = page.get_by_role("textbox", name="Folder (sample, checkpoint, sweep run or .parquet)")
    box.fill(str(data_dir / "runs" / "real-sweep"))
    box.press("Enter")
    page.get_by_text("from the sweep: tiny-mlp").first.wait_for(timeout=60_000)
    serve.wait_idle(page)
    go(page, "Layer noise", "layer_noise", 4)
    assert not page.get_by_text("This page needs a model").count()
    assert plotly(page, "SQNR (dB) per layer and timestep")
    serve.screenshot(page, ARTIFACTS / "sweep-layer-noise.png")
    assert problems == []
    page.close()


@pytest.mark.skipif(not (SAMPLE / "grids" / "index.json").is_file(), reason="sample_data/grids not written")
def test_every_page_on_the_sample_with_screenshots_and_a_report(browser, tmp_path, monkeypatch):
    """Every page of the bundled sample drawn without a traceback or console error, saved as
    test-artifacts/page-<name>.png; the Layer noise report downloads as one standalone HTML file."""
    monkeypatch.delenv("QNOISE_SAMPLE_DIR", raising=False)
    with _serve(SAMPLE, tmp_path, monkeypatch, "streamlit-sample.log") as url:
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        problems = console_watch(page)
        page.goto(url)
        for title, slug in PAGES:
            if slug:
                go(page, title, slug, 1)
            else:
                serve.wait_figures(page, 3)
            serve.wait_idle(page)
            assert not page.get_by_test_id("stException").count(), f"a traceback on {title}"
            serve.screenshot(page, ARTIFACTS / f"page-{slug or 'overview'}.png")
            if slug == "layer_noise":
                before = serve.figures(page)
                page.get_by_role("button", name="Measure sensitivity").click()
                page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length > {len(before)}",
                                       timeout=180_000)
                serve.wait_idle(page)
                serve.screenshot(page, ARTIFACTS / "page-layer_noise-sensitivity.png")
                with page.expect_download() as dl:
                    page.get_by_role("button", name="Report of this page (HTML)").click()
                html = Path(dl.value.path()).read_text()
                (ARTIFACTS / "report-layer-noise.html").write_text(html)
                for fact in ("digits-snn-2bit", "W as trained, T 3", "digits-test-256.safetensors",
                             "qnoise version", "Plotly.newPlot"):
                    assert fact in html
        assert problems == []
        page.close()
