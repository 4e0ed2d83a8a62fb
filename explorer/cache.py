"""The analysis cache: finished analyses within a byte budget, and the photos being analysed right now.

Every picture of a photo renders from its analysis in milliseconds; only a photo that is not here runs the model.
So the budget decides how many students of a class can move a slider without waiting for the model: it is
sized from the machine's memory by default (`default_budget_mb`). A photo asked for by several requests at once
(its labels, and every tab's picture) is analysed once: the first request starts the work, the others find it
pending here and wait for the same result.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Generic, TypeVar

Value = TypeVar("Value")
Pending = TypeVar("Pending")
MEMORY_SHARE = 0.25  # of the machine's (or the container's) memory, for the default budget
MB = 2 ** 20


class AnalysisCache(Generic[Value, Pending]):
    """Finished values within `budget_mb` (`size_of(value)` bytes each; the least recently used are evicted first,
    but the newest is always kept, whatever its size), and pending ones by key. Safe across threads."""

    def __init__(self, budget_mb: float, size_of: Callable[[Value], int]):
        if budget_mb <= 0:
            raise ValueError(f"the cache budget must be positive, got {budget_mb} MB")
        self.budget_bytes, self.size_of = int(budget_mb * MB), size_of
        self._done: OrderedDict[Hashable, tuple[Value, int]] = OrderedDict()  # least recently used first
        self._pending: dict[Hashable, Pending] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Value | None:
        """The finished value (now the most recently used), or None."""
        with self._lock:
            if key not in self._done:
                return None
            self._done.move_to_end(key)
            return self._done[key][0]

    def get_or_start(self, key: Hashable, start: Callable[[], Pending]) -> Value | Pending:
        """The finished value, else the pending work for `key`, else `start()` (called once, under the cache's lock:
        it must only set work going), remembered as pending until `finish` or `abandon`."""
        with self._lock:
            if key in self._done:
                self._done.move_to_end(key)
                return self._done[key][0]
            if key not in self._pending:
                self._pending[key] = start()
            return self._pending[key]

    def finish(self, key: Hashable, value: Value) -> None:
        """Store a finished value (no longer pending), evicting the least recently used beyond the budget."""
        size = self.size_of(value)
        with self._lock:
            self._pending.pop(key, None)
            if key in self._done:
                self._bytes -= self._done.pop(key)[1]
            self._done[key] = (value, size)
            self._bytes += size
            while self._bytes > self.budget_bytes and len(self._done) > 1:
                self._bytes -= self._done.popitem(last=False)[1][1]

    def abandon(self, key: Hashable, pending: Pending) -> None:
        """Forget pending work that ended without a value (failed, or dropped because nobody waited)."""
        with self._lock:
            if self._pending.get(key) is pending:
                del self._pending[key]

    @property
    def pending(self) -> int:
        """How many photos are being analysed."""
        with self._lock:
            return len(self._pending)

    @property
    def bytes(self) -> int:
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._done)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._done

    def clear(self) -> None:
        with self._lock:
            self._done.clear()
            self._bytes = 0


def machine_memory_mb() -> float:
    """This machine's memory, or the container's limit where one is set (cgroup v2 or v1), in MB."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limit = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if limit.isdigit():
            total = min(total, int(limit))
    return total / MB


def default_budget_mb(variable: str = "VITHYBRID_CACHE_MB", share: float = MEMORY_SHARE) -> float:
    """$`variable`, else `share` of the memory. The cache's default: a quarter, 4 GB on a 16 GB Space, about 40
    analyses of the full-size model (96 MB of float16 attention each)."""
    configured = os.environ.get(variable, "").strip()
    if configured:
        try:
            return float(configured)
        except ValueError:
            raise ValueError(f"{variable} must be a number of megabytes, got {configured!r}") from None
    return share * machine_memory_mb()
