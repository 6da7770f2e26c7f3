"""qnoise dashboard: ``streamlit run dashboard/app.py`` (or ``qnoise dashboard``).

Explore where an SNN's quantization noise is born and how it grows, per layer and timestep, on the bundled
sample models by default. All numbers come from qnoise; this app only asks, caches and draws.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `dashboard` is a top-level folder of the repository, beside `qnoise`
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402


HERE = Path(__file__).resolve().parent
PAGES = [
    ("overview.py", "Overview", ":material/dashboard:"),
    ("layer_noise.py", "Layer noise", ":material/stacked_line_chart:"),
    ("spikes.py", "Spikes", ":material/bolt:"),
    ("explore.py", "Explore", ":material/tune:"),
    ("diagnose.py", "Diagnose ANN vs SNN", ":material/troubleshoot:"),
    ("compare.py", "Compare runs", ":material/compare:"),
    ("budget.py", "Budget", ":material/savings:"),
    ("learn.py", "Learn", ":material/school:"),
]

# an emoji icon: a material icon as favicon is fetched from the internet, which an offline browser logs as an error
st.set_page_config(page_title="qnoise", page_icon="📉", layout="wide")
nav = st.navigation([st.Page(HERE / "views" / f, title=t, icon=i, default=(n == 0))
                     for n, (f, t, i) in enumerate(PAGES)])
nav.run()
