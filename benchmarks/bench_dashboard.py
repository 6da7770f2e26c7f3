"""Dashboard latency in a real browser (headless Chromium through Playwright), on the sample model.

Measures what a person waits for:

(0) first figure on a cold server: from starting ``streamlit run`` (a new process: nothing imported, no model
    loaded, an empty grid cache) until the Overview's first figure is drawn in the browser; the sample ships its
    grids, so no analysis runs;
(1) first load of Layer noise on that server (one analysis of the model's own configuration);
(a) redraw after changing a control on cached results: the Layer noise page's metric (same analysis,
    another figure) and its weight bits back to a configuration analysed before (a cache hit);
(b) a fresh analysis of one configuration on 256 samples: the Layer noise page's weight bits set to a
    width not analysed yet in this server.

Absolute latencies (the issue asks for them): they depend on the machine, printed with it, and with its load.

    .venv/bin/python benchmarks/bench_dashboard.py [--sample-dir DIR] [--checkpoint NAME] [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dashboard import serve  # noqa: E402


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    load = " ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"{cpu or platform.machine()}, {os.cpu_count()} logical cores visible, torch threads "
            f"{torch.get_num_threads()}, Python {platform.python_version()}, {platform.system()}, load average "
            f"{load}")


def timed_choice(page, label: str, option: str) -> float:
    """Open the selectbox (not timed), then time from the click on ``option`` to the redrawn figure."""
    serve.wait_idle(page, 300_000)
    before = serve.figures(page)
    opt = serve.open_choice(page, label, option)
    t0 = time.perf_counter()
    opt.click()
    serve.wait_changed(page, before, timeout_ms=300_000)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sample-dir", default=None, help="folder with the sample checkpoints (default: sample_data/)")
    ap.add_argument("--checkpoint", default=None, help="checkpoint label in the sidebar (default: the first SNN)")
    ap.add_argument("--repeats", type=int, default=5, help="redraws timed for (a)")
    ap.add_argument("--screenshot", default=str(ROOT / "test-artifacts" / "bench-layer-noise.png"))
    args = ap.parse_args()
    exe = serve.find_chromium()
    if exe is None:
        print("no Chromium found: apt-get install chromium (or set QNOISE_CHROMIUM)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    from dashboard import sources

    folder = Path(args.sample_dir) if args.sample_dir else sources.default_dir()
    cat = sources.scan(folder)
    label = args.checkpoint or next(iter(cat.checkpoints))
    print(f"machine: {machine()}")
    print(f"sample: {folder}, model {label}; Chromium {exe}")
    redraw, cached, fresh = [], [], []
    os.environ["QNOISE_DASHBOARD_CACHE"] = tempfile.mkdtemp(prefix="qnoise-bench-cache-")  # cold: nothing kept
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=serve.CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        t_start = time.perf_counter()
        with serve.server(folder) as url:
            t_health = time.perf_counter() - t_start
            page.goto(url)
            serve.wait_figures(page, 1, timeout_ms=300_000)
            cold = time.perf_counter() - t_start
            serve.wait_idle(page, 300_000)
            print(f"(0) first figure on a cold server (streamlit start to the Overview's first figure): {cold:.2f} s "
                  f"(server answering after {t_health:.2f} s)")
            t0 = time.perf_counter()
            page.goto(f"{url}/layer_noise")
            if args.checkpoint:
                serve.wait_figures(page, 2, timeout_ms=300_000)
                serve.choose(page, "Model (checkpoint)", label)
            serve.wait_figures(page, 2, timeout_ms=300_000)
            print(f"(1) first load of Layer noise (model, eval data, one analysis): {time.perf_counter() - t0:.2f} s")
            first_bits = page.get_by_role("combobox", name="Weight bits", exact=True).input_value()
            # (b) fresh analyses: widths not analysed yet in this server
            for bits in ("3", "4", "6"):
                fresh.append(timed_choice(page, "Weight bits", bits))
            # (a) cached: another metric of the same analysis, and back to configurations analysed above
            metrics = ["MSE", "SQNR (dB)"]
            for i in range(args.repeats):
                redraw.append(timed_choice(page, "Metric", metrics[i % 2]))
            for i in range(args.repeats):
                bits = [first_bits, "3", "4", "6"][i % 4]
                if page.get_by_role("combobox", name="Weight bits", exact=True).input_value() == bits:
                    bits = "6" if bits != "6" else "3"
                cached.append(timed_choice(page, "Weight bits", bits))
            Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
            serve.screenshot(page, args.screenshot)
        browser.close()

    def show(name, xs):
        print(f"{name:<64} median {statistics.median(xs):6.3f} s   (min {min(xs):.3f}, max {max(xs):.3f}, n={len(xs)})")

    print("\nlatency from the control change to the redrawn figure, Streamlit idle:")
    show("(a) redraw, cached results: another metric of the same analysis", redraw)
    show("(a) redraw, cached results: weight bits back to an analysed config", cached)
    show("(b) fresh analysis of one configuration, 256 samples", fresh)
    print("(from the click on the option: the browser's round trip, Streamlit's rerun of the page and "
          "plotly's drawing; opening the selectbox is not timed)")
    print(f"machine afterwards: {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
