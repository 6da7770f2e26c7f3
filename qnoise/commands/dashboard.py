"""``qnoise dashboard``: start the Streamlit dashboard (``streamlit run dashboard/app.py``) on this machine.

The app lives in the repository's top-level ``dashboard/`` folder (beside the ``qnoise`` package of an
editable install); ``$QNOISE_DASHBOARD`` may point at another ``app.py``. It opens only the sample folder,
the folders given with ``--data`` (passed on in ``$QNOISE_DASHBOARD_DATA``) and its sessions' uploads.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from . import _args

APP_ENV = "QNOISE_DASHBOARD"
DATA_ENV = "QNOISE_DASHBOARD_DATA"  # read by dashboard/sources.py
# Streamlit's own upload limit, twice the app's 64 MiB (dashboard/sources.py, MAX_UPLOAD_BYTES): a file a
# little over the app's limit still reaches the app, which names it and the limit in MiB, instead of being
# dropped by the browser (and the upload then reported as lacking that file).
SERVER_UPLOAD_MB = 128


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="open the Streamlit dashboard (sample models by default)",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--port", type=_args.int_in(1, 65535, "a port"), default=8501, help="port to serve on")
    p.add_argument("--address", default="localhost", help="address to bind (localhost: this machine only)")
    p.add_argument("--sample-dir", default=None,
                   help="folder the dashboard opens on (default: the repository's sample_data/)")
    p.add_argument("--data", action="append", default=[], metavar="DIR",
                   help="another folder the dashboard may open (repeatable); nothing outside the sample folder, "
                        "these folders and uploads can be opened")
    p.add_argument("--open-browser", action="store_true",
                   help="also open a browser window (default: only print the URL; headless, so Streamlit's "
                        "first-run e-mail prompt never blocks)")
    p.set_defaults(func=run)


def app_path() -> Path:
    """The dashboard's ``app.py``: ``$QNOISE_DASHBOARD``, else ``<repository>/dashboard/app.py``."""
    env = os.environ.get(APP_ENV)
    candidates = [Path(env).expanduser()] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(
        f"the dashboard app was not found (looked for {', '.join(map(str, candidates))}); it ships in the "
        f"repository's dashboard/ folder: install qnoise from a clone with `pip install -e .`, or set "
        f"{APP_ENV}=/path/to/dashboard/app.py")


def command(args: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(app_path()), "--server.port", str(args.port),
            "--server.address", args.address, "--browser.gatherUsageStats", "false",
            "--server.maxUploadSize", str(SERVER_UPLOAD_MB), "--client.toolbarMode", "viewer",
            "--server.headless", "false" if args.open_browser else "true"]


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    env = dict(os.environ)
    if args.sample_dir is not None:
        folder = Path(args.sample_dir).expanduser()
        if not folder.exists():
            raise FileNotFoundError(f"--sample-dir {folder} does not exist")
        env["QNOISE_SAMPLE_DIR"] = str(folder.resolve())
    folders = []
    for d in args.data:
        folder = Path(d).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"--data {folder} is not a folder")
        folders.append(str(folder.resolve()))
    if folders:  # else $QNOISE_DASHBOARD_DATA stays as the environment has it
        env[DATA_ENV] = os.pathsep.join(folders)
    cmd = command(args)
    print(f"qnoise dashboard: http://{args.address}:{args.port}  (Ctrl+C to stop)", flush=True)
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0
