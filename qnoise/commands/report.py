"""``qnoise report DIR``: a standalone HTML report (plotly, no server or network needed) and CSV tables
from a sweep run folder or an analysis .parquet file."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="standalone HTML report + CSV tables from a sweep folder or .parquet",
                       description="Write report.html (plotly inlined: opens offline) and tables/*.csv.")
    p.add_argument("path", help="sweep run folder, or a .parquet table from `qnoise analyze`")
    p.add_argument("--out", default=None, help="output folder (default: the run folder, or next to the file)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..files import check_folder_output
    from ..report import write_report
    from ..sweep import load_sweep

    src = Path(args.path)
    out = Path(args.out) if args.out else (src if src.is_dir() else src.with_suffix(""))
    check_folder_output(out)
    df = load_sweep(src)
    html, tables = write_report(df, out, title=f"qnoise report: {src.name}")
    print(f"wrote {html}")
    for t in tables:
        print(f"wrote {t}")
    return 0
