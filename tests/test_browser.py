"""The dashboard in a real browser: `streamlit run` on a free localhost port, headless Chromium through
Playwright. It waits for the first figure, changes a control, checks that a figure changed and that the
browser console stayed free of errors, and saves screenshots under test-artifacts/.

Skips when no Chromium is found, unless the environment variable CI is set (then it fails): `.ci/run`
installs Debian's chromium.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dashboard_fixtures import sweep_frame, write_sweep_dir

from dashboard import serve

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


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
    from test_dashboard_app import make_checkpoint

    root = tmp_path_factory.mktemp("browser")
    make_checkpoint(root / "tiny-mlp")
    write_sweep_dir(root / "sweep", sweep_frame(model="tiny-mlp", weight_bits=(2, 4, 8), timesteps=(2, 4, 8)))
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


@pytest.fixture
def app(data_dir, tmp_path, monkeypatch):
    ARTIFACTS.mkdir(exist_ok=True)
    monkeypatch.setenv("QNOISE_DASHBOARD_CACHE", str(tmp_path / "grid-cache"))
    with serve.server(data_dir, log=ARTIFACTS / "streamlit.log") as url:  # always terminated
        yield url


def console_watch(page) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    return problems


def test_overview_redraws_on_a_control_change(browser, app):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    problems = console_watch(page)
    page.goto(app)
    before = serve.wait_figures(page, 3)
    page.screenshot(path=str(ARTIFACTS / "overview.png"), full_page=True)
    serve.choose(page, "Heatmap metric", "SNN/reference agreement")
    after = serve.wait_changed(page, before)
    assert len(after) == len(before) and after != before
    assert "SNN/reference agreement" in " ".join(after)
    page.screenshot(path=str(ARTIFACTS / "overview-agreement.png"), full_page=True)
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


def test_explore_and_learn_pages(browser, app):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    problems = console_watch(page)
    page.goto(app)  # (a deep link makes Streamlit probe <page>/_stcore/... first: 404s in the console)
    serve.wait_figures(page, 3)
    page.get_by_role("link", name="Explore").click()
    page.wait_for_url("**/explore")
    before = serve.wait_figures(page, 5)
    serve.choose(page, "Per-layer metric", "cosine similarity")
    after = serve.wait_changed(page, before)
    assert after != before
    page.screenshot(path=str(ARTIFACTS / "explore.png"), full_page=True)
    page.get_by_role("link", name="Learn").click()
    page.wait_for_url("**/learn")
    serve.wait_figures(page, 3)
    page.screenshot(path=str(ARTIFACTS / "learn.png"), full_page=True)
    assert not page.get_by_test_id("stException").count()
    assert problems == []
    page.close()
