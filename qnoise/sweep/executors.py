"""Where a sweep's tasks run: this process, local processes (spawned), or Ray tasks.

Local worker processes watch their parent: when it dies (killed, even by SIGKILL, which runs no cleanup) they
exit within a second instead of computing on, holding their memory, for a sweep nobody waits for.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from .cells import twin_key
from .worker import run_cells

PARENT_POLL_S = 0.5


def chunks(cells: list[dict], options: dict, pieces: int) -> list[list[dict]]:
    """Split cells into at least ``pieces`` tasks (when possible), keeping cells with the same reference
    activations together; biggest first (long tasks start early)."""
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        groups.setdefault(twin_key(c, options), []).append(c)
    tasks = list(groups.values())
    while len(tasks) < pieces and any(len(t) > 1 for t in tasks):
        tasks.sort(key=len, reverse=True)
        big = tasks.pop(0)
        half = (len(big) + 1) // 2
        tasks += [big[:half], big[half:]]
    return sorted(tasks, key=lambda t: -sum((c["timesteps"] or 8) for c in t))


def _exit_with_parent(parent: int) -> None:
    """In a worker process: exit as soon as the process that started the pool is gone."""
    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent:  # re-parented: the sweep's process died
                os._exit(3)

    threading.Thread(target=watch, name="qnoise-parent-watch", daemon=True).start()


def run_processes(tasks: list, workers: int, bar, fn=run_cells, collect=None) -> None:
    """Run ``fn(task)`` for every task in ``workers`` spawned local processes that exit when this process
    dies; each result (a list) goes to ``collect`` and advances ``bar`` by its length."""
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=_exit_with_parent, initargs=(os.getpid(),)) as pool:
        pending = {pool.submit(fn, t) for t in tasks}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                result = f.result()
                if collect is not None:
                    collect(result)
                bar.update(len(result))


def run_ray(tasks: list, workers: int, bar, fn=run_cells, collect=None) -> None:
    """Run ``fn(task)`` as Ray tasks: on a local Ray started here, or the cluster a prior ``ray.init`` joined;
    results as `run_processes`."""
    try:
        import ray
    except ImportError as err:
        raise ValueError("executor='ray' needs Ray: pip install 'qnoise[ray]'") from err
    started = not ray.is_initialized()
    if started:  # a local Ray; connect to a cluster by calling ray.init(address=...) before the sweep
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(fn)
        pending = [remote.remote(t) for t in tasks]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                result = ray.get(ref)
                if collect is not None:
                    collect(result)
                bar.update(len(result))
    finally:
        if started:
            ray.shutdown()
