"""Run the dashboard headless on a free localhost port and find a Chromium to open it with: shared by the
browser test (`tests/test_browser.py`) and the browser benchmark (`benchmarks/bench_dashboard.py`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def find_chromium() -> str | None:
    """A Chromium binary: ``$QNOISE_CHROMIUM``, the Debian package's, or one on PATH."""
    env = os.environ.get("QNOISE_CHROMIUM")
    for c in ([env] if env else []) + list(CHROMIUM_CANDIDATES):
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(sample_dir: str | Path | None = None, port: int | None = None, timeout: float = 60.0,
           log: str | Path | None = None) -> Iterator[str]:
    """``streamlit run dashboard/app.py`` headless on 127.0.0.1; yields its URL; always terminates it."""
    port = port or free_port()
    env = dict(os.environ)
    if sample_dir is not None:
        env["QNOISE_SAMPLE_DIR"] = str(sample_dir)
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none", "--server.runOnSave", "false", "--client.toolbarMode", "viewer"]
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {proc.returncode} before serving ({' '.join(cmd)})")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"streamlit did not answer on {url} within {timeout:.0f} s")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if log:
            out.close()


# JavaScript run in the page: a fingerprint of every plotly figure drawn (its data, as plotly holds it)
FIGURE_JS = ("el => JSON.stringify([((el.layout || {}).title || {}).text, (el.data || []).map("
             "t => [t.type, t.name, t.x, t.y, t.z])])")
FIGURES_JS = "() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(" + FIGURE_JS + ")"


def figures(page) -> list[str]:
    """Fingerprints of the plotly figures on a Playwright page."""
    return page.evaluate(FIGURES_JS)


def wait_figures(page, count: int = 1, timeout_ms: float = 120_000) -> list[str]:
    page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length >= {count} && "
                           f"Array.from(document.querySelectorAll('.js-plotly-plot')).every(el => el.data)",
                           timeout=timeout_ms)
    wait_idle(page, timeout_ms)
    return figures(page)


IDLE_JS = """() => !document.querySelector('[data-testid="stStatusWidget"]')
    && !document.querySelector('[data-stale="true"]')"""


def wait_idle(page, timeout_ms: float = 120_000) -> None:
    """Wait until Streamlit has finished its run (no status widget, no stale element)."""
    page.wait_for_function(IDLE_JS, timeout=timeout_ms)


def wait_changed(page, before: list[str], timeout_ms: float = 120_000) -> list[str]:
    """Wait until the figures differ from ``before`` (same number of figures, at least one different) with
    Streamlit idle; return them. Only the first moment is awaited in the browser (polling every 10 ms), so
    the time this takes is the redraw latency a person sees."""
    import json

    page.wait_for_function(
        "(b) => { const now = Array.from(document.querySelectorAll('.js-plotly-plot')).map(" + FIGURE_JS + ");"
        " const old = JSON.parse(b); return (" + IDLE_JS + ")() && now.length === old.length &&"
        " now.some((f, i) => f !== old[i]); }",
        arg=json.dumps(before), timeout=timeout_ms, polling=10)
    return figures(page)


def open_choice(page, label: str, option: str):
    """Open the Streamlit selectbox labelled ``label``; return the (visible) locator of ``option``."""
    box = page.get_by_role("combobox", name=label, exact=True)
    box.scroll_into_view_if_needed()
    opt = page.get_by_role("option", name=option, exact=True)
    for _ in range(5):  # the list may not open while the page is still settling: try again
        box.locator("xpath=..").get_by_role("button", name="Open").click()
        try:
            opt.wait_for(state="visible", timeout=2000)
        except Exception:  # noqa: BLE001 - playwright's TimeoutError
            page.keyboard.press("Escape")
            continue
        return opt
    raise TimeoutError(f"the selectbox {label!r} did not offer {option!r}")


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the Streamlit selectbox labelled ``label``."""
    open_choice(page, label, option).click()


# the element Streamlit scrolls (the page itself does not: a full-page screenshot would stop at the window)
SCROLL_JS = """() => Math.max(document.body.scrollHeight, ...['stMain', 'stAppViewContainer', 'stMainBlockContainer',
    'stSidebarContent'].map(id => { const m = document.querySelector(`[data-testid="${id}"]`);
    return m ? m.scrollHeight + m.getBoundingClientRect().top : 0; }))"""


def screenshot(page, path: str | Path, max_height: int = 9000) -> None:
    """A screenshot of the whole page: the window grows to the height of Streamlit's scrolled content (at most
    ``max_height`` pixels), then returns to its size."""
    size = page.viewport_size or {"width": 1400, "height": 1100}
    height = min(max_height, max(size["height"], int(page.evaluate(SCROLL_JS)) + 40))
    page.set_viewport_size({"width": size["width"], "height": height})
    try:
        page.wait_for_timeout(400)  # plotly redraws at the new size
        wait_idle(page)
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(size)
