"""A small process-wide memo for slow results (analyses, sensitivity, per-class accuracy): shared by every
browser session like ``st.cache_data``, but the caller learns whether a result is already there, so a
computation can show a progress bar and a cached redraw shows nothing. Two sessions asking for the same
result at once compute it once (a lock per key)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class Memo:
    """Least-recently-used results, at most ``max_entries``."""

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._computing: dict[Hashable, threading.Lock] = {}

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The stored result for ``key``, else ``compute()`` (stored unless it raises)."""
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
            key_lock = self._computing.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._data:  # computed by another session while this one waited
                    self._data.move_to_end(key)
                    return self._data[key]
            value = compute()
            with self._lock:
                self._data[key] = value
                while len(self._data) > self.max_entries:
                    self._data.popitem(last=False)
                self._computing.pop(key, None)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
